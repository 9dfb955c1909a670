//! `openflume demo`: the three simulators with a lively scenario, listened to with a cron tick
//! every minute. No credentials, no network.

use super::UsageError;
use super::args::{Cli, Command, DemoArgs};
use super::listen;
use clap::Parser;
use openflume_sim::AllSimConfig;
use std::net::Ipv4Addr;

pub(crate) fn run(args: DemoArgs) -> Result<i32, UsageError> {
    smol::block_on(async {
        let sims = openflume_sim::start_all(AllSimConfig::lively_demo(Ipv4Addr::LOCALHOST.into()))
            .await
            .map_err(|e| UsageError(format!("cannot start the simulators: {e}")))?;
        listen::report(format_args!(
            "demo: simulators on {}, {}, {}; Ctrl-C to stop",
            sims.discord.api_url(),
            sims.slack.api_url(),
            sims.github.api_url()
        ));
        // The same path as `openflume listen`, pointed at the simulators.
        let mut argv = vec!["openflume".to_owned(), "listen".to_owned()];
        argv.extend(sims.listen_args());
        argv.extend(["--cron".to_owned(), "* * * * *".to_owned()]);
        let Ok(Cli {
            command: Command::Listen(listen_args),
        }) = Cli::try_parse_from(argv)
        else {
            return Err(UsageError("demo: internal argument error".to_owned()));
        };
        let sources = listen::sources(&listen_args.source, &Default::default())?;
        let code = listen::run(
            sources,
            listen::RunOptions {
                format: args.format,
                log_level: args.log_level,
                logs: args.logs,
                color: args.color,
                filter: Default::default(),
                count: args.count,
                start_timeout: std::time::Duration::from_secs(listen_args.source.start_timeout),
                allow_partial: listen_args.source.allow_partial,
                extra_roots: Vec::new(),
                data: None,
            },
        )
        .await;
        sims.stop().await;
        Ok(code)
    })
}

//! `openflume demo`: the three simulators with a lively scenario, listened to with a cron tick
//! every minute. No credentials, no network. `openflume serve --demo` serves the same
//! ([`for_serve`]).

use super::UsageError;
use super::args::{Cli, Command, DemoArgs, ServeArgs};
use super::listen;
use clap::Parser;
use openflume_sim::AllSimConfig;
use std::net::Ipv4Addr;
use std::path::PathBuf;

/// The simulators behind `serve --demo`, and the temporary data directory it made.
pub(crate) struct ServeDemo {
    sims: Option<openflume_sim::Handles>,
    /// Removed at the end; `None` when the user chose `--data`.
    temporary_data: Option<PathBuf>,
}

impl ServeDemo {
    /// Stops the simulators (their connections get a close frame) and removes the temporary
    /// data directory.
    pub(crate) fn finish(mut self) {
        if let Some(sims) = self.sims.take() {
            smol::block_on(sims.stop());
        }
    }
}

impl Drop for ServeDemo {
    fn drop(&mut self) {
        if let Some(dir) = self.temporary_data.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Starts the simulators and points `args` at them: the sources become the simulators' (the
/// source flags and credentials given are dropped, as `openflume demo` ignores them), with a
/// cron tick every minute; `--http`, the token and the log level stay. Without `--data`, the
/// log goes to a fresh directory under the temporary directory, removed at the end, so a demo
/// never writes its made-up events and cursors into the real default log.
pub(crate) fn for_serve(args: &mut ServeArgs) -> Result<ServeDemo, UsageError> {
    let sims = smol::block_on(openflume_sim::start_all(AllSimConfig::lively_demo(
        Ipv4Addr::LOCALHOST.into(),
    )))
    .map_err(|e| UsageError(format!("cannot start the simulators: {e}")))?;
    let mut argv = vec!["openflume".to_owned(), "serve".to_owned()];
    argv.extend(sims.listen_args());
    argv.extend(["--cron".to_owned(), "* * * * *".to_owned()]);
    let Ok(Cli {
        command: Command::Serve(demo),
    }) = Cli::try_parse_from(argv)
    else {
        return Err(UsageError(
            "serve --demo: internal argument error".to_owned(),
        ));
    };
    let http = args.source.http;
    args.source = demo.source;
    args.source.http = http;
    let temporary_data = match &args.data {
        Some(_) => None,
        None => {
            let dir = std::env::temp_dir().join(format!(
                "openflume-demo-{}-{:08x}",
                std::process::id(),
                crate::clock::os_seed() as u32
            ));
            args.data = Some(dir.clone());
            Some(dir)
        }
    };
    let data = match &temporary_data {
        Some(dir) => format!("the log in {} (removed at exit)", dir.display()),
        None => "the log in --data".to_owned(),
    };
    listen::report(format_args!(
        "demo: simulators on {}, {}, {}; {data}",
        sims.discord.api_url(),
        sims.slack.api_url(),
        sims.github.api_url()
    ));
    Ok(ServeDemo {
        sims: Some(sims),
        temporary_data,
    })
}

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
                record: None,
                sink: None,
            },
        )
        .await;
        sims.stop().await;
        Ok(code)
    })
}

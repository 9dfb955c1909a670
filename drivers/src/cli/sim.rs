//! `openflume sim`: the simulators alone, for manual testing against `openflume listen` or any
//! other client.

use super::UsageError;
use super::args::SimArgs;
use openflume_sim::AllSimConfig;
use std::io::Write;

/// The most events per second `--rate` asks of each simulator: about what one can serve on one
/// core. Beyond it a simulator would only spin, starving the client it is meant to exercise.
const MAX_RATE: f64 = 20_000.0;

pub(crate) fn run(args: SimArgs) -> Result<i32, UsageError> {
    if !(args.rate.is_finite() && args.rate > 0.0 && args.rate <= MAX_RATE) {
        return Err(UsageError::flag(
            "--rate",
            format!("must be a number of events per second above 0 and at most {MAX_RATE}"),
        ));
    }
    smol::block_on(async {
        let sims = openflume_sim::start_all(AllSimConfig::steady(args.bind, args.rate))
            .await
            .map_err(|e| UsageError(format!("cannot start the simulators: {e}")))?;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "# Discord gateway: {}", sims.discord.gateway_url());
        let _ = writeln!(out, "# Slack API:       {}", sims.slack.api_url());
        let _ = writeln!(out, "# GitHub API:      {}", sims.github.api_url());
        let _ = writeln!(
            out,
            "# Point `openflume listen` at them (test tokens, not secrets):"
        );
        for (name, value) in sims.env() {
            let _ = writeln!(out, "export {name}={value}");
        }
        let _ = out.flush();
        drop(out);
        match async_signal::Signals::new([async_signal::Signal::Int, async_signal::Signal::Term]) {
            Ok(mut signals) => {
                futures_lite::StreamExt::next(&mut signals).await;
            }
            Err(e) => return Err(UsageError(format!("cannot watch signals: {e}"))),
        }
        sims.stop().await;
        Ok(0)
    })
}

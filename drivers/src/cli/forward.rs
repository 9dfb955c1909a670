//! `serve --forward`: the targets from the flags and their secrets from the environment, checked
//! before anything starts (a usage error names `--forward`, the target's URL and what is wrong,
//! never the secret), and the forwarder's warnings on stderr.

use super::UsageError;
use super::args::{ForwardSpec, ServeArgs};
use super::listen::report;
use crate::{ForwardLogCallback, ForwardOptions, ForwardTarget};
use openflume_log::Filter;
use openflume_proto::outbox::{Outbox, OutboxConfig};
use openflume_proto::{Level, Misuse};
use std::sync::Arc;

/// The variable a target's secret is read from when its spec names none.
pub(crate) const DEFAULT_SECRET_VAR: &str = "OPENFLUME_FORWARD_SECRET";

/// Every `--forward` target, with its secret read and its configuration checked.
pub(crate) fn targets(args: &ServeArgs) -> Result<Vec<ForwardTarget>, UsageError> {
    let mut targets: Vec<ForwardTarget> = Vec::with_capacity(args.forward.len());
    for spec in &args.forward {
        let config = config(spec, args.forward_max_age)?;
        let name = config.target_name();
        if targets.iter().any(|t| t.url() == spec.url) {
            return Err(UsageError::flag(
                "--forward",
                format!("{name} is given twice"),
            ));
        }
        // The machine's own checks (URL, secret form, limits), as the forwarder will run them.
        if let Err(misuse) = Outbox::new(config.clone(), 0) {
            let problem = match misuse {
                Misuse::Config(error) => error.problem().to_string(),
                other => other.to_string(),
            };
            return Err(UsageError::flag("--forward", format!("{name}: {problem}")));
        }
        let filter = Filter {
            sources: spec.sources.clone(),
            types: spec.types.clone(),
        };
        targets.push(ForwardTarget::new(config).filter(filter));
    }
    Ok(targets)
}

fn config(spec: &ForwardSpec, max_age: std::time::Duration) -> Result<OutboxConfig, UsageError> {
    let name = openflume_proto::redact::url(&spec.url).into_owned();
    let var = spec.secret_var.as_deref().unwrap_or(DEFAULT_SECRET_VAR);
    let secret = std::env::var(var).ok().filter(|s| !s.is_empty());
    let Some(secret) = secret else {
        let hint = if spec.secret_var.is_some() {
            format!("the environment variable {var} (from secret=) is not set")
        } else {
            format!("no secret: set {DEFAULT_SECRET_VAR}, or name a variable with secret=ENV_VAR")
        };
        return Err(UsageError::flag("--forward", format!("{name}: {hint}")));
    };
    Ok(OutboxConfig {
        max_age_ms: u64::try_from(max_age.as_millis()).unwrap_or(u64::MAX),
        ..OutboxConfig::new(spec.url.clone(), secret)
    })
}

/// The forwarder's options for `serve`: logs at `min_level` and above go to the log, and the
/// warnings and errors (a retry, a give-up, a 410) to stderr as well.
pub(crate) fn options(min_level: Level, extra_roots: Vec<Vec<u8>>) -> ForwardOptions {
    let on_log: ForwardLogCallback = Arc::new(|log| {
        if log.level >= Level::Warn {
            match &log.error {
                Some(error) => report(format_args!("{} ({error})", log.message)),
                None => report(format_args!("{}", log.message)),
            }
        }
    });
    ForwardOptions {
        min_level,
        extra_roots,
        on_log: Some(on_log),
    }
}

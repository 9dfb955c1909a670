//! `openflume demo`: the simulators with a lively scenario, listened to.

use super::UsageError;
use super::args::DemoArgs;

pub(crate) fn run(_args: DemoArgs) -> Result<i32, UsageError> {
    Err(UsageError("demo: not built yet".into()))
}

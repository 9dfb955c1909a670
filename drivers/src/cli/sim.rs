//! `openflume sim`: the simulators alone, for manual testing.

use super::UsageError;
use super::args::SimArgs;

pub(crate) fn run(_args: SimArgs) -> Result<i32, UsageError> {
    Err(UsageError("sim: not built yet".into()))
}

//! Cross-crate integration tests for openflume live in `tests/`; this library holds their shared helpers.

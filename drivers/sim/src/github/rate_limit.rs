//! A rate-limit budget as GitHub counts it: a limit per window, and the `x-ratelimit-*` headers.

use crate::server::Reply;
use jiff::Timestamp;
use std::time::Duration;

pub(super) struct Budget {
    pub(super) limit: u32,
    pub(super) used: u32,
    pub(super) reset: i64,
}

impl Budget {
    pub(super) fn new(limit: u32, window: Duration, now: Timestamp) -> Budget {
        Budget {
            limit,
            used: 0,
            reset: now.as_second().saturating_add(secs(window)),
        }
    }

    pub(super) fn refresh(&mut self, window: Duration, now: Timestamp) {
        if now.as_second() >= self.reset {
            self.used = 0;
            self.reset = now.as_second().saturating_add(secs(window));
        }
    }

    pub(super) fn remaining(&self) -> u32 {
        self.limit.saturating_sub(self.used)
    }

    pub(super) fn headers(&self, reply: Reply) -> Reply {
        reply
            .header("x-ratelimit-limit", self.limit.to_string())
            .header("x-ratelimit-remaining", self.remaining().to_string())
            .header("x-ratelimit-reset", self.reset.to_string())
            .header("x-ratelimit-used", self.used.to_string())
            .header("x-ratelimit-resource", "core")
    }
}

fn secs(duration: Duration) -> i64 {
    i64::try_from(duration.as_secs()).unwrap_or(i64::MAX).max(1)
}

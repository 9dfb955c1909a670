//! The poll cycle: page 1 with the validators of the last good cycle, then every `next` page up
//! to the cap, each thread emitted once; and the commit rule that makes the validators safe.
//!
//! Storing validators says "everything up to here was delivered", so a complete cycle's
//! validators are kept aside and committed only when every event it emitted came back as
//! [`Input::Delivered`](crate::Input::Delivered); a poll that falls due before then waits. The
//! dedup keys are recorded as threads are read: a cycle abandoned part-way is retried from page 1
//! and must not emit again what it already emitted.
//!
//! The same rule covers the cursor a restart starts from: an `Output::Checkpoint` with the
//! validators and the seen keys goes out only when no emitted event is unconfirmed.

use super::config::Bootstrap;
use super::rate_limit::Budget;
use super::{GithubMachine, InFlight, SOURCE, Timer, follow, interval, link, seconds, wire};
use crate::{
    Checkpoint, DeliveryId, Event, GithubCursor, HttpRequest, HttpResponse, Level, Misuse, Now,
    Output, RawJson, ReqId, Status,
};
use serde_json::json;
use serde_json::value::RawValue;

/// The API version the request and response shapes were written against.
const API_VERSION: &str = "2022-11-28";

/// `Last-Modified` and `ETag` of page 1, sent back verbatim.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct Validators {
    pub(super) last_modified: Option<String>,
    pub(super) etag: Option<String>,
}

impl Validators {
    /// Neither header was given: page 1 goes out unconditional.
    fn is_empty(&self) -> bool {
        self.last_modified.is_none() && self.etag.is_none()
    }
}

/// What one cycle gathered so far.
#[derive(Clone, Debug, Default)]
pub(super) struct Cycle {
    /// Pages read.
    pages: u32,
    /// From page 1; committed only when the cycle completes and its events are confirmed.
    validators: Option<Validators>,
    emitted: usize,
    recorded: usize,
    /// The largest `X-Poll-Interval` seen in the cycle.
    server_interval_ms: Option<u64>,
    /// The latest rate-limit budget seen in the cycle.
    budget: Option<Budget>,
}

/// How a cycle ended without an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum CycleEnd {
    /// Page 1 was a 304.
    NotModified,
    /// Every page up to the last (or the cap) was read: the validators may be stored.
    Complete,
    /// Pagination stopped early (a `Link` that may not be followed): keep the old validators.
    Incomplete,
}

impl Cycle {
    /// Records a response's `X-Poll-Interval` and rate-limit budget.
    pub(super) fn note_pacing(&mut self, response: &HttpResponse) {
        if let Some(server) = interval::server_interval_ms(response.header("x-poll-interval")) {
            self.server_interval_ms =
                Some(self.server_interval_ms.map_or(server, |s| s.max(server)));
        }
        if let Some(budget) = Budget::from_response(response) {
            self.budget = Some(budget);
        }
    }
}

impl GithubMachine {
    /// Starts a cycle at page 1, unless events of the last one still wait for confirmation:
    /// then the poll waits for the last of them.
    pub(super) fn start_cycle(&mut self, now: Now) {
        self.core.timers.cancel(Timer::Poll);
        if !self.unconfirmed.is_empty() {
            if !self.poll_waiting {
                self.poll_waiting = true;
                self.core.log(
                    now,
                    Level::Debug,
                    "poll.wait_delivery",
                    format!(
                        "poll due, waiting for {} emitted events to be confirmed first",
                        self.unconfirmed.len()
                    ),
                );
            }
            return;
        }
        self.poll_waiting = false;
        self.cycle = Some(Cycle::default());
        self.send(now, self.first_page.clone(), 1, 0);
    }

    /// Requests `url` as `page` of the cycle; page 1 carries the validators.
    pub(super) fn send(&mut self, now: Now, url: String, page: u32, redirects: u8) {
        let req = ReqId(self.req_ids.next());
        let mut request = HttpRequest::new("GET", url.clone())
            .header(
                "Authorization",
                format!("Bearer {}", self.config.token.expose()),
            )
            .header("Accept", "application/vnd.github+json")
            .header("X-GitHub-Api-Version", API_VERSION)
            .header("User-Agent", self.config.user_agent.clone());
        let conditional = page == 1 && !self.validators.is_empty();
        if page == 1 {
            if let Some(last_modified) = &self.validators.last_modified {
                request = request.header("If-Modified-Since", last_modified.clone());
            }
            if let Some(etag) = &self.validators.etag {
                request = request.header("If-None-Match", etag.clone());
            }
        }
        self.in_flight = Some(InFlight {
            req,
            page,
            url,
            redirects,
            conditional,
        });
        self.core.timers.arm(
            Timer::RequestTimeout,
            now.mono + self.config.request_timeout_ms,
        );
        self.core.emit(Output::Request { req, request });
    }

    /// A 200 page: record its validators and pacing, take its items, then follow `next`.
    pub(super) fn on_page(&mut self, now: Now, flight: InFlight, response: &HttpResponse) {
        let items = match wire::page_items(response.body.as_slice()) {
            Ok(items) => items,
            Err(error) => {
                self.retry_later(
                    now,
                    "invalid response",
                    format!("page {} is not a JSON array of notifications", flight.page),
                    Some(error),
                );
                return;
            }
        };
        let cycle = self.cycle.get_or_insert_with(Cycle::default);
        cycle.note_pacing(response);
        if flight.page == 1 {
            cycle.validators = Some(Validators {
                last_modified: response.header("last-modified").map(str::to_owned),
                etag: response.header("etag").map(str::to_owned),
            });
        }
        cycle.pages = flight.page;
        for (index, raw) in items.into_iter().enumerate() {
            self.take_item(now, flight.page, index, raw);
        }

        let links = response
            .headers
            .iter()
            .filter(|(name, _)| name.eq_ignore_ascii_case("link"))
            .map(|(_, value)| value.as_str());
        let Some(next) = link::find_rel(links, "next") else {
            self.finish_cycle(now, CycleEnd::Complete);
            return;
        };
        if flight.page >= self.config.page_cap {
            self.core.log_with(
                now,
                Level::Info,
                "poll.page_cap",
                format!(
                    "read the first {} pages; older notifications wait until they change",
                    self.config.page_cap
                ),
                json!({ "pageCap": self.config.page_cap }),
            );
            self.finish_cycle(now, CycleEnd::Complete);
            return;
        }
        match follow::same_origin_target(&self.origin, &flight.url, next) {
            Ok(url) => self.send(now, url, flight.page + 1, 0),
            Err(refusal) => {
                self.core.log_with(
                    now,
                    Level::Warn,
                    "poll.link_refused",
                    format!(
                        "not following the next-page link of page {}: {refusal}",
                        flight.page
                    ),
                    json!({ "link": crate::redact::url(next) }),
                );
                self.finish_cycle(now, CycleEnd::Incomplete);
            }
        }
    }

    /// Records or emits one page element.
    fn take_item(&mut self, now: Now, page: u32, index: usize, raw: Box<RawValue>) {
        let thread = match wire::thread(&raw) {
            Ok(thread) => thread,
            Err(malformed) => {
                self.core.log_with(
                    now,
                    Level::Warn,
                    "poll.malformed",
                    format!("skipped the item at index {index} of page {page}: {malformed}"),
                    json!({
                        "page": page,
                        "index": index,
                        "field": malformed.field(),
                    }),
                );
                return;
            }
        };
        let key = (thread.id.to_string(), thread.updated_at.to_string());
        let mut meta = vec![
            ("event_type", "notification".to_owned()),
            ("thread_id", key.0.clone()),
            ("updated_at", key.1.clone()),
        ];
        meta.extend(thread.reason.map(|v| ("reason", v.into_owned())));
        meta.extend(
            thread
                .subject_type
                .map(|v| ("subject_type", v.into_owned())),
        );
        meta.extend(thread.repository.map(|v| ("repository", v.into_owned())));
        meta.extend(
            thread
                .subject_url
                .as_deref()
                .and_then(crate::conversation::github_subject_url)
                .map(|key| ("conversation_key", key)),
        );

        if !self.seen.insert(key, now.mono) {
            return;
        }
        self.cursor_moved = true;
        let cycle = self.cycle.get_or_insert_with(Cycle::default);
        if !self.bootstrapped && self.config.bootstrap == Bootstrap::Skip {
            cycle.recorded += 1;
            return;
        }
        cycle.emitted += 1;
        let mut event = Event::new(SOURCE, "notification", RawJson::from_raw(raw), now.wall);
        for (key, value) in meta {
            event = event.with_meta(key, value);
        }
        let delivery = DeliveryId(self.delivery_ids.next());
        self.last_delivery = delivery.0;
        self.unconfirmed.insert(delivery);
        self.core.emit_event(event, Some(delivery));
    }

    /// Adopts a complete cycle's validators: what page 1 is compared against from now on.
    fn commit_validators(&mut self, validators: Validators) {
        self.cursor_moved |= self.validators != validators;
        self.validators = validators;
    }

    /// Emits the cursor a restart would start from, when it moved: called only with every
    /// emitted event confirmed, so the firehose already holds everything it covers.
    fn checkpoint_if_moved(&mut self) {
        if !std::mem::take(&mut self.cursor_moved) {
            return;
        }
        let cursor = GithubCursor {
            last_modified: self.validators.last_modified.clone(),
            etag: self.validators.etag.clone(),
            seen: self.seen.keys().cloned().collect(),
        };
        self.core
            .emit(Output::Checkpoint(Checkpoint::Github(cursor)));
    }

    /// One event confirmed. The last confirmation of a complete cycle commits its validators and
    /// lets a poll that fell due meanwhile go out.
    pub(super) fn on_delivered(&mut self, now: Now, delivery: DeliveryId) -> Result<(), Misuse> {
        if delivery.0 == 0 || delivery.0 > self.last_delivery {
            return Err(Misuse::UnknownDelivery(delivery));
        }
        if !self.unconfirmed.remove(&delivery) {
            self.core.log(
                now,
                Level::Debug,
                "delivery.duplicate",
                format!("delivery {} was already confirmed", delivery.0),
            );
            return Ok(());
        }
        if self.unconfirmed.is_empty() {
            if let Some(validators) = self.validators_to_commit.take() {
                self.commit_validators(validators);
            }
            self.checkpoint_if_moved();
            if self.poll_waiting {
                self.start_cycle(now);
            }
        }
        Ok(())
    }

    /// The cycle worked: log its outcome, keep its validators for commit, schedule the next.
    pub(super) fn finish_cycle(&mut self, now: Now, end: CycleEnd) {
        let cycle = self.cycle.take().unwrap_or_default();
        if !self.bootstrapped {
            self.bootstrapped = true;
            // Stored, this makes the next start no first one (bootstrap does not apply again).
            self.cursor_moved = true;
            let (count, message) = match self.config.bootstrap {
                Bootstrap::Skip => (
                    cycle.recorded,
                    format!(
                        "recorded {} existing notifications without emitting them",
                        cycle.recorded
                    ),
                ),
                Bootstrap::Emit => (
                    cycle.emitted,
                    format!("emitted {} existing notifications", cycle.emitted),
                ),
            };
            self.core.log_with(
                now,
                Level::Info,
                "poll.bootstrap",
                message,
                json!({ "count": count, "pages": cycle.pages, "bootstrap": self.config.bootstrap }),
            );
        } else if end == CycleEnd::NotModified {
            self.core.log(
                now,
                Level::Debug,
                "poll.idle",
                "304 Not Modified: no new notifications",
            );
        } else if cycle.emitted == 0 {
            self.core.log_with(
                now,
                Level::Debug,
                "poll.idle",
                "no new notifications",
                json!({ "pages": cycle.pages }),
            );
        }
        if end == CycleEnd::Complete
            && let Some(validators) = cycle.validators
        {
            if self.unconfirmed.is_empty() {
                self.commit_validators(validators);
            } else {
                self.validators_to_commit = Some(validators);
            }
        }
        if self.unconfirmed.is_empty() {
            self.checkpoint_if_moved();
        }

        self.backoff.reset();
        self.rate_strikes = 0;
        self.core.set_status(Status::Connected, None);
        self.schedule_next(now, cycle.server_interval_ms, cycle.budget);
    }

    /// Arms the next poll: the interval, the server's `X-Poll-Interval`, a low budget.
    fn schedule_next(&mut self, now: Now, server_ms: Option<u64>, budget: Option<Budget>) {
        let configured = self.config.interval_ms;
        let base = server_ms.map_or(configured, |server| server.max(configured));
        if base != self.base_interval_ms {
            let message = if base > configured {
                format!("server asks for {} between polls", seconds(base))
            } else {
                format!("back to the configured {} between polls", seconds(base))
            };
            self.core.log_with(
                now,
                Level::Info,
                "poll.interval",
                message,
                json!({ "intervalMs": base, "configuredMs": configured }),
            );
            self.base_interval_ms = base;
        }
        let next = interval::next_poll(configured, server_ms, budget, now.wall);
        if next.stretched
            && let Some(budget) = budget
        {
            self.core.log_with(
                now,
                Level::Info,
                "rate.budget",
                format!(
                    "{} requests left until the rate-limit reset; next poll in {}",
                    budget.remaining,
                    seconds(next.delay_ms)
                ),
                json!({
                    "remaining": budget.remaining,
                    "resetAt": budget.reset,
                    "delayMs": next.delay_ms,
                }),
            );
        }
        self.core.timers.arm(Timer::Poll, now.mono + next.delay_ms);
    }
}

//! Replays every `fixtures/github/*.jsonl` through the GitHub poller, snapshots the transcript,
//! and checks the invariants no snapshot review should have to catch by eye.

// Helpers outside #[test] functions panic on broken fixtures on purpose: a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use openflume_proto::github::{GithubConfig, GithubMachine};
use openflume_proto::testing::{Entry, Fixture, Simulator, Transcript, invariants};
use openflume_proto::{
    HttpResponse, Input, Level, Log, Machine, Millis, Now, Output, ReqId, Status, UnixMillis,
};

fn run(path: &std::path::Path) -> (GithubMachine, Transcript, GithubConfig) {
    let fixture = Fixture::load(path).expect("fixture loads");
    let config: GithubConfig =
        serde_json::from_value(fixture.header.config.clone()).expect("fixture config");
    let machine = GithubMachine::new(config.clone(), fixture.header.seed).expect("valid config");
    let (machine, transcript) = Simulator::run(machine, &fixture);
    (machine, transcript, config)
}

#[test]
fn fixtures() {
    insta::glob!("../../fixtures/github", "*.jsonl", |path| {
        let (machine, transcript, config) = run(path);
        invariants::check(&machine, &transcript, &[config.token.expose()]);
        check_invariants(&transcript, path);
        insta::assert_snapshot!(transcript.to_jsonl());
    });
}

/// What must hold in every GitHub transcript, beside the invariants of every machine.
fn check_invariants(transcript: &Transcript, path: &std::path::Path) {
    let name = path.display();
    let mut in_flight = 0i32;
    for (_, entry) in &transcript.entries {
        match entry {
            Entry::Out(output) => {
                if let Output::Log(log) = output {
                    assert_eq!(log.source, "github");
                    if log.action == "poll.retry" {
                        // A timed-out request is abandoned.
                        in_flight = 0;
                    }
                }
                if let Output::Request { request, .. } = output {
                    assert!(
                        request.url.starts_with("https://api.github.com/")
                            || request.url.starts_with("https://API.github.com:443/"),
                        "{name}: request left the API origin: {}",
                        request.url
                    );
                    in_flight += 1;
                    assert!(in_flight <= 1, "{name}: two requests in flight");
                }
                if let Output::Emit { event, confirm } = output {
                    assert_eq!(event.source, "github");
                    assert_eq!(event.event_type, "notification");
                    assert_eq!(event.meta["event_type"], "notification");
                    assert!(confirm.is_some(), "{name}: events wait for confirmation");
                    let data = event.data.parse().unwrap();
                    assert_eq!(
                        event.meta["thread_id"],
                        match &data["id"] {
                            serde_json::Value::String(s) => s.clone(),
                            other => other.to_string(),
                        }
                    );
                }
            }
            Entry::In {
                input: Input::Response { .. } | Input::RequestFailed { .. },
                ..
            } => {
                in_flight = 0;
            }
            _ => {}
        }
    }
}

fn fixture(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/github")
        .join(format!("{name}.jsonl"))
}

fn requests(transcript: &Transcript) -> Vec<(Millis, ReqId, &openflume_proto::HttpRequest)> {
    transcript
        .outputs()
        .filter_map(|(at, o)| match o {
            Output::Request { req, request } => Some((at, *req, request)),
            _ => None,
        })
        .collect()
}

fn header<'a>(request: &'a openflume_proto::HttpRequest, name: &str) -> Option<&'a str> {
    request
        .headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn emitted_ids(transcript: &Transcript) -> Vec<String> {
    transcript
        .outputs()
        .filter_map(|(_, o)| match o {
            Output::Emit { event, .. } => Some(event.meta["thread_id"].clone()),
            _ => None,
        })
        .collect()
}

fn actions(transcript: &Transcript, level: Level) -> Vec<String> {
    transcript
        .outputs()
        .filter_map(|(_, o)| match o {
            Output::Log(log) if log.level == level => Some(log.action.clone()),
            _ => None,
        })
        .collect()
}

fn statuses(transcript: &Transcript) -> Vec<(Status, Option<String>)> {
    transcript
        .outputs()
        .filter_map(|(_, o)| match o {
            Output::Status(change) => Some((change.to, change.reason.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn bootstrap_skips_then_emits_only_news_with_conditional_requests() {
    let (_, t, _) = run(&fixture("bootstrap_then_new"));
    assert_eq!(emitted_ids(&t), ["1003"]);
    let reqs = requests(&t);
    assert_eq!(reqs.len(), 3);
    let (_, _, first) = reqs[0];
    assert_eq!(
        first.headers,
        vec![
            (
                "Authorization".to_owned(),
                "Bearer ghp_FIXTURE_do_not_log_0f1e2d".to_owned()
            ),
            (
                "Accept".to_owned(),
                "application/vnd.github+json".to_owned()
            ),
            ("X-GitHub-Api-Version".to_owned(), "2022-11-28".to_owned()),
            (
                "User-Agent".to_owned(),
                format!("openflume/{}", env!("CARGO_PKG_VERSION"))
            ),
        ]
    );
    assert_eq!(reqs[1].0, Millis(60_200));
    assert_eq!(
        header(reqs[1].2, "If-Modified-Since"),
        Some("Tue, 25 Nov 2025 19:40:00 GMT")
    );
    assert_eq!(header(reqs[1].2, "If-None-Match"), Some("W/\"a1b2c3\""));
    assert_eq!(
        header(reqs[2].2, "If-Modified-Since"),
        Some("Tue, 25 Nov 2025 19:47:13 GMT")
    );
    let bootstrap = t
        .outputs()
        .find_map(|(_, o)| match o {
            Output::Log(log) if log.action == "poll.bootstrap" => Some(log.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(bootstrap.level, Level::Info);
    assert_eq!(bootstrap.detail.unwrap()["count"], 2);
    assert_eq!(
        statuses(&t),
        [(Status::Connecting, None), (Status::Connected, None)]
    );
}

/// Issue 21: a 304 to a request that carried no validators is not "nothing there". Taken as an
/// answer, it ended the bootstrap with 0 recorded and the next 200 emitted 3 old notifications.
#[test]
fn not_modified_without_validators_is_a_fault_and_keeps_the_bootstrap_pending() {
    let (_, t, _) = run(&fixture("not_modified_without_validators"));
    assert_eq!(emitted_ids(&t), Vec::<String>::new(), "nothing old is news");
    let reqs = requests(&t);
    assert_eq!(reqs.len(), 2, "one retry after the 304");
    for (_, _, request) in &reqs {
        assert_eq!(header(request, "If-Modified-Since"), None);
        assert_eq!(header(request, "If-None-Match"), None);
    }
    assert!(actions(&t, Level::Warn).contains(&"poll.retry".to_owned()));
    let bootstrap: Vec<Log> = t
        .outputs()
        .filter_map(|(_, o)| match o {
            Output::Log(log) if log.action == "poll.bootstrap" => Some(log.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(bootstrap.len(), 1, "one bootstrap, after the 200");
    assert_eq!(bootstrap[0].detail.as_ref().unwrap()["count"], 3);
    assert_eq!(
        statuses(&t),
        [
            (Status::Connecting, None),
            (Status::Reconnecting, Some("HTTP 304".to_owned())),
            (Status::Connected, None)
        ]
    );
}

#[test]
fn three_pages_follow_links_and_keep_page_one_validators() {
    let (_, t, _) = run(&fixture("three_pages"));
    let reqs = requests(&t);
    let urls: Vec<&str> = reqs.iter().map(|(_, _, r)| r.url.as_str()).collect();
    let base = "https://api.github.com/notifications?all=false&participating=false&per_page=3";
    assert_eq!(
        urls,
        [
            base.to_owned(),
            base.to_owned(),
            format!("{base}&page=2"),
            format!("{base}&page=3"),
            base.to_owned()
        ]
    );
    assert!(header(reqs[2].2, "If-Modified-Since").is_none());
    assert!(header(reqs[3].2, "If-None-Match").is_none());
    assert_eq!(
        header(reqs[4].2, "If-Modified-Since"),
        Some("Tue, 25 Nov 2025 19:47:13 GMT")
    );
    assert_eq!(emitted_ids(&t), ["2001", "2002", "2003", "2004"]);
}

#[test]
fn foreign_links_and_redirects_are_never_requested() {
    for name in ["link_foreign_host", "redirect_foreign"] {
        let (_, t, _) = run(&fixture(name));
        for (_, _, request) in requests(&t) {
            assert!(request.url.starts_with("https://api.github.com/"), "{name}");
        }
        assert!(!actions(&t, Level::Warn).is_empty(), "{name}");
    }
    let (_, t, _) = run(&fixture("link_foreign_host"));
    // The cut-short cycles kept the bootstrap validators.
    for (_, _, request) in requests(&t).iter().skip(1) {
        assert_eq!(
            header(request, "If-Modified-Since"),
            Some("Tue, 25 Nov 2025 19:40:00 GMT")
        );
    }
    assert_eq!(emitted_ids(&t), ["1002"]);
}

#[test]
fn rate_limit_waits_follow_the_headers() {
    let gaps = |name: &str| -> Vec<u64> {
        let (_, t, _) = run(&fixture(name));
        let reqs = requests(&t);
        reqs.windows(2).map(|w| w[1].0 - w[0].0).collect()
    };
    // 60 s interval, then 30 s retry-after (+100 ms response latency), then 49.8 s to the date.
    assert_eq!(gaps("rate_limit_retry_after"), [60_100, 30_100, 49_800]);
    // Reset + 1 s measured on the stepped wall clock.
    assert_eq!(gaps("rate_limit_primary_reset"), [60_100, 70_900]);
    assert_eq!(
        gaps("rate_limit_secondary"),
        [60_100, 60_100, 120_100, 240_100, 60_100, 60_100]
    );
    let (_, t, _) = run(&fixture("rate_limit_secondary"));
    // Transient: reconnecting, saying until when.
    assert!(statuses(&t).iter().any(|s| s.0 == Status::Reconnecting
        && s.1.as_deref() == Some("rate limited until 2025-11-25T19:48:40Z")));
    assert_eq!(t.outputs().last().map(|(at, _)| at), Some(Millis(600_700)));
}

#[test]
fn fatal_responses_fail_for_good() {
    for (name, reason) in [
        ("unauthorized", "bad credentials"),
        ("forbidden", "forbidden: Missing the 'notifications' scope."),
        (
            "unprocessable",
            "request rejected as invalid (check the configuration): Validation Failed",
        ),
        (
            "retries_exhausted",
            "gave up after 2 retries (HTTP 500: Server Error)",
        ),
    ] {
        let (machine, t, _) = run(&fixture(name));
        assert!(machine.is_finished(), "{name}");
        assert_eq!(machine.poll_timeout(), None, "{name}");
        assert_eq!(
            statuses(&t).last(),
            Some(&(Status::Failed, Some(reason.to_owned()))),
            "{name}"
        );
    }
}

#[test]
fn transient_errors_recover() {
    for (name, reasons) in [
        ("server_error_recovery", vec!["HTTP 502", "HTTP 503"]),
        ("network_error_recovery", vec!["network error"]),
        ("body_not_array", vec!["invalid response"]),
        ("redirect_foreign", vec!["redirect refused"]),
        ("redirect_loop", vec!["redirect refused"]),
    ] {
        let (machine, t, _) = run(&fixture(name));
        let seen: Vec<String> = statuses(&t)
            .into_iter()
            .filter(|(s, _)| *s == Status::Reconnecting)
            .filter_map(|(_, r)| r)
            .collect();
        assert_eq!(seen, reasons, "{name}");
        assert_eq!(machine.status(), Status::Connected, "{name}");
    }
}

#[test]
fn malformed_items_are_skipped_and_the_rest_emitted() {
    let (_, t, _) = run(&fixture("malformed_item"));
    assert_eq!(emitted_ids(&t), ["3001", "4242"]);
    let fields: Vec<serde_json::Value> = t
        .outputs()
        .filter_map(|(_, o)| match o {
            Output::Log(log) if log.action == "poll.malformed" => {
                Some(log.detail.as_ref().unwrap()["field"].clone())
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        fields,
        [
            serde_json::Value::Null,
            "id".into(),
            "id".into(),
            "updated_at".into(),
            serde_json::Value::Null
        ]
    );
}

#[test]
fn updated_thread_is_emitted_once() {
    let (_, t, _) = run(&fixture("updated_thread"));
    assert_eq!(emitted_ids(&t), ["1001", "1009"]);
}

#[test]
fn bootstrap_emit_keeps_raw_text() {
    let (_, t, _) = run(&fixture("bootstrap_emit"));
    let datas: Vec<String> = t
        .outputs()
        .filter_map(|(_, o)| match o {
            Output::Emit { event, .. } => Some(event.data.get().to_owned()),
            _ => None,
        })
        .collect();
    assert_eq!(datas.len(), 3);
    assert!(datas[0].starts_with("{\"id\": \"1001\", \"unread\": true"));
    assert!(datas[1].contains("\"url\": null"));
    assert!(datas[2].contains("\"future_field\": {\"nested\": [1, 2, null]}"));
}

#[test]
fn validators_wait_for_every_confirmation() {
    let (_, t, _) = run(&fixture("confirm_before_commit"));
    let reqs = requests(&t);
    assert_eq!(reqs.len(), 3);
    assert_eq!(reqs[2].0, Millis(150_000));
    assert_eq!(
        header(reqs[2].2, "If-Modified-Since"),
        Some("Tue, 25 Nov 2025 19:47:13 GMT")
    );
    let misuses: Vec<&String> = t
        .entries
        .iter()
        .filter_map(|(_, e)| match e {
            Entry::Misuse(m) => Some(m),
            _ => None,
        })
        .collect();
    assert_eq!(misuses, ["unknown delivery id DeliveryId(9)"]);
}

#[test]
fn low_budget_stretches_the_interval() {
    let (_, t, _) = run(&fixture("low_budget_stretch"));
    let at: Vec<Millis> = requests(&t).iter().map(|(at, _, _)| *at).collect();
    assert_eq!(
        at,
        [
            Millis(0),
            Millis(60_100),
            Millis(460_177),
            Millis(815_822),
            Millis(3_660_000)
        ]
    );
    assert_eq!(
        t.outputs().last().map(|(at, _)| at),
        Some(Millis(3_660_100))
    );
}

#[test]
fn poll_interval_header_raises_and_returns() {
    let (_, t, _) = run(&fixture("poll_interval_raised"));
    let at: Vec<u64> = requests(&t).iter().map(|(at, _, _)| at.0).collect();
    assert_eq!(
        at,
        [0, 60_150, 180_250, 240_350, 300_450, 3_900_550, 3_960_650]
    );
}

#[test]
fn page_cap_bounds_a_cycle() {
    let (_, t, _) = run(&fixture("page_cap"));
    assert_eq!(requests(&t).len(), 3);
    assert_eq!(
        header(requests(&t)[2].2, "If-Modified-Since"),
        Some("Tue, 25 Nov 2025 19:40:00 GMT")
    );
}

#[test]
fn shutdown_does_not_wait_for_the_request_in_flight() {
    let (machine, t, _) = run(&fixture("lifecycle_and_shutdown"));
    assert!(machine.is_finished());
    assert_eq!(machine.status(), Status::Disconnected);
    let misuses: Vec<&String> = t
        .entries
        .iter()
        .filter_map(|(_, e)| match e {
            Entry::Misuse(m) => Some(m),
            _ => None,
        })
        .collect();
    assert_eq!(misuses.len(), 3, "{misuses:?}");
}

#[test]
fn time_never_goes_backwards_and_timers_never_in_the_past() {
    let config = GithubConfig::new("ghp_x");
    let mut m = GithubMachine::new(config, 1).unwrap();
    let at = |mono| Now {
        mono: Millis(mono),
        wall: UnixMillis(1_764_100_000_000 + mono as i64),
    };
    m.handle_input(at(1_000), Input::Start).unwrap();
    while m.poll_output().is_some() {}
    // A response stamped earlier than the start still schedules relative to the latest time.
    let ok = HttpResponse {
        status: 200,
        headers: vec![],
        body: "[]".into(),
    };
    m.handle_input(
        at(500),
        Input::Response {
            req: ReqId(1),
            response: ok,
        },
    )
    .unwrap();
    while m.poll_output().is_some() {}
    assert_eq!(m.poll_timeout(), Some(Millis(61_000)));
    // An early timer does nothing.
    m.handle_input(at(2_000), Input::Timer).unwrap();
    assert!(m.poll_output().is_none());
    assert_eq!(m.poll_timeout(), Some(Millis(61_000)));
}

#[test]
fn garbage_responses_never_panic_or_break_the_contract() {
    const TOKEN: &str = "ghp_GARBAGE_token_9c8b7a";
    let bodies: &[&[u8]] = &[
        b"",
        b"[]",
        b"[",
        b"{}",
        b"null",
        b"\xff\xfe",
        b"[1, \"x\", null, [], {}]",
        br#"[{"id":"1","updated_at":"t"},{"id":"1","updated_at":"t"}]"#,
        br#"[{"id":"2","updated_at":"u","subject":{"type":7},"repository":[]}]"#,
        br#"[{"id":99999999999999999999999,"updated_at":"t"}]"#,
        br#"{"message":"You have exceeded a secondary rate limit"}"#,
    ];
    // Pages and retryable answers, so walks last; fatal ones are drawn rarely (below).
    let statuses = [200, 200, 200, 200, 304, 301, 302, 408, 429, 500, 502, 999];
    let fatal_statuses = [401, 403, 404, 422];
    let header_values = [
        "",
        "0",
        "-1",
        "60",
        "99999999999999999999",
        "1764100100",
        "<https://api.github.com/notifications?page=2>; rel=\"next\"",
        "<https://evil.example/x>; rel=next",
        "/relative",
        "garbage \u{1}",
    ];
    let header_names = [
        "Link",
        "Location",
        "Retry-After",
        "X-Poll-Interval",
        "X-RateLimit-Remaining",
        "X-RateLimit-Reset",
        "ETag",
        "Last-Modified",
    ];
    let (mut requests, mut emits, mut finished) = (0, 0, 0);
    for seed in 0..200u64 {
        let mut rng = fastrand::Rng::with_seed(seed);
        let config = GithubConfig {
            interval_ms: 1_000,
            page_cap: 3,
            reconnect: openflume_proto::ReconnectPolicy {
                max_attempts: None,
                base_ms: 100,
                max_ms: 1_000,
            },
            ..GithubConfig::new(TOKEN)
        };
        let mut machine = GithubMachine::new(config, seed).unwrap();
        let mut now = Now {
            mono: Millis(0),
            wall: UnixMillis(1_764_100_000_000),
        };
        let mut outputs = Vec::new();
        let step = |machine: &mut GithubMachine, now: Now, input: Input| {
            let result = machine.handle_input(now, input);
            assert!(result.is_ok() || machine.is_finished(), "{result:?}");
            let drained: Vec<Output> = std::iter::from_fn(|| machine.poll_output()).collect();
            if let Some(deadline) = machine.poll_timeout() {
                assert!(deadline >= now.mono, "timer armed in the past");
            }
            drained
        };
        outputs.extend(step(&mut machine, now, Input::Start));
        let mut pending_req = None;
        let mut pending_deliveries = Vec::new();
        for _ in 0..80 {
            if machine.is_finished() {
                break;
            }
            for output in outputs.drain(..) {
                match output {
                    Output::Request { req, request } => {
                        assert!(pending_req.is_none(), "two requests in flight");
                        assert!(request.url.starts_with("https://api.github.com/"));
                        pending_req = Some(req);
                        requests += 1;
                    }
                    Output::Emit {
                        confirm: Some(d), ..
                    } => {
                        pending_deliveries.push(d);
                        emits += 1;
                    }
                    Output::Log(log) => {
                        assert!(!serde_json::to_string(&log).unwrap().contains(TOKEN));
                    }
                    other => assert!(!format!("{other:?}").contains(TOKEN)),
                }
            }
            let target = now.mono + rng.u64(0..3_000);
            let wall_drift = rng.i64(-500..3_000);
            let due = machine
                .poll_timeout()
                .filter(|deadline| *deadline <= target);
            now.wall = UnixMillis(now.wall.0 + wall_drift);
            let input = if let Some(deadline) = due {
                // Like a driver: wake at the deadline.
                now.mono = deadline.max(now.mono);
                Input::Timer
            } else {
                now.mono = target;
                match (rng.u8(0..10), pending_req) {
                    (0..=5, Some(req)) => {
                        let headers = (0..rng.usize(0..4))
                            .map(|_| {
                                (
                                    header_names[rng.usize(0..header_names.len())].to_owned(),
                                    header_values[rng.usize(0..header_values.len())].to_owned(),
                                )
                            })
                            .collect();
                        pending_req = None;
                        Input::Response {
                            req,
                            response: HttpResponse {
                                status: if rng.u8(0..40) == 0 {
                                    fatal_statuses[rng.usize(0..fatal_statuses.len())]
                                } else {
                                    statuses[rng.usize(0..statuses.len())]
                                },
                                headers,
                                body: bodies[rng.usize(0..bodies.len())].into(),
                            },
                        }
                    }
                    (6, Some(req)) => {
                        pending_req = None;
                        Input::RequestFailed {
                            req,
                            error: "reset".into(),
                        }
                    }
                    (7, _) if !pending_deliveries.is_empty() => Input::Delivered {
                        delivery: pending_deliveries.remove(0),
                    },
                    // An early or spurious wake.
                    _ => Input::Timer,
                }
            };
            // A timeout may have abandoned the request: its late answer must be harmless.
            outputs.extend(step(&mut machine, now, input));
            if outputs
                .iter()
                .any(|o| matches!(o, Output::Log(l) if l.action == "poll.retry"))
            {
                pending_req = None;
            }
        }
        assert!(!format!("{machine:?}").contains(TOKEN));
        finished += usize::from(machine.is_finished());
    }
    // The walk reached the interesting places: many requests, some events, some fatal ends,
    // and some machines still polling after 80 steps.
    assert!(
        requests > 2_000,
        "{requests} requests, {emits} events, {finished} finished"
    );
    assert!(emits > 20, "{emits} events");
    assert!((1..200).contains(&finished), "{finished} finished");
}

#[test]
fn a_restart_from_a_stored_cursor_emits_only_what_changed_while_down() {
    let (_, transcript, _) = run(&fixture("resume_from_cursor"));
    let requests = requests(&transcript);
    assert_eq!(
        header(requests[0].2, "If-Modified-Since"),
        Some("Tue, 25 Nov 2025 19:40:00 GMT"),
        "page 1 is conditional from the first poll"
    );
    assert_eq!(emitted_ids(&transcript), ["1003"]);
    assert!(!actions(&transcript, Level::Info).contains(&"poll.bootstrap".to_owned()));
    let checkpoints: Vec<&openflume_proto::GithubCursor> = transcript
        .outputs()
        .filter_map(|(_, out)| match out {
            Output::Checkpoint(openflume_proto::Checkpoint::Github(cursor)) => Some(cursor),
            _ => None,
        })
        .collect();
    let [cursor] = &checkpoints[..] else {
        panic!("one checkpoint, after the confirmation: {checkpoints:?}")
    };
    assert_eq!(cursor.seen.len(), 3);
    assert_eq!(cursor.etag.as_deref(), Some("W/\"d4e5f6\""));
}

//! # The GitHub poller in a plain blocking loop: no async, no openflume driver
//!
//! The protocol machines never touch a socket or a clock, so embedding one needs only the loop
//! below: read the clock, feed one input, drain every output, perform what they ask, and sleep
//! until `poll_timeout()` when there is nothing to feed. HTTP goes through the proto crate's
//! sans-IO codec (`encode_request`, `ResponseReader`) over a `std::net::TcpStream`, one
//! connection per request. Every emitted event is confirmed with `Input::Delivered` once it is
//! printed, which lets the poller commit its validators and answer later polls with free 304s.
//!
//! Plain HTTP only: TLS is out of scope here (wrap the stream in `rustls::StreamOwned` for it),
//! so this talks to the GitHub simulator, started in-process by default, or to a plain-HTTP
//! proxy named by `OPENFLUME_GITHUB_API_URL` (token in `GITHUB_TOKEN`).
//!
//! ```text
//! cargo run -p openflume --example blocking_github -- [COUNT]
//! ```
//!
//! It prints each notification event as one JSON line on stdout (logs and status on stderr) and
//! stops after COUNT events (default 6) or one minute.

// A demo: it panics with a message when the simulator cannot start or the loop misuses the machine.
#![allow(clippy::expect_used)]

use openflume_proto::github::{Bootstrap, GithubConfig, GithubMachine};
use openflume_proto::http::{Limits, ResponseReader, encode_request};
use openflume_proto::url::Url;
use openflume_proto::{HttpRequest, HttpResponse, Input, Machine, Millis, Now, Output, UnixMillis};
use openflume_sim::{GithubSim, GithubSimConfig, Scenario};
use std::collections::VecDeque;
use std::error::Error;
use std::hash::{BuildHasher, RandomState};
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const IO_TIMEOUT: Duration = Duration::from_secs(15);
const TIME_LIMIT: Duration = Duration::from_secs(60);

/// Both clocks, read now: monotonic ms since `origin`, and the wall clock.
fn now(origin: Instant) -> Now {
    let wall = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    Now {
        mono: Millis(origin.elapsed().as_millis() as u64),
        wall: UnixMillis(wall),
    }
}

/// Sends `request` on a fresh connection and reads the whole response.
fn send(request: &HttpRequest) -> Result<HttpResponse, Box<dyn Error>> {
    let url = Url::parse(&request.url)?;
    if url.tls() {
        return Err("https needs TLS, which this example leaves out".into());
    }
    // One connection per request keeps the example short; the smol driver reuses keep-alive ones.
    let request = request.clone().header("Connection", "close");
    let addr = (url.host.as_str(), url.port)
        .to_socket_addrs()?
        .next()
        .ok_or("the host has no address")?;
    let mut stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.write_all(&encode_request(&request)?)?;
    let mut reader = ResponseReader::for_request(&request, Limits::default());
    let mut buf = vec![0; 16 * 1024];
    loop {
        let read = match stream.read(&mut buf)? {
            0 => return Ok(reader.eof()?.response),
            n => reader.feed(buf.get(..n).unwrap_or_default())?,
        };
        if let Some(done) = read {
            return Ok(done.response);
        }
    }
}

fn main() {
    let count: usize = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(6);
    // Without an API URL, run the GitHub simulator in-process. It lives on smol's executor
    // threads; nothing below is async.
    let (_sim, api_url, token) = match std::env::var("OPENFLUME_GITHUB_API_URL") {
        Ok(url) => (None, url, std::env::var("GITHUB_TOKEN").unwrap_or_default()),
        Err(_) => {
            let config = GithubSimConfig {
                poll_interval: 1,
                scenario: Scenario::steady(0.5),
                ..GithubSimConfig::default()
            };
            let sim = smol::block_on(GithubSim::start(config)).expect("start the GitHub simulator");
            let (url, token) = (sim.api_url(), sim.token().to_owned());
            (Some(sim), url, token)
        }
    };
    let config = GithubConfig {
        api_url,
        interval_ms: 1000,
        bootstrap: Bootstrap::Emit, // also print the notifications that exist already
        ..GithubConfig::new(token)
    };
    let seed = RandomState::new().hash_one("seed");
    let mut machine = GithubMachine::new(config, seed).expect("a valid configuration");

    let origin = Instant::now();
    let mut inputs = VecDeque::from([Input::Start]);
    let (mut events, mut stopping) = (0, false);
    while !machine.is_finished() {
        if let Some(input) = inputs.pop_front() {
            // One input, then every output it caused (the drain rule); answers are queued.
            machine
                .handle_input(now(origin), input)
                .expect("the loop follows the Machine contract");
            while let Some(output) = machine.poll_output() {
                match output {
                    Output::Request { req, request } => inputs.push_back(match send(&request) {
                        Ok(response) => Input::Response { req, response },
                        Err(error) => Input::RequestFailed {
                            req,
                            error: error.to_string(),
                        },
                    }),
                    Output::Emit { event, confirm } => {
                        println!("{}", serde_json::to_string(&event).expect("JSON"));
                        events += 1;
                        // Printed counts as delivered: the poller may now commit its validators.
                        if let Some(delivery) = confirm {
                            inputs.push_back(Input::Delivered { delivery });
                        }
                    }
                    Output::Log(log) => eprintln!(
                        "[{}] {}: {} {}",
                        log.level.as_str(),
                        log.action,
                        log.message,
                        log.error.unwrap_or_default()
                    ),
                    Output::Status(change) => eprintln!("status: {} → {}", change.from, change.to),
                    // The GitHub poller never opens WebSockets.
                    other => eprintln!("ignored: {other:?}"),
                }
            }
        } else if !stopping && (events >= count || origin.elapsed() >= TIME_LIMIT) {
            stopping = true;
            inputs.push_back(Input::Shutdown {
                keep_session: false,
            });
        } else {
            // Nothing to feed: sleep until the next deadline (capped by the time limit), then
            // say so. An early or spurious Timer is harmless.
            let limit = TIME_LIMIT.saturating_sub(origin.elapsed());
            let wait = machine.poll_timeout().map_or(limit, |at| {
                Duration::from_millis(at.0.saturating_sub(now(origin).mono.0)).min(limit)
            });
            std::thread::sleep(wait);
            inputs.push_back(Input::Timer);
        }
    }
    eprintln!("stopped after {events} events: {}", machine.status());
}

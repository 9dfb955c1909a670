//! `openflume serve`'s status page in a real browser (issue 17): headless Chromium opens `/`,
//! the page follows the hub at `/ws`, and events posted after it is live appear in its DOM.
//! With a hub token the page takes it from the URL fragment and offers it as a WebSocket
//! subprotocol, since a browser cannot set `Authorization` on a WebSocket.
//!
//! These tests need Chromium (Debian's `chromium`, which `.ci/run` installs): without it they
//! fail saying so, they never skip.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use openflume_tests::browser::Browser;
use openflume_tests::serve::Serve;
use std::net::TcpStream;
use std::time::Duration;
use tungstenite::client::IntoClientRequest;

const WAIT: Duration = Duration::from_secs(20);
const SECRET: &str = "status-page-test-secret";
const TOKEN: &str = "status-page-test-token";

fn serve(token: Option<&str>) -> Serve {
    let mut env = vec![("DEPLOY_SECRET", SECRET)];
    if let Some(token) = token {
        env.push(("OPENFLUME_HUB_TOKEN", token));
    }
    Serve::spawn(&["--webhook", "deploys=DEPLOY_SECRET"], &env)
}

fn post_deploy(serve: &Serve, n: u32) {
    let body = format!(r#"{{"deploy":{n}}}"#);
    assert_eq!(serve.post_custom("deploys", SECRET, &body), 200);
}

/// The rows of the `deploys` events, newest first: `[event id, summary]`.
const DEPLOY_ROWS: &str = r#"Array.from(document.querySelectorAll('#events tbody tr[data-type="deploys"]'), (row) => [Number(row.dataset.eventId), row.cells[4].textContent])"#;

/// True once the events table shows the deploys `1..=n`.
fn deploys_shown(n: u32) -> String {
    let wanted: Vec<String> = (1..=n)
        .map(|i| format!(r#""{{\"deploy\":{i}}}""#))
        .collect();
    format!(
        "(() => {{ const shown = {DEPLOY_ROWS}.map((row) => row[1]); \
         return [{}].every((summary) => shown.includes(summary)); }})()",
        wanted.join(",")
    )
}

/// With a hub token: the page, opened at `/#token=…`, replays the event posted before it
/// loaded, goes live over the hub, and shows each event posted afterwards without a reload,
/// newest first, each once; it polls `/status.json` with the token (sources, subscribers), and
/// its filter hides and brings back rows.
#[test]
fn live_events_appear_on_the_status_page() {
    let serve = serve(Some(TOKEN));
    post_deploy(&serve, 1);
    let mut browser = Browser::launch();
    browser.open(&format!("http://{}/#token={TOKEN}", serve.addr));
    browser.wait_for(
        "the page to follow the hub",
        "document.body.dataset.hub === 'live'",
        WAIT,
    );
    browser.wait_for("the replayed deploy 1", &deploys_shown(1), WAIT);
    // Live: posted only now, while the page is open; only the hub can bring them.
    for n in 2..=4 {
        post_deploy(&serve, n);
    }
    browser.wait_for("the live deploys 2 to 4", &deploys_shown(4), WAIT);
    let rows = browser.eval(DEPLOY_ROWS);
    let ids: Vec<u64> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row[0].as_u64().unwrap())
        .collect();
    assert_eq!(ids.len(), 4, "each event once: {rows}");
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "newest first: {ids:?}");

    // /status.json, read with the token: the sources and the page's own hub connection.
    browser.wait_for(
        "the webhooks source shown connected",
        r#"(document.querySelector('#sources tr[data-source="webhooks"]') || {}).textContent?.includes('connected')"#,
        WAIT,
    );
    browser.wait_for(
        "the custom source's event count",
        r#"(document.querySelector('#sources tr[data-source="custom"] td:nth-child(3)') || {}).textContent === '4'"#,
        WAIT,
    );
    browser.wait_for(
        "the page among the hub subscribers",
        "document.querySelectorAll('#subscribers tbody tr[data-connection]').length >= 1",
        WAIT,
    );

    // The filter, as a user types: nothing matches, then the type matches again.
    let set_type_filter = |browser: &mut Browser, text: &str| {
        browser.eval(&format!(
            "(() => {{ const input = document.getElementById('filter-type'); \
             input.value = {text:?}; input.dispatchEvent(new Event('input')); }})()"
        ));
    };
    set_type_filter(&mut browser, "no-such-type");
    browser.wait_for(
        "the filter to hide every row",
        "document.querySelectorAll('#events tbody tr[data-event-id]').length === 0",
        WAIT,
    );
    set_type_filter(&mut browser, "deploy");
    browser.wait_for("the rows back", &deploys_shown(4), WAIT);
    assert_eq!(
        browser.eval("document.getElementById('error').hidden"),
        true,
        "the page shows no error"
    );
    assert!(browser.errors().is_empty(), "{:?}", browser.errors());
}

/// On loopback without a token the page just works: no fragment, no subprotocol token.
#[test]
fn without_a_token_the_page_works_on_loopback() {
    let serve = serve(None);
    let mut browser = Browser::launch();
    browser.open(&format!("http://{}/", serve.addr));
    browser.wait_for(
        "the page to follow the hub",
        "document.body.dataset.hub === 'live'",
        WAIT,
    );
    post_deploy(&serve, 1);
    browser.wait_for("the live deploy", &deploys_shown(1), WAIT);
    assert!(browser.errors().is_empty(), "{:?}", browser.errors());
}

/// A sharded Discord source shows each shard's status beside its own.
#[test]
fn each_shard_of_a_sharded_source_is_shown_with_its_status() {
    let discord = openflume_tests::discord_sim(openflume_sim::DiscordSimConfig {
        shards: 2,
        max_concurrency: 2,
        ..openflume_sim::DiscordSimConfig::default()
    });
    let (token, api) = (discord.token().to_owned(), discord.api_url());
    let serve = Serve::spawn(
        &["--discord-shards", "0-1/2"],
        &[
            ("DISCORD_BOT_TOKEN", &token),
            ("OPENFLUME_DISCORD_API_URL", &api),
        ],
    );
    let mut browser = Browser::launch();
    browser.open(&format!("http://{}/", serve.addr));
    browser.wait_for(
        "both shards shown connected",
        r#"(() => { const text = (document.querySelector('#sources tr[data-source="discord"]') || {}).textContent || ''; return text.includes('0/2 connected') && text.includes('1/2 connected'); })()"#,
        WAIT,
    );
    assert!(browser.errors().is_empty(), "{:?}", browser.errors());
}

/// What the page relies on, without a browser: the token as a subprotocol upgrades `/ws` (and
/// the answer selects only `openflume.v1`, never echoing the token); a wrong one gets 401;
/// `/metrics` and `/status.json` want the token as a bearer; the page and its script need
/// none and forbid every outside resource.
#[test]
fn the_token_goes_in_the_websocket_protocol_or_the_authorization_header() {
    let serve = serve(Some(TOKEN));
    let hex: String = TOKEN.bytes().map(|b| format!("{b:02x}")).collect();
    let upgrade = |protocols: &str| {
        let mut request = format!("ws://{}/ws", serve.addr)
            .into_client_request()
            .unwrap();
        request
            .headers_mut()
            .insert("Sec-WebSocket-Protocol", protocols.parse().unwrap());
        let stream = TcpStream::connect(serve.addr).unwrap();
        stream.set_read_timeout(Some(WAIT)).unwrap();
        match tungstenite::client::client(request, stream) {
            Ok((_, response)) => Ok(response),
            Err(tungstenite::HandshakeError::Failure(tungstenite::Error::Http(response))) => {
                Err(response.status().as_u16())
            }
            Err(other) => panic!("handshake: {other:?}"),
        }
    };
    let accepted = upgrade(&format!("openflume.v1, openflume.token.{hex}")).expect("upgraded");
    let selected = accepted.headers().get("Sec-WebSocket-Protocol").unwrap();
    assert_eq!(selected, "openflume.v1");
    let wrong: String = "wrong-token".bytes().map(|b| format!("{b:02x}")).collect();
    assert_eq!(
        upgrade(&format!("openflume.v1, openflume.token.{wrong}")).err(),
        Some(401)
    );
    assert_eq!(upgrade("openflume.v1").err(), Some(401));

    let bearer = format!("Bearer {TOKEN}");
    for path in ["/metrics", "/status.json"] {
        assert_eq!(serve.get(path, &[]).status, 401, "{path} without the token");
        let answer = serve.get(path, &[("Authorization", &bearer)]);
        assert_eq!(answer.status, 200, "{path} with the token");
    }
    for (path, content_type) in [("/", "text/html"), ("/status.js", "text/javascript")] {
        let answer = serve.get(path, &[]);
        assert_eq!(answer.status, 200, "{path}");
        assert!(
            answer
                .header("content-type")
                .is_some_and(|t| t.starts_with(content_type)),
            "{path}: {:?}",
            answer.headers
        );
        let policy = answer.header("content-security-policy").unwrap();
        assert!(policy.starts_with("default-src 'none'"), "{policy}");
    }
}

//! `openflume listen` on a corporate network (issue 19): a private CA trusted with `--ca-cert` or
//! through the OS trust store (`SSL_CERT_FILE`), and HTTP proxies from the environment, tunnelled
//! with `CONNECT`. The binary runs against the simulators, behind a TLS-terminating relay whose
//! certificate a CA made here signed, and a CONNECT proxy written here that records every tunnel.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use futures_rustls::rustls::ServerConfig;
use openflume_proto::webhook::base64_encode;
use openflume_sim::{DiscordAction, DiscordSimConfig, GithubSim, GithubSimConfig};
use openflume_tests::tls::{TlsRelay, pipe};
use openflume_tests::{
    Openflume, Reader, assert_text_has_no_secret, block_on, discord_env, is_event_json, is_log_json,
};
use smol::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Longest wait for any one effect.
const WAIT: Duration = Duration::from_secs(15);

/// A CA made for this test, its PEM in a file, and a `localhost` server configuration it signed.
struct Pki {
    ca_pem: PathBuf,
    server: Arc<ServerConfig>,
    _dir: tempfile::TempDir,
}

fn pki() -> Pki {
    let pki = openflume_tests::tls::Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let ca_pem = dir.path().join("ca.pem");
    std::fs::write(&ca_pem, pki.ca_pem()).unwrap();
    Pki {
        ca_pem,
        server: pki.server,
        _dir: dir,
    }
}

/// One CONNECT the proxy received.
#[derive(Clone, Debug)]
struct Tunnel {
    target: String,
    authorization: Option<String>,
}

/// An HTTP CONNECT proxy on 127.0.0.1: records each CONNECT, refuses with `refuse` if set, else
/// answers 200 and relays the bytes both ways to the target.
struct ConnectProxy {
    port: u16,
    tunnels: Arc<Mutex<Vec<Tunnel>>>,
    _task: smol::Task<()>,
}

impl ConnectProxy {
    fn start(refuse: Option<&'static str>) -> ConnectProxy {
        let listener = block_on(WAIT, "bind the proxy", TcpListener::bind("127.0.0.1:0")).unwrap();
        let port = listener.local_addr().unwrap().port();
        let tunnels = Arc::new(Mutex::new(Vec::new()));
        let seen = tunnels.clone();
        let task = smol::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let seen = seen.clone();
                smol::spawn(async move {
                    // The head, byte by byte: nothing after it is read here.
                    let mut head = Vec::new();
                    let mut byte = [0u8; 1];
                    while !head.ends_with(b"\r\n\r\n") {
                        if client.read(&mut byte).await.unwrap_or(0) == 0 || head.len() > 8192 {
                            return;
                        }
                        head.push(byte[0]);
                    }
                    let head = String::from_utf8_lossy(&head).into_owned();
                    let mut lines = head.split("\r\n");
                    let request_line = lines.next().unwrap_or_default().to_owned();
                    let authorization = lines.find_map(|line| {
                        let (name, value) = line.split_once(':')?;
                        name.eq_ignore_ascii_case("proxy-authorization")
                            .then(|| value.trim().to_owned())
                    });
                    let mut parts = request_line.split(' ');
                    let (Some("CONNECT"), Some(target)) = (parts.next(), parts.next()) else {
                        let _ = client
                            .write_all(
                                b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n",
                            )
                            .await;
                        return;
                    };
                    let target = target.to_owned();
                    seen.lock().unwrap().push(Tunnel {
                        target: target.clone(),
                        authorization,
                    });
                    if let Some(answer) = refuse {
                        let _ = client.write_all(answer.as_bytes()).await;
                        return;
                    }
                    let Ok(upstream) = TcpStream::connect(target.as_str()).await else {
                        let _ = client
                            .write_all(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
                            .await;
                        return;
                    };
                    if client
                        .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                        .await
                        .is_err()
                    {
                        return;
                    }
                    futures_lite::future::zip(
                        pipe(client.clone(), upstream.clone()),
                        pipe(upstream, client),
                    )
                    .await;
                })
                .detach();
            }
        });
        ConnectProxy {
            port,
            tunnels,
            _task: task,
        }
    }

    fn tunnels(&self) -> Vec<Tunnel> {
        self.tunnels.lock().unwrap().clone()
    }
}

/// `openflume listen --format json` with fast reconnects, `extra` flags and `env`.
fn listen(extra: &[&str], env: &[(&str, String)]) -> Openflume {
    openflume_tests::listen(extra, env, Reader::Eager)
}

fn start_github() -> GithubSim {
    let config = GithubSimConfig {
        poll_interval: 1,
        initial_notifications: 2,
        ..GithubSimConfig::default()
    };
    block_on(WAIT, "start the GitHub simulator", GithubSim::start(config)).unwrap()
}

/// The GitHub source pointed at `https://localhost:PORT` (the TLS relay), emitting at start.
fn github_over_tls(
    sim: &GithubSim,
    relay: &TlsRelay,
) -> (Vec<&'static str>, Vec<(&'static str, String)>) {
    let flags = vec!["--github-interval", "1", "--github-bootstrap", "emit"];
    let env = vec![
        ("GITHUB_TOKEN", sim.token().to_owned()),
        (
            "OPENFLUME_GITHUB_API_URL",
            format!("https://localhost:{}", relay.port),
        ),
    ];
    (flags, env)
}

/// Waits for `n` notification events, then stops the binary; returns stdout and stderr.
fn notifications_then_stop(mut cli: Openflume, n: usize) -> (Vec<String>, String) {
    let mut seen = 0;
    cli.wait_for_json(WAIT, |line| {
        seen += usize::from(is_event_json(line, "github", "notification"));
        seen == n
    });
    cli.terminate();
    let (status, lines, stderr) = cli.wait_exit(WAIT);
    assert_eq!(status.code(), Some(0), "stderr: {stderr}");
    (lines, stderr)
}

#[test]
fn ca_cert_file_makes_a_private_ca_trusted_and_an_unreadable_os_store_only_warns() {
    let pki = pki();
    let sim = start_github();
    let relay = TlsRelay::start(sim.local_addr(), pki.server.clone());
    let (mut flags, mut env) = github_over_tls(&sim, &relay);
    let ca = pki.ca_pem.to_str().unwrap().to_owned();
    flags.extend(["--ca-cert", ca.as_str()]);
    // The OS store cannot be read: a warning, and the connection still works.
    env.push(("SSL_CERT_FILE", "/nonexistent/openflume-ca.pem".to_owned()));
    let (lines, _) = notifications_then_stop(listen(&flags, &env), 2);
    let warned = lines.iter().any(|line| {
        let line: serde_json::Value = serde_json::from_str(line).unwrap();
        is_log_json(&line, "flume", "tls.trust_store") && line["log"]["level"] == "warn"
    });
    assert!(warned, "no trust store warning:\n{}", lines.join("\n"));
}

#[test]
fn ca_cert_from_the_environment_variable() {
    let pki = pki();
    let sim = start_github();
    let relay = TlsRelay::start(sim.local_addr(), pki.server.clone());
    let (flags, mut env) = github_over_tls(&sim, &relay);
    env.push(("OPENFLUME_CA_CERT", pki.ca_pem.to_str().unwrap().to_owned()));
    notifications_then_stop(listen(&flags, &env), 2);
}

#[test]
fn the_os_trust_store_is_honoured() {
    let pki = pki();
    let sim = start_github();
    let relay = TlsRelay::start(sim.local_addr(), pki.server.clone());
    let (flags, mut env) = github_over_tls(&sim, &relay);
    // rustls-native-certs reads SSL_CERT_FILE as the platform store: no --ca-cert needed.
    env.push(("SSL_CERT_FILE", pki.ca_pem.to_str().unwrap().to_owned()));
    notifications_then_stop(listen(&flags, &env), 2);
}

#[test]
fn without_the_ca_the_status_names_the_certificate_error() {
    let pki = pki();
    let sim = start_github();
    let relay = TlsRelay::start(sim.local_addr(), pki.server.clone());
    let (mut flags, env) = github_over_tls(&sim, &relay);
    flags.extend(["--reconnect-max-attempts", "1"]);
    let mut cli = listen(&flags, &env);
    let status = cli.wait_for_json(WAIT, |line| {
        is_log_json(line, "github", "status")
            && line["log"]["detail"]["reason"]
                .as_str()
                .is_some_and(|r| r.contains("certificate"))
    });
    let reason = status["log"]["detail"]["reason"].as_str().unwrap();
    assert!(reason.contains("UnknownIssuer"), "{reason}");
    let (code, _, stderr) = cli.wait_exit(WAIT);
    assert_eq!(code.code(), Some(1), "stderr: {stderr}");
    assert!(stderr.contains("UnknownIssuer"), "{stderr}");
    assert!(sim.records().requests.is_empty(), "a request got through");
}

#[test]
fn a_bad_ca_file_is_a_usage_error_naming_the_file_not_its_content() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("garbage.pem", "not a certificate: HUSH-1234"),
        (
            "broken.pem",
            "-----BEGIN CERTIFICATE-----\nHUSH-1234\n-----END CERTIFICATE-----\n",
        ),
        ("unended.pem", "-----BEGIN CERTIFICATE-----\nHUSH-1234\n"),
    ];
    for (name, content) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, content).unwrap();
        let cli = listen(
            &["--cron", "@hourly", "--ca-cert", path.to_str().unwrap()],
            &[],
        );
        let (status, lines, stderr) = exit_of(cli);
        assert_eq!(status, Some(2), "{name}: {stderr}");
        assert!(stderr.contains(path.to_str().unwrap()), "{name}: {stderr}");
        assert!(!stderr.contains("HUSH"), "{name}: {stderr}");
        assert!(lines.is_empty(), "{name}: {lines:?}");
    }
    let missing = dir.path().join("missing.pem");
    let (status, _, stderr) = exit_of(listen(
        &["--cron", "@hourly", "--ca-cert", missing.to_str().unwrap()],
        &[],
    ));
    assert_eq!(status, Some(2), "{stderr}");
    assert!(
        stderr.contains("missing.pem") && stderr.contains("cannot read"),
        "{stderr}"
    );
}

fn exit_of(mut cli: Openflume) -> (Option<i32>, Vec<String>, String) {
    let (status, lines, stderr) = cli.wait_exit(WAIT);
    (status.code(), lines, stderr)
}

const PROXY_USER: &str = "corp-user";
const PROXY_PASSWORD: &str = "pa:ss-HUSH";

/// `http://corp-user:pa%3Ass-HUSH@127.0.0.1:PORT`.
fn proxy_url(proxy: &ConnectProxy) -> String {
    format!(
        "http://{PROXY_USER}:{}@127.0.0.1:{}",
        PROXY_PASSWORD.replace(':', "%3A"),
        proxy.port
    )
}

fn discord() -> openflume_sim::DiscordSim {
    openflume_tests::discord_sim(DiscordSimConfig::default())
}

/// Waits for a MESSAGE_CREATE after injecting one, then stops the binary.
fn discord_message_then_stop(
    sim: &openflume_sim::DiscordSim,
    mut cli: Openflume,
) -> (Vec<String>, String) {
    cli.wait_for_json(WAIT, |line| is_event_json(line, "discord", "READY"));
    assert_eq!(sim.inject(DiscordAction::Messages(1)), 1);
    cli.wait_for_json(WAIT, |line| {
        is_event_json(line, "discord", "MESSAGE_CREATE")
    });
    cli.terminate();
    let (status, lines, stderr) = cli.wait_exit(WAIT);
    assert_eq!(status.code(), Some(0), "stderr: {stderr}");
    (lines, stderr)
}

#[test]
fn http_and_ws_go_through_http_proxy_with_basic_auth() {
    let sim = discord();
    let proxy = ConnectProxy::start(None);
    let mut env = discord_env(&sim);
    env.push(("HTTP_PROXY", proxy_url(&proxy)));
    let (lines, stderr) = discord_message_then_stop(&sim, listen(&[], &env));
    let tunnels = proxy.tunnels();
    let sim_authority = sim
        .api_url()
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    // GET /gateway/bot (HTTP), then the Gateway (WebSocket): both to the simulator's port.
    assert!(tunnels.len() >= 2, "{tunnels:?}");
    let basic = format!(
        "Basic {}",
        base64_encode(format!("{PROXY_USER}:{PROXY_PASSWORD}").as_bytes())
    );
    for tunnel in &tunnels {
        assert_eq!(tunnel.target, sim_authority, "{tunnels:?}");
        assert_eq!(tunnel.authorization.as_deref(), Some(basic.as_str()));
    }
    let secrets = [PROXY_PASSWORD.to_owned(), "pa%3Ass-HUSH".to_owned(), basic];
    assert_text_has_no_secret(&stderr, &secrets);
    for line in &lines {
        assert_text_has_no_secret(line, &secrets);
    }
}

#[test]
fn https_goes_through_https_proxy_with_tls_inside_the_tunnel() {
    let pki = pki();
    let sim = start_github();
    let relay = TlsRelay::start(sim.local_addr(), pki.server.clone());
    let proxy = ConnectProxy::start(None);
    let (mut flags, mut env) = github_over_tls(&sim, &relay);
    let ca = pki.ca_pem.to_str().unwrap().to_owned();
    flags.extend(["--ca-cert", ca.as_str()]);
    env.push(("HTTPS_PROXY", proxy_url(&proxy)));
    // Plain connections would go through HTTP_PROXY: an unreachable one proves none is made.
    env.push(("HTTP_PROXY", "http://127.0.0.1:9".to_owned()));
    notifications_then_stop(listen(&flags, &env), 2);
    let tunnels = proxy.tunnels();
    assert!(!tunnels.is_empty());
    for tunnel in &tunnels {
        // The TLS name is in the CONNECT target, and TLS ran end to end inside the tunnel.
        assert_eq!(tunnel.target, format!("localhost:{}", relay.port));
    }
}

#[test]
fn no_proxy_listing_the_host_goes_direct() {
    let sim = discord();
    let proxy = ConnectProxy::start(None);
    for no_proxy in [
        ("NO_PROXY", "example.com, 127.0.0.1".to_owned()),
        ("no_proxy", "*".to_owned()),
    ] {
        let mut env = discord_env(&sim);
        env.push(("HTTP_PROXY", proxy_url(&proxy)));
        env.push(no_proxy);
        discord_message_then_stop(&sim, listen(&[], &env));
    }
    assert!(proxy.tunnels().is_empty(), "{:?}", proxy.tunnels());
}

#[test]
fn a_407_from_the_proxy_is_a_named_error_without_the_credentials() {
    let sim = discord();
    let proxy = ConnectProxy::start(Some(
        "HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"corp\"\r\nContent-Length: 0\r\n\r\n",
    ));
    let mut env = discord_env(&sim);
    env.push(("HTTP_PROXY", proxy_url(&proxy)));
    let cli = listen(&["--reconnect-max-attempts", "1"], &env);
    let (status, lines, stderr) = exit_of(cli);
    assert_eq!(status, Some(1), "{stderr}");
    let named = format!("proxy 127.0.0.1:{} (from HTTP_PROXY)", proxy.port);
    assert!(
        stderr.contains(&named) && stderr.contains("407"),
        "{stderr}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains(&named) && l.contains("407")),
        "no log names the proxy:\n{}",
        lines.join("\n")
    );
    assert!(!proxy.tunnels().is_empty());
    let secrets = [
        PROXY_USER.to_owned(),
        PROXY_PASSWORD.to_owned(),
        "pa%3Ass-HUSH".to_owned(),
        base64_encode(format!("{PROXY_USER}:{PROXY_PASSWORD}").as_bytes()),
    ];
    assert_text_has_no_secret(&stderr, &secrets);
    for line in &lines {
        assert_text_has_no_secret(line, &secrets);
    }
}

#[test]
fn an_unsupported_proxy_url_is_a_usage_error_without_its_value() {
    let env = [("HTTPS_PROXY", "socks5://user:HUSH@proxy:1080".to_owned())];
    let (status, _, stderr) = exit_of(listen(&["--cron", "@hourly"], &env));
    assert_eq!(status, Some(2), "{stderr}");
    assert!(
        stderr.contains("HTTPS_PROXY") && stderr.contains("socks5"),
        "{stderr}"
    );
    assert!(!stderr.contains("HUSH"), "{stderr}");
}

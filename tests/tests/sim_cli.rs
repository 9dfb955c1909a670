//! `openflume sim` driven from the shell (issue 19): it names its URLs, says when a client
//! connects, and takes faults on stdin, so a user rehearses a bot's recovery without Rust.

// A broken precondition (no URL, no line) is a test failure: panics are the point.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use openflume_tests::{Reader, is_event_json, listen, openflume_bin};
use rustix::process::{Pid, Signal, kill_process};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(20);

/// Lines of a child's pipe, read on a thread.
fn lines(pipe: impl std::io::Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Reads lines until one satisfies `pred`; panics at the deadline, listing what came.
fn wait_line(rx: &Receiver<String>, what: &str, pred: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + WAIT;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if pred(&line) => return line,
            Ok(line) => seen.push(line),
            Err(_) => panic!("no line {what}; got {seen:#?}"),
        }
    }
}

#[test]
fn the_simulators_take_faults_on_stdin_and_say_who_connected() {
    let mut sim = Command::new(openflume_bin())
        .args(["sim", "--rate", "0.001"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start openflume sim");
    let stdout = lines(sim.stdout.take().unwrap());
    let stderr = lines(sim.stderr.take().unwrap());
    let mut control = sim.stdin.take().unwrap();

    // Named URLs, then the environment for `listen`.
    for name in ["Discord API", "Discord gateway", "Slack API", "GitHub API"] {
        let line = wait_line(&stdout, name, |l| l.starts_with("# "));
        assert!(line.starts_with(&format!("# {name}:")), "{line}");
    }
    let mut env = Vec::new();
    while env.len() < 7 {
        let line = wait_line(&stdout, "export", |l| l.starts_with("export "));
        let (name, value) = line["export ".len()..].split_once('=').unwrap();
        env.push((name.to_owned(), value.to_owned()));
    }
    let env: Vec<(&str, String)> = env.iter().map(|(n, v)| (n.as_str(), v.clone())).collect();

    let mut cli = listen(&[], &env, Reader::Eager);
    wait_line(&stderr, "about a Discord client", |l| {
        l.contains("discord: a client connected to the gateway")
    });
    cli.wait_for_json(WAIT, |line| is_event_json(line, "discord", "READY"));

    writeln!(control, "discord messages 3").unwrap();
    writeln!(control, "gitlab 502").unwrap();
    wait_line(&stderr, "confirming the command", |l| {
        l.contains("done: discord messages 3")
    });
    wait_line(&stderr, "refusing the unknown one", |l| {
        l.contains("unknown command \"gitlab 502\"")
    });
    let mut messages = 0;
    cli.wait_for_json(WAIT, |line| {
        messages += u32::from(is_event_json(line, "discord", "MESSAGE_CREATE"));
        messages == 3
    });
    // A fault: op 7, and `listen` resumes.
    writeln!(control, "discord reconnect").unwrap();
    cli.wait_for_json(WAIT, |line| {
        line["log"]["action"] == "ws.reconnect.requested"
    });
    cli.wait_for_json(WAIT, |line| is_event_json(line, "discord", "RESUMED"));

    cli.terminate();
    cli.wait_exit(WAIT);
    kill_process(Pid::from_child(&sim), Signal::INT).unwrap();
    let deadline = Instant::now() + WAIT;
    let status = loop {
        if let Some(status) = sim.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "openflume sim did not stop on SIGINT"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0));
}

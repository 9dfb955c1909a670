//! WebSocket closes by RFC 6455 (issue 21), against a raw-socket server that sends exactly the
//! bytes a test asks for: the client answers a close with a close, meets a peer's protocol fault
//! with the close code the RFC names for it, and its log names the fault.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use openflume::{Flume, Overflow, Source};
use openflume_proto::discord::DiscordConfig;
use openflume_proto::{Item, ReconnectPolicy};
use openflume_tests::block_on;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);

/// Accepts one WebSocket client on `listener` and completes its handshake by hand.
fn accept(listener: &TcpListener) -> TcpStream {
    let (stream, _) = listener.accept().expect("a client");
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut key = None;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).expect("the upgrade request");
        if line == "\r\n" || line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("sec-websocket-key")
        {
            key = Some(value.trim().to_owned());
        }
    }
    let accept = tungstenite::handshake::derive_accept_key(key.expect("a key").as_bytes());
    let mut stream = stream;
    write!(
        stream,
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {accept}\r\n\r\n"
    )
    .unwrap();
    stream
}

/// One frame from the client: its opcode and unmasked payload.
fn read_frame(stream: &mut TcpStream) -> (u8, Vec<u8>) {
    let mut head = [0u8; 2];
    stream
        .read_exact(&mut head)
        .expect("a frame from the client");
    let opcode = head[0] & 0x0f;
    let len = match head[1] & 0x7f {
        126 => {
            let mut n = [0u8; 2];
            stream.read_exact(&mut n).unwrap();
            u64::from(u16::from_be_bytes(n))
        }
        127 => {
            let mut n = [0u8; 8];
            stream.read_exact(&mut n).unwrap();
            u64::from_be_bytes(n)
        }
        n => u64::from(n),
    };
    let mut mask = [0u8; 4];
    stream.read_exact(&mut mask).unwrap();
    let mut payload = vec![0u8; usize::try_from(len).unwrap()];
    stream.read_exact(&mut payload).unwrap();
    for (i, byte) in payload.iter_mut().enumerate() {
        *byte ^= mask[i % 4];
    }
    (opcode, payload)
}

/// The client's close frame, skipping anything before it: its code.
fn read_close(stream: &mut TcpStream) -> Option<u16> {
    loop {
        let (opcode, payload) = read_frame(stream);
        if opcode == 0x8 {
            return payload
                .get(..2)
                .map(|code| u16::from_be_bytes([code[0], code[1]]));
        }
    }
}

/// An unmasked server frame.
fn frame(first_byte: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![first_byte];
    match payload.len() {
        n if n < 126 => out.push(u8::try_from(n).unwrap()),
        n => {
            out.push(126);
            out.extend_from_slice(&u16::try_from(n).unwrap().to_be_bytes());
        }
    }
    out.extend_from_slice(payload);
    out
}

fn close_payload(code: u16, reason: &str) -> Vec<u8> {
    let mut payload = code.to_be_bytes().to_vec();
    payload.extend_from_slice(reason.as_bytes());
    payload
}

/// Runs a Discord source against a server that sends `bytes` once the client connected.
/// Returns the code of the close frame the client sent back, and waits until a log of the
/// source (its message or detail) names `fault`.
fn client_meets(bytes: Vec<u8>, max_message_bytes: usize, fault: &str) -> Option<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("ws://{}", listener.local_addr().unwrap());
    let config = DiscordConfig {
        gateway_url: Some(url),
        compress: false,
        reconnect: ReconnectPolicy {
            max_attempts: None,
            base_ms: 60_000,
            max_ms: 60_000,
        },
        ..DiscordConfig::new("MTIzNDU2.ws-edges.token-Qw1")
    };
    let flume = Flume::builder()
        .source(Source::discord(config))
        .max_message_bytes(max_message_bytes)
        .shutdown_grace(Duration::from_secs(1))
        .build();
    let mut items = flume.stream(1024, Overflow::Backpressure);
    let running = flume.start().expect("starts");
    let mut stream = accept(&listener);
    stream.write_all(&bytes).unwrap();
    let code = read_close(&mut stream);
    drop(stream);
    let mut seen = Vec::new();
    let named = block_on(WAIT, "a log naming the fault", async {
        while let Some(item) = items.next().await {
            if let Item::Log(log) = item {
                let text = format!("{}: {} {:?}", log.action, log.message, log.detail);
                let found = text.contains(fault);
                seen.push(text);
                if found {
                    return true;
                }
            }
        }
        false
    });
    block_on(WAIT, "close", running.close());
    assert!(named, "no log names {fault:?}:\n{}", seen.join("\n"));
    code
}

#[test]
fn a_server_close_is_answered_with_its_code() {
    let reason = close_payload(4000, "unknown error ✓ with reason");
    let code = client_meets(frame(0x88, &reason), 1 << 20, "with reason");
    assert_eq!(code, Some(4000), "the close is echoed with its code");
}

#[test]
fn an_empty_close_frame_reads_as_1005_and_is_answered() {
    let code = client_meets(frame(0x88, &[]), 1 << 20, "1005");
    assert_eq!(code, None, "the echo of an empty close is an empty close");
}

#[test]
fn invalid_utf8_in_a_text_frame_closes_with_1007() {
    let bytes = frame(0x81, &[b'{', 0xff, 0xfe, b'}']);
    assert_eq!(client_meets(bytes, 1 << 20, "invalid UTF-8"), Some(1007));
}

#[test]
fn reserved_bits_close_with_1002() {
    let bytes = frame(0x81 | 0x40, b"{}");
    assert_eq!(client_meets(bytes, 1 << 20, "protocol error"), Some(1002));
}

#[test]
fn a_masked_server_frame_closes_with_1002() {
    // Mask bit set and a mask key: servers must not mask.
    let bytes = vec![0x81, 0x82, 1, 2, 3, 4, b'{' ^ 1, b'}' ^ 2];
    assert_eq!(client_meets(bytes, 1 << 20, "protocol error"), Some(1002));
}

#[test]
fn an_oversized_message_closes_with_1009() {
    let big = format!("{{\"op\":11,\"d\":\"{}\"}}", "x".repeat(4000));
    let bytes = frame(0x81, big.as_bytes());
    assert_eq!(
        client_meets(bytes, 1024, "over the 1024-byte limit"),
        Some(1009)
    );
}

//! A plain client for the simulator tests: the proto HTTP codec and async-tungstenite over smol
//! TCP, so the tests check the simulators against the same wire formats the drivers use.

use async_tungstenite::WebSocketStream;
use async_tungstenite::tungstenite::Message;
use futures_lite::{AsyncReadExt, AsyncWriteExt, StreamExt};
use openflume_proto::http::{Limits, ResponseReader, encode_request};
use openflume_proto::url::Url;
use openflume_proto::{HttpRequest, HttpResponse};
use serde_json::Value;
use smol::net::TcpStream;
use std::future::Future;
use std::time::Duration;

/// Every step of a test waits at most this long.
pub(crate) const STEP: Duration = Duration::from_secs(5);

/// Runs `fut`, failing the test after [`STEP`].
pub(crate) async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    futures_lite::future::or(async { Some(fut.await) }, async {
        async_io::Timer::after(STEP).await;
        None
    })
    .await
    .unwrap_or_else(|| panic!("timed out: {what}"))
}

/// One HTTP connection, kept alive across requests.
pub(crate) struct HttpClient {
    tcp: TcpStream,
    leftover: Vec<u8>,
}

impl HttpClient {
    pub(crate) async fn connect(url: &str) -> HttpClient {
        let url = Url::parse(url).unwrap();
        let tcp = TcpStream::connect((url.host.as_str(), url.port))
            .await
            .unwrap();
        HttpClient {
            tcp,
            leftover: Vec::new(),
        }
    }

    /// Sends `request` and reads its response; `None` when the server closed without answering.
    pub(crate) async fn try_send(&mut self, request: &HttpRequest) -> Option<HttpResponse> {
        self.tcp
            .write_all(&encode_request(request).unwrap())
            .await
            .unwrap();
        let mut reader = ResponseReader::for_request(request, Limits::default());
        let pending = std::mem::take(&mut self.leftover);
        if !pending.is_empty()
            && let Some(done) = reader.feed(&pending).unwrap()
        {
            self.leftover = done.leftover;
            return Some(done.response);
        }
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = within("HTTP response", self.tcp.read(&mut buf))
                .await
                .unwrap_or(0);
            if n == 0 {
                return reader.eof().ok().map(|done| done.response);
            }
            if let Some(done) = reader.feed(&buf[..n]).unwrap() {
                self.leftover = done.leftover;
                return Some(done.response);
            }
        }
    }

    pub(crate) async fn send(&mut self, request: &HttpRequest) -> HttpResponse {
        self.try_send(request).await.expect("a response")
    }
}

/// One request on a fresh connection.
pub(crate) async fn http(request: HttpRequest) -> HttpResponse {
    HttpClient::connect(&request.url).await.send(&request).await
}

/// The body as JSON.
pub(crate) fn json(response: &HttpResponse) -> Value {
    serde_json::from_slice(response.body.as_slice()).unwrap()
}

pub(crate) type Ws = WebSocketStream<TcpStream>;

/// Opens a WebSocket to `url`.
pub(crate) async fn ws_connect(url: &str) -> Ws {
    let parsed = Url::parse(url).unwrap();
    let tcp = TcpStream::connect((parsed.host.as_str(), parsed.port))
        .await
        .unwrap();
    within(
        "WebSocket handshake",
        async_tungstenite::client_async(url, tcp),
    )
    .await
    .unwrap()
    .0
}

/// The next data or close message, skipping pings and pongs; `None` when the stream ended.
pub(crate) async fn next_message(ws: &mut Ws) -> Option<Message> {
    within("a WebSocket message", async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                Some(Ok(message)) => return Some(message),
                Some(Err(_)) | None => return None,
            }
        }
    })
    .await
}

/// The next text message as JSON.
pub(crate) async fn next_json(ws: &mut Ws) -> Value {
    match next_message(ws).await {
        Some(Message::Text(text)) => serde_json::from_str(text.as_str()).unwrap(),
        other => panic!("expected a JSON text message, got {other:?}"),
    }
}

/// Sends `value` as a text message.
pub(crate) async fn send_json(ws: &mut Ws, value: Value) {
    ws.send(Message::text(value.to_string())).await.unwrap();
}

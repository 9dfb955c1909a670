//! HTTP/1.1 over TCP and TLS with the proto codec: keep-alive reuse per origin, connect and response
//! timeouts. Redirects and retries are the machines' business; this only moves bytes.

use crate::lock::lock;
use crate::net::{self, Stream, TlsConfig};
use crate::proxy::ProxySetting;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use openflume_proto::http::{HttpError, Limits, ReadResponse, ResponseReader, encode_request};
use openflume_proto::url::{Url, UrlError};
use openflume_proto::{HttpRequest, HttpResponse};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Timeouts, limits and TLS roots for HTTP requests.
#[derive(Clone, Debug)]
pub(crate) struct HttpSettings {
    /// TCP connect and TLS handshake, each.
    pub(crate) connect_timeout: Duration,
    /// From the first byte written to the last byte of the response.
    pub(crate) response_timeout: Duration,
    /// An idle pooled connection older than this is not reused (servers drop idle ones).
    pub(crate) idle_timeout: Duration,
    /// Idle connections kept per origin.
    pub(crate) max_idle_per_origin: usize,
    /// Header and body limits.
    pub(crate) limits: Limits,
    /// The roots `https://` trusts.
    pub(crate) tls: TlsConfig,
    /// The proxies connections go through (from the environment).
    pub(crate) proxies: ProxySetting,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            connect_timeout: Duration::from_secs(15),
            response_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(30),
            max_idle_per_origin: 4,
            limits: Limits::default(),
            tls: net::default_tls_config(),
            proxies: crate::proxy::from_env(),
        }
    }
}

/// Why a request got no response. Messages name no header values and no URLs with secrets.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HttpClientError {
    #[error("invalid URL: {0}")]
    Url(#[from] UrlError),
    #[error("cannot send request: {0}")]
    Encode(HttpError),
    #[error("{0}")]
    Connect(std::io::Error),
    #[error("network error: {0}")]
    Io(std::io::Error),
    #[error("bad response: {0}")]
    Protocol(HttpError),
    #[error("no response within {0} ms")]
    Timeout(u128),
}

type Origin = (String, u16, bool);
/// Idle connections per origin, each with the time it was put back.
type IdlePool = HashMap<Origin, Vec<(Stream, Instant)>>;

/// A cheap-to-clone client sharing one pool of idle connections.
#[derive(Clone)]
pub(crate) struct HttpClient {
    settings: HttpSettings,
    idle: Arc<Mutex<IdlePool>>,
}

impl HttpClient {
    pub(crate) fn new(settings: HttpSettings) -> HttpClient {
        HttpClient {
            settings,
            idle: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// Sends `request` and reads the whole response.
    pub(crate) async fn send(&self, request: HttpRequest) -> Result<HttpResponse, HttpClientError> {
        let url = Url::parse(&request.url)?;
        let bytes = encode_request(&request).map_err(HttpClientError::Encode)?;
        let origin: Origin = (url.host.clone(), url.port, url.tls());
        if let Some(stream) = self.take_idle(&origin) {
            match self.exchange(stream, &bytes, &request, &origin).await {
                // The server dropped the idle connection before we used it: safe to send again
                // for requests without side effects.
                Err(HttpClientError::Protocol(HttpError::ClosedBeforeResponse))
                    if matches!(request.method.as_str(), "GET" | "HEAD") => {}
                other => return other,
            }
        }
        let stream = net::connect(
            &url.host,
            url.port,
            url.tls().then_some(&self.settings.tls),
            &self.settings.proxies,
            self.settings.connect_timeout,
        )
        .await
        .map_err(HttpClientError::Connect)?;
        self.exchange(stream, &bytes, &request, &origin).await
    }

    async fn exchange(
        &self,
        mut stream: Stream,
        bytes: &[u8],
        request: &HttpRequest,
        origin: &Origin,
    ) -> Result<HttpResponse, HttpClientError> {
        let timeout = self.settings.response_timeout;
        let limits = self.settings.limits;
        let exchange = async {
            stream.write_all(bytes).await.map_err(HttpClientError::Io)?;
            stream.flush().await.map_err(HttpClientError::Io)?;
            let mut reader = ResponseReader::for_request(request, limits);
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                let n = stream.read(&mut buf).await.map_err(HttpClientError::Io)?;
                let chunk = buf.get(..n).unwrap_or_default();
                let done = if n == 0 {
                    Some(reader.eof().map_err(HttpClientError::Protocol)?)
                } else {
                    reader.feed(chunk).map_err(HttpClientError::Protocol)?
                };
                if let Some(done) = done {
                    return Ok::<ReadResponse, HttpClientError>(done);
                }
            }
        };
        let done = futures_lite::future::or(exchange, async {
            async_io::Timer::after(timeout).await;
            Err(HttpClientError::Timeout(timeout.as_millis()))
        })
        .await?;
        // Only a connection with nothing left over can start the next exchange cleanly.
        if done.persistence.is_keep_alive() && done.leftover.is_empty() {
            self.put_idle(origin.clone(), stream);
        }
        Ok(done.response)
    }

    fn take_idle(&self, origin: &Origin) -> Option<Stream> {
        let mut idle = lock(&self.idle);
        let list = idle.get_mut(origin)?;
        while let Some((stream, since)) = list.pop() {
            if since.elapsed() < self.settings.idle_timeout {
                return Some(stream);
            }
        }
        None
    }

    fn put_idle(&self, origin: Origin, stream: Stream) {
        let mut idle = lock(&self.idle);
        let list = idle.entry(origin).or_default();
        if list.len() < self.settings.max_idle_per_origin {
            list.push((stream, Instant::now()));
        }
    }
}

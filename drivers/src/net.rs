//! TCP and TLS streams behind one type, with connect timeouts and readable errors.

use futures_lite::{AsyncRead, AsyncWrite};
use futures_rustls::TlsConnector;
use futures_rustls::client::TlsStream;
use rustls::pki_types::{CertificateDer, ServerName};
use smol::net::TcpStream;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

/// A plain or TLS TCP connection.
pub(crate) enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

/// The TLS client configuration connections use: the webpki roots, optionally plus a user's own.
pub(crate) type TlsConfig = Arc<rustls::ClientConfig>;

/// Why extra TLS roots were refused.
///
/// ```
/// use openflume::{Flume, TlsError};
/// match Flume::builder().add_root_certificate(b"-----BEGIN CERTIFICATE-----".to_vec()) {
///     // PEM text is not DER: convert it first.
///     Err(error @ TlsError::InvalidRootCertificate { .. }) => {
///         assert!(error.to_string().starts_with("invalid root certificate: "));
///     }
///     _ => unreachable!("not a certificate"),
/// }
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// The bytes given to [`FlumeBuilder::add_root_certificate`](crate::FlumeBuilder::add_root_certificate)
    /// are not a DER X.509 certificate usable as a trust anchor.
    #[error("invalid root certificate: {reason}")]
    InvalidRootCertificate {
        /// What the parser said.
        reason: String,
    },
}

/// The webpki roots, built once for the process and shared by every flume without extra roots.
pub(crate) fn default_tls_config() -> TlsConfig {
    static CONFIG: OnceLock<TlsConfig> = OnceLock::new();
    CONFIG.get_or_init(|| client_config(webpki_roots())).clone()
}

/// The webpki roots plus `extra`: built once per flume that trusts its own roots.
pub(crate) fn tls_config_with(extra: rustls::RootCertStore) -> TlsConfig {
    let mut roots = webpki_roots();
    roots.roots.extend(extra.roots);
    client_config(roots)
}

fn webpki_roots() -> rustls::RootCertStore {
    rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    }
}

/// A client configuration trusting `roots`: ring, TLS 1.2 and 1.3.
fn client_config(roots: rustls::RootCertStore) -> TlsConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map(|builder| builder.with_root_certificates(roots).with_no_client_auth())
        // ring supports the default versions; fall back to an empty-roots config that
        // fails every handshake with a clear error rather than panicking.
        .unwrap_or_else(|_| {
            rustls::ClientConfig::builder()
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth()
        });
    Arc::new(config)
}

/// Parses `der` as a trust anchor and adds it to `store`.
pub(crate) fn add_root(store: &mut rustls::RootCertStore, der: Vec<u8>) -> Result<(), TlsError> {
    store
        .add(CertificateDer::from(der))
        .map_err(|e| TlsError::InvalidRootCertificate {
            reason: e.to_string(),
        })
}

/// Resolves, connects and (with a `tls` configuration) handshakes, each within `timeout`.
pub(crate) async fn connect(
    host: &str,
    port: u16,
    tls: Option<&TlsConfig>,
    timeout: Duration,
) -> io::Result<Stream> {
    let tcp = with_timeout(timeout, "connect", TcpStream::connect((host, port)))
        .await
        .map_err(|e| io::Error::new(e.kind(), format!("connect to {host}:{port}: {e}")))?;
    tcp.set_nodelay(true)?;
    let Some(tls) = tls else {
        return Ok(Stream::Plain(tcp));
    };
    let name = ServerName::try_from(host.to_owned()).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("invalid TLS server name {host:?}"),
        )
    })?;
    let connector = TlsConnector::from(tls.clone());
    let stream = with_timeout(timeout, "TLS handshake", connector.connect(name, tcp))
        .await
        .map_err(|e| io::Error::new(e.kind(), format!("TLS handshake with {host}: {e}")))?;
    Ok(Stream::Tls(Box::new(stream)))
}

/// Runs `fut`, failing with `TimedOut` naming `what` after `timeout`.
pub(crate) async fn with_timeout<T>(
    timeout: Duration,
    what: &str,
    fut: impl std::future::Future<Output = io::Result<T>>,
) -> io::Result<T> {
    futures_lite::future::or(fut, async {
        async_io::Timer::after(timeout).await;
        Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("{what} timed out after {} ms", timeout.as_millis()),
        ))
    })
    .await
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_close(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_close(cx),
        }
    }
}

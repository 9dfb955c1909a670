//! TCP and TLS streams behind one type, with connect timeouts and readable errors.

use crate::proxy::ProxySetting;
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

/// The TLS client configuration connections use: the webpki roots and the OS trust store,
/// optionally plus a user's own.
pub(crate) type TlsConfig = Arc<rustls::ClientConfig>;

/// Why extra TLS roots were refused. Messages never quote the certificate bytes.
///
/// ```
/// use openflume::{Flume, TlsError};
/// match Flume::builder().add_root_certificate(b"-----BEGIN CERTIFICATE-----".to_vec()) {
///     // PEM text is not DER: use `add_root_certificates_pem` for it.
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
    /// The text given to
    /// [`FlumeBuilder::add_root_certificates_pem`](crate::FlumeBuilder::add_root_certificates_pem)
    /// holds no certificate, or a broken PEM section.
    #[error("invalid PEM: {reason}")]
    InvalidPem {
        /// What is wrong, in words (never the text itself).
        reason: String,
    },
}

/// The trust every connection starts from: the webpki roots, then the OS store's certificates,
/// read once for the process. Errors reading the OS store are kept to be reported as warnings:
/// the bundled roots still work without it.
struct BaseRoots {
    roots: rustls::RootCertStore,
    store_errors: Vec<String>,
}

fn base_roots() -> &'static BaseRoots {
    static ROOTS: OnceLock<BaseRoots> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let mut roots = webpki_roots();
        let native = rustls_native_certs::load_native_certs();
        // A platform certificate webpki cannot use as an anchor (expired formats, odd
        // extensions) is skipped, as every other client does.
        roots.add_parsable_certificates(native.certs);
        BaseRoots {
            roots,
            store_errors: native.errors.iter().map(ToString::to_string).collect(),
        }
    })
}

/// What went wrong reading the OS trust store, one line each (empty when it read cleanly): the
/// flume reports each as a warning when it starts.
pub(crate) fn trust_store_errors() -> &'static [String] {
    &base_roots().store_errors
}

/// The base roots, built once for the process and shared by every flume without extra roots.
pub(crate) fn default_tls_config() -> TlsConfig {
    static CONFIG: OnceLock<TlsConfig> = OnceLock::new();
    CONFIG
        .get_or_init(|| client_config(base_roots().roots.clone()))
        .clone()
}

/// The base roots plus `extra`: built once per flume that trusts its own roots.
pub(crate) fn tls_config_with(extra: rustls::RootCertStore) -> TlsConfig {
    let mut roots = base_roots().roots.clone();
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

/// The DER of every certificate in `pem` (one or more `CERTIFICATE` sections; other sections,
/// such as a key, are skipped), each checked as a trust anchor. The errors say what is wrong
/// without quoting the text: pki-types' own PEM errors carry the offending line.
pub(crate) fn parse_pem_roots(pem: &[u8]) -> Result<Vec<Vec<u8>>, TlsError> {
    use rustls::pki_types::pem::{self, PemObject};
    let mut ders = Vec::new();
    for (index, section) in CertificateDer::pem_slice_iter(pem).enumerate() {
        let der = section.map_err(|e| TlsError::InvalidPem {
            reason: match e {
                pem::Error::MissingSectionEnd { .. } => "a section has no END line".to_owned(),
                pem::Error::IllegalSectionStart { .. } => "a BEGIN line is malformed".to_owned(),
                pem::Error::Base64Decode(_) => "a section is not valid base64".to_owned(),
                _ => "unreadable PEM".to_owned(),
            },
        })?;
        let mut scratch = rustls::RootCertStore::empty();
        add_root(&mut scratch, der.to_vec()).map_err(|e| match e {
            TlsError::InvalidRootCertificate { reason } => TlsError::InvalidRootCertificate {
                reason: format!("certificate {} of the file: {reason}", index + 1),
            },
            other => other,
        })?;
        ders.push(der.to_vec());
    }
    if ders.is_empty() {
        return Err(TlsError::InvalidPem {
            reason: "no CERTIFICATE section found".to_owned(),
        });
    }
    Ok(ders)
}

/// Resolves, connects and (with a `tls` configuration) handshakes, each within `timeout`. When
/// `proxies` name a proxy for this target, the TCP connection goes to the proxy, a `CONNECT`
/// opens a tunnel to `host:port` (within the same `timeout`), and TLS runs inside the tunnel.
pub(crate) async fn connect(
    host: &str,
    port: u16,
    tls: Option<&TlsConfig>,
    proxies: &ProxySetting,
    timeout: Duration,
) -> io::Result<Stream> {
    let proxies = proxies
        .as_ref()
        .as_ref()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
    let tcp = match proxies.for_target(tls.is_some(), host, port) {
        None => with_timeout(timeout, "connect", TcpStream::connect((host, port)))
            .await
            .map_err(|e| io::Error::new(e.kind(), format!("connect to {host}:{port}: {e}")))?,
        Some(proxy) => {
            let mut tcp = with_timeout(
                timeout,
                "connect",
                TcpStream::connect((proxy.host.as_str(), proxy.port)),
            )
            .await
            .map_err(|e| io::Error::new(e.kind(), format!("connect to {proxy}: {e}")))?;
            with_timeout(
                timeout,
                "CONNECT through the proxy",
                crate::proxy::open_tunnel(&mut tcp, proxy, host, port),
            )
            .await?;
            tcp
        }
    };
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

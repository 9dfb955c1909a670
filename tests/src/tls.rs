//! TLS for the tests of the drivers' `https://` and `wss://` paths: a CA made at test time, a
//! `localhost` certificate it signed, and a relay that terminates TLS on 127.0.0.1 and forwards
//! the plaintext to a simulator. A client that does not trust the CA fails its handshake and is
//! dropped.

// Panics on a broken test setup are test failures.
#![allow(clippy::unwrap_used)]

use crate::block_on;
use futures_lite::AsyncWriteExt;
use futures_rustls::TlsAcceptor;
use futures_rustls::rustls::{self, ServerConfig};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use smol::net::{TcpListener, TcpStream};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// A private CA and a server configuration for `localhost` that it signed.
pub struct Pki {
    /// The CA certificate, DER.
    pub ca_der: Vec<u8>,
    /// The server's TLS configuration (its chain includes the CA).
    pub server: Arc<ServerConfig>,
}

impl Pki {
    /// A new CA and server certificate.
    pub fn new() -> Pki {
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
        let server_key = KeyPair::generate().unwrap();
        let server_cert = CertificateParams::new(vec!["localhost".to_owned()])
            .unwrap()
            .signed_by(&server_key, &ca)
            .unwrap();
        let key = rustls::pki_types::PrivateKeyDer::try_from(server_key.serialize_der()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let server = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![server_cert.der().clone(), ca.der().clone()], key)
            .unwrap();
        Pki {
            ca_der: ca.der().to_vec(),
            server: Arc::new(server),
        }
    }

    /// The CA certificate as PEM text (rcgen's `pem` feature is off in the workspace).
    pub fn ca_pem(&self) -> String {
        let base64 = openflume_proto::webhook::base64_encode(&self.ca_der);
        let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
        for line in base64.as_bytes().chunks(64) {
            pem.push_str(std::str::from_utf8(line).unwrap());
            pem.push('\n');
        }
        pem.push_str("-----END CERTIFICATE-----\n");
        pem
    }
}

impl Default for Pki {
    fn default() -> Self {
        Pki::new()
    }
}

/// Terminates TLS on 127.0.0.1 and forwards the plaintext both ways to a target; stops when
/// dropped.
pub struct TlsRelay {
    /// The port it listens on.
    pub port: u16,
    _task: smol::Task<()>,
}

impl TlsRelay {
    /// Relays to `target` with `config`.
    pub fn start(target: SocketAddr, config: Arc<ServerConfig>) -> TlsRelay {
        let listener = block_on(
            Duration::from_secs(10),
            "bind the TLS relay",
            TcpListener::bind("127.0.0.1:0"),
        )
        .unwrap();
        let port = listener.local_addr().unwrap().port();
        let acceptor = TlsAcceptor::from(config);
        let task = smol::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                smol::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let Ok(upstream) = TcpStream::connect(target).await else {
                        return;
                    };
                    let (read, write) = smol::io::split(tls);
                    futures_lite::future::zip(pipe(read, upstream.clone()), pipe(upstream, write))
                        .await;
                })
                .detach();
            }
        });
        TlsRelay { port, _task: task }
    }

    /// `scheme://localhost:port`.
    pub fn url(&self, scheme: &str) -> String {
        format!("{scheme}://localhost:{}", self.port)
    }
}

/// Copies `from` into `to` until either side ends, then closes `to` (passing the EOF on).
pub async fn pipe(
    from: impl futures_lite::AsyncRead + Unpin,
    mut to: impl futures_lite::AsyncWrite + Unpin,
) {
    let _ = smol::io::copy(from, &mut to).await;
    let _ = to.close().await;
}

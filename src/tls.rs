//! TLS to the backend: the one rustls client configuration (Mozilla's trust anchors
//! plus `backend.ca_file`), shared by the transport and `doctor`, and the ureq
//! connector that wraps `https` connections in it.
//!
//! Why our own connector: ureq's takes root certificates whole (DER), and the full
//! Mozilla bundle costs ~127 kB in the binary; webpki only ever uses a root's subject,
//! key and name constraints, which `webpki-roots` ships as trust anchors at a third
//! of the size. The set is the same (a test compares it with the full bundle); one
//! root also carries the name constraint Mozilla imposes on it (TUBITAK: `.tr`).

use crate::config::Backend;
use crate::error::{Error, Result};
use rustls::crypto::{CryptoProvider, KeyProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, TrustAnchor};
use rustls::sign::SigningKey;
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use std::fmt;
use std::io::{Read, Write};
use std::sync::Arc;
use ureq::unversioned::transport::time::{Duration, Instant};
use ureq::unversioned::transport::{
    Buffers, ConnectionDetails, Connector, Either, LazyBuffers, NextTimeout, Transport,
    TransportAdapter,
};

/// Roots that Mozilla has removed but the latest `webpki-roots` (1.0.10) still
/// lists; `webpki-root-certs` 1.0.11, what the agent trusted before, has dropped
/// them. Subjects, DER. The test below fails when the two crates agree again.
const DISTRUSTED: [&[u8]; 2] = [
    // CN=emSign Root CA - C1, O=eMudhra Inc, OU=emSign PKI, C=US
    b"1\x0b0\t\x06\x03U\x04\x06\x13\x02US1\x130\x11\x06\x03U\x04\x0b\x13\nemSign PKI1\x140\x12\x06\x03U\x04\n\x13\x0beMudhra Inc1\x1c0\x1a\x06\x03U\x04\x03\x13\x13emSign Root CA - C1",
    // CN=emSign ECC Root CA - C3, O=eMudhra Inc, OU=emSign PKI, C=US
    b"1\x0b0\t\x06\x03U\x04\x06\x13\x02US1\x130\x11\x06\x03U\x04\x0b\x13\nemSign PKI1\x140\x12\x06\x03U\x04\n\x13\x0beMudhra Inc1 0\x1e\x06\x03U\x04\x03\x13\x17emSign ECC Root CA - C3",
];

/// The built-in trust anchors: Mozilla's, as webpki uses them.
fn builtin_anchors() -> Vec<TrustAnchor<'static>> {
    webpki_roots::TLS_SERVER_ROOTS
        .iter()
        .filter(|a| !DISTRUSTED.contains(&a.subject.as_ref()))
        .cloned()
        .collect()
}

/// The client configuration of every TLS connection to the backend: the built-in
/// trust anchors plus each certificate of `backend.ca_file`, TLS 1.2 and 1.3, ring.
pub(crate) fn client_config(cfg: &Backend) -> Result<Arc<ClientConfig>> {
    let mut roots = RootCertStore {
        roots: builtin_anchors(),
    };
    if let Some(path) = &cfg.ca_file {
        let pem = crate::fsutil::read_bounded(path, 1 << 20).map_err(|e| {
            Error::Config(format!(
                "backend.ca_file: cannot read {}: {e}",
                path.display()
            ))
        })?;
        let mut certs = Vec::new();
        for cert in CertificateDer::pem_slice_iter(&pem) {
            certs.push(cert.map_err(|e| {
                Error::Config(format!(
                    "backend.ca_file: {} is not valid PEM: {e}",
                    path.display()
                ))
            })?);
        }
        if certs.is_empty() {
            return Err(Error::Config(format!(
                "backend.ca_file: {} holds no certificate",
                path.display()
            )));
        }
        // As rustls does for root bundles: a certificate webpki cannot use as an
        // anchor is skipped (the handshake then says which issuer is unknown).
        roots.add_parsable_certificates(certs);
    }
    let provider = CryptoProvider {
        key_provider: &NoPrivateKeys,
        ..rustls::crypto::ring::default_provider()
    };
    let config = ClientConfig::builder_with_provider(Arc::new(provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Config(format!("TLS setup: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The agent never authenticates with a client certificate, so it never loads a
/// private key: ring's key provider (RSA, ECDSA and Ed25519 key parsing and
/// signing, 33 kB on armv7) is replaced by one that refuses.
#[derive(Debug)]
struct NoPrivateKeys;

impl KeyProvider for NoPrivateKeys {
    fn load_private_key(
        &self,
        _: PrivateKeyDer<'static>,
    ) -> std::result::Result<Arc<dyn SigningKey>, rustls::Error> {
        Err(rustls::Error::General("no client keys in the agent".into()))
    }
}

/// The ureq connector that wraps `https` connections in TLS with our configuration
/// (in the chain after the TCP and proxy connectors, as ureq's own rustls one).
pub(crate) struct TlsConnector(pub(crate) Arc<ClientConfig>);

impl<In: Transport> Connector<In> for TlsConnector {
    type Out = Either<In, TlsTransport>;

    fn connect(
        &self,
        details: &ConnectionDetails,
        chained: Option<In>,
    ) -> std::result::Result<Option<Self::Out>, ureq::Error> {
        let Some(transport) = chained else {
            return Ok(None);
        };
        if !details.needs_tls() || transport.is_tls() {
            return Ok(Some(Either::A(transport)));
        }
        let host = details.uri.host().unwrap_or_default();
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let name = ServerName::try_from(host)
            .map_err(|_| ureq::Error::Tls("invalid TLS server name"))?
            .to_owned();
        let conn = ClientConnection::new(self.0.clone(), name)
            .map_err(|e| ureq::Error::Io(std::io::Error::other(e)))?;
        let mut sock = TransportAdapter::new(transport.boxed(), details.current_time.clone());
        // The handshake gets what is left of the connect timeout, as with ureq's own.
        let mut timeout = details.timeout;
        if let (Duration::Exact(limit), Instant::Exact(start), Instant::Exact(now)) =
            (timeout.after, details.now, (details.current_time)())
        {
            timeout.after =
                Duration::Exact(limit.saturating_sub(now.saturating_duration_since(start)));
        }
        sock.set_timeout(timeout);
        let mut stream = StreamOwned { conn, sock };
        stream.conn.complete_io(&mut stream.sock)?;
        let buffers = LazyBuffers::new(
            details.config.input_buffer_size(),
            details.config.output_buffer_size(),
        );
        Ok(Some(Either::B(TlsTransport { buffers, stream })))
    }
}

/// A TLS connection, as ureq's transport.
pub(crate) struct TlsTransport {
    buffers: LazyBuffers,
    stream: StreamOwned<ClientConnection, TransportAdapter>,
}

impl Transport for TlsTransport {
    fn buffers(&mut self) -> &mut dyn Buffers {
        &mut self.buffers
    }

    fn transmit_output(
        &mut self,
        amount: usize,
        timeout: NextTimeout,
    ) -> std::result::Result<(), ureq::Error> {
        self.stream.get_mut().set_timeout(timeout);
        let output = &self.buffers.output()[..amount];
        self.stream.write_all(output)?;
        Ok(())
    }

    fn await_input(&mut self, timeout: NextTimeout) -> std::result::Result<bool, ureq::Error> {
        self.stream.get_mut().set_timeout(timeout);
        let input = self.buffers.input_append_buf();
        let amount = self.stream.read(input)?;
        self.buffers.input_appended(amount);
        Ok(amount > 0)
    }

    fn is_open(&mut self) -> bool {
        self.stream.get_mut().get_mut().is_open()
    }

    fn is_tls(&self) -> bool {
        true
    }
}

// ureq's traits ask for Debug; written by hand so that rustls's configuration and
// connection state do not bring their (large, unused) Debug code into the binary.
impl fmt::Debug for TlsConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TlsConnector")
    }
}

impl fmt::Debug for TlsTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TlsTransport")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The built-in anchors are those of the full Mozilla bundle the agent trusted
    /// before (`webpki-root-certs`, a dev-dependency) as webpki reads them: same
    /// subjects, same keys. The one difference allowed is a name constraint that
    /// Mozilla imposes outside the certificate (webpki-roots carries it; a full
    /// certificate cannot): today TUBITAK's root, for `.tr` names only.
    #[test]
    fn builtin_anchors_are_the_mozilla_bundle() {
        let mut from_certs = RootCertStore::empty();
        let (added, ignored) = from_certs
            .add_parsable_certificates(webpki_root_certs::TLS_SERVER_ROOT_CERTS.iter().cloned());
        assert_eq!(ignored, 0);
        let key = |a: &TrustAnchor<'_>| {
            (
                a.subject.as_ref().to_vec(),
                a.subject_public_key_info.as_ref().to_vec(),
            )
        };
        let mut want: Vec<_> = from_certs.roots.iter().map(key).collect();
        let mut have: Vec<_> = builtin_anchors().iter().map(key).collect();
        want.sort();
        have.sort();
        assert_eq!(have.len(), added);
        assert!(have == want, "webpki-roots and webpki-root-certs differ");
        assert!(from_certs
            .roots
            .iter()
            .all(|a| a.name_constraints.is_none()));
        let constrained: Vec<_> = builtin_anchors()
            .into_iter()
            .filter_map(|a| a.name_constraints.map(|c| c.as_ref().to_vec()))
            .collect();
        // [0] { SEQUENCE { [2] ".tr" } }: permitted subtrees, one DNS name.
        assert_eq!(constrained, vec![b"\xa0\x07\x30\x05\x82\x03.tr".to_vec()]);
    }

    /// Every anchor that `DISTRUSTED` names is in `webpki-roots`: none is stale.
    #[test]
    fn distrusted_subjects_are_listed_roots() {
        for s in DISTRUSTED {
            assert!(webpki_roots::TLS_SERVER_ROOTS
                .iter()
                .any(|a| a.subject.as_ref() == s));
        }
    }
}

//! The HTTPS side: a self-signed Ed25519 certificate made from the node
//! key at every start (nothing to renew, nothing to store), and a rustls
//! server configuration on ring, TLS 1.3 only. Clients do not trust the
//! certificate's names or dates; they pin the key's fingerprint.

use crate::identity::Identity;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::sync::Arc;

/// Why the TLS configuration could not be made.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// rcgen refused the key or the parameters.
    #[error("making the self-signed certificate")]
    Certificate(#[source] rcgen::Error),
    /// rustls refused the configuration.
    #[error("configuring TLS")]
    Config(#[source] rustls::Error),
}

/// The certificate for `id`, DER.
pub fn certificate(id: &Identity) -> Result<CertificateDer<'static>, TlsError> {
    let der = PrivatePkcs8KeyDer::from(id.pkcs8_der());
    let key = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(&der, &rcgen::PKCS_ED25519)
        .map_err(TlsError::Certificate)?;
    let mut params = rcgen::CertificateParams::new(vec!["quilt-board".to_owned()])
        .map_err(TlsError::Certificate)?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, id.fingerprint().to_string());
    let cert = params.self_signed(&key).map_err(TlsError::Certificate)?;
    Ok(cert.der().clone())
}

/// The server configuration.
pub fn server_config(id: &Identity) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let cert = certificate(id)?;
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(id.pkcs8_der()));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(TlsError::Config)?
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .map_err(TlsError::Config)?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_certificate_carries_the_node_key() {
        let id = Identity::from_seed([11; 32]);
        let der = certificate(&id).unwrap();
        let spki = quilt_gateway_auth::fingerprint::ed25519_spki(id.public());
        assert!(der.windows(spki.len()).any(|w| w == spki));
        server_config(&id).unwrap();
    }
}

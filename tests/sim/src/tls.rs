//! Throwaway PKI for the simulator: a CA generated at start and a server
//! certificate signed by it (or a deliberately broken one, see [`TlsVariant`]).

use crate::TlsVariant;
use rcgen::{
    date_time_ymd, BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::ServerConfig;
use std::io;
use std::sync::Arc;

pub(crate) struct TlsMaterial {
    pub ca_pem: String,
    pub server_cert_pem: String,
    pub config: Arc<ServerConfig>,
}

fn err<E: std::fmt::Display>(e: E) -> io::Error {
    io::Error::other(format!("tls setup: {e}"))
}

fn make_ca(name: &str) -> io::Result<(String, Issuer<'static, KeyPair>)> {
    let key = KeyPair::generate().map_err(err)?;
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
    params
        .distinguished_name
        .push(DnType::CommonName, name.to_string());
    params
        .distinguished_name
        .push(DnType::OrganizationName, "CyberSensei dev simulator");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = date_time_ymd(2020, 1, 1);
    params.not_after = date_time_ymd(2099, 12, 31);
    let cert = params.self_signed(&key).map_err(err)?;
    Ok((cert.pem(), Issuer::new(params, key)))
}

pub(crate) fn build(variant: TlsVariant, extra_sans: &[String]) -> io::Result<TlsMaterial> {
    let (ca_pem, issuer) = make_ca("CyberSensei Simulator CA")?;
    let rogue;
    let signer = if variant == TlsVariant::UntrustedCa {
        rogue = make_ca("CyberSensei Simulator Rogue CA")?.1;
        &rogue
    } else {
        &issuer
    };
    let sans: Vec<String> = if variant == TlsVariant::WrongHost {
        vec!["wrong.example".to_string()]
    } else {
        let mut v = vec!["localhost".to_string(), "127.0.0.1".to_string()];
        v.extend(extra_sans.iter().cloned());
        v
    };
    let key = KeyPair::generate().map_err(err)?;
    let mut params = CertificateParams::new(sans).map_err(err)?;
    let cn = if variant == TlsVariant::WrongHost {
        "wrong.example"
    } else {
        "localhost"
    };
    params.distinguished_name.push(DnType::CommonName, cn);
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    if variant == TlsVariant::Expired {
        params.not_before = date_time_ymd(2020, 1, 1);
        params.not_after = date_time_ymd(2021, 1, 1);
    } else {
        params.not_before = date_time_ymd(2020, 1, 1);
        params.not_after = date_time_ymd(2099, 12, 31);
    }
    let cert = params.signed_by(&key, signer).map_err(err)?;
    let server_cert_pem = cert.pem();
    let chain: Vec<CertificateDer<'static>> = vec![cert.der().clone()];
    let pkey = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(err)?
        .with_no_client_auth()
        .with_single_cert(chain, pkey)
        .map_err(err)?;
    Ok(TlsMaterial {
        ca_pem,
        server_cert_pem,
        config: Arc::new(config),
    })
}

//! Ed25519 keys: the private key as PKCS#8 PEM (what `openssl genpkey -algorithm
//! ed25519` writes too), the public key as base64 of its 32 bytes (what the agent's
//! `updates.public_key` and `update-keys/*.pub` take).

use crate::Fail;
use base64::Engine;
use ring::signature::{Ed25519KeyPair, KeyPair};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// Short fingerprint of a public key: first 16 hex digits of its SHA-256.
pub fn key_id(public: &[u8]) -> String {
    cybersensei_agent::hex::encode(ring::digest::digest(&ring::digest::SHA256, public).as_ref())
        [..16]
        .to_string()
}

fn with_ext(base: &Path, ext: &str) -> PathBuf {
    let mut s = base.as_os_str().to_os_string();
    s.push(ext);
    PathBuf::from(s)
}

/// Writes `NAME.key` (0600, never over an existing file) and `NAME.pub`.
pub fn keygen(base: &Path) -> Result<(), Fail> {
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng)
        .map_err(|_| Fail::new("cannot generate a key (no randomness?)"))?;
    let kp = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref())
        .map_err(|_| Fail::new("generated key does not parse"))?;
    let private = with_ext(base, ".key");
    let public = with_ext(base, ".pub");
    let pem = format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        B64.encode(pkcs8.as_ref())
    );
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&private)
        .map_err(|e| Fail::new(format!("{}: {e}", private.display())))?;
    f.write_all(pem.as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(|e| Fail::new(format!("{}: {e}", private.display())))?;
    let pk = kp.public_key().as_ref();
    std::fs::write(&public, format!("{}\n", B64.encode(pk)))
        .map_err(|e| Fail::new(format!("{}: {e}", public.display())))?;
    println!("private key: {} (keep it offline)", private.display());
    println!("public key:  {} (id {})", public.display(), key_id(pk));
    Ok(())
}

/// Reads a PKCS#8 private key (PEM or DER).
pub fn load_private(path: &Path) -> Result<Ed25519KeyPair, Fail> {
    let data = std::fs::read(path).map_err(|e| Fail::new(format!("{}: {e}", path.display())))?;
    let der = match std::str::from_utf8(&data) {
        Ok(text) if text.contains("-----BEGIN") => {
            cybersensei_agent::update::verify::pem_or_base64(text)
                .ok_or_else(|| Fail::new(format!("{}: bad PEM", path.display())))?
        }
        _ => data,
    };
    // Accepts PKCS#8 v1 (openssl) and v2 (ring, with the public key).
    Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der).map_err(|_| {
        Fail::new(format!(
            "{}: not an Ed25519 private key (PKCS#8)",
            path.display()
        ))
    })
}

/// Reads a public key the way the agent does (base64, PEM, raw 32 bytes).
pub fn load_public(path: &str) -> Result<[u8; 32], Fail> {
    cybersensei_agent::update::verify::parse_public_key(path)
        .map_err(|e| Fail::new(format!("{path}: {e}")))
}

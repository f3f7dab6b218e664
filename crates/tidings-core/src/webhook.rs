//! Standard Webhooks signatures (v1: HMAC-SHA256 over `id.timestamp.body`), pure.
//!
//! A secret is written `whsec_` + base64 of its bytes. A `webhook-signature` header is a
//! space-separated list of `v1,<base64 signature>`; while a secret rotates it carries one
//! signature per secret. Verification compares in constant time and never accepts an empty or
//! truncated signature (the reference Rust verifier once accepted `v1,` for any payload).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{KeyInit, Mac};

type HmacSha256 = hmac::Hmac<sha2_011::Sha256>;

/// Prefix of a written secret.
pub const SECRET_PREFIX: &str = "whsec_";

/// Why a secret could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a webhook secret is whsec_ followed by base64 of 24 to 64 bytes")]
pub struct SecretError;

/// A signing secret's bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(…)")
    }
}

impl Secret {
    /// A secret from raw bytes (24 to 64 of them).
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Secret, SecretError> {
        if (24..=64).contains(&bytes.len()) {
            Ok(Secret(bytes))
        } else {
            Err(SecretError)
        }
    }

    /// Reads `whsec_<base64>`.
    pub fn parse(text: &str) -> Result<Secret, SecretError> {
        let encoded = text.strip_prefix(SECRET_PREFIX).ok_or(SecretError)?;
        let bytes = STANDARD.decode(encoded).map_err(|_| SecretError)?;
        Secret::from_bytes(bytes)
    }

    /// Writes it as `whsec_<base64>`.
    pub fn to_text(&self) -> String {
        format!("{SECRET_PREFIX}{}", STANDARD.encode(&self.0))
    }

    fn mac(&self, id: &str, timestamp: i64, body: &[u8]) -> HmacSha256 {
        // HMAC takes keys of any length; `new_from_slice` cannot fail for it.
        let mut mac = match HmacSha256::new_from_slice(&self.0) {
            Ok(mac) => mac,
            Err(_) => unreachable_mac(),
        };
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        mac
    }

    /// The `v1,<base64>` signature of one message.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let tag = self.mac(id, timestamp, body).finalize().into_bytes();
        format!("v1,{}", STANDARD.encode(tag))
    }

    /// Whether any `v1` signature in `header` is this secret's signature of the message.
    pub fn verify(&self, id: &str, timestamp: i64, body: &[u8], header: &str) -> bool {
        header.split_whitespace().any(|entry| {
            let Some(("v1", encoded)) = entry.split_once(',') else {
                return false;
            };
            let Ok(given) = STANDARD.decode(encoded) else {
                return false;
            };
            // `verify_slice` checks the length and compares in constant time.
            self.mac(id, timestamp, body).verify_slice(&given).is_ok()
        })
    }
}

/// HMAC accepts every key length, so this is never reached; kept out of line as a plain
/// fallback rather than a panic on input.
#[cold]
fn unreachable_mac() -> HmacSha256 {
    <HmacSha256 as KeyInit>::new(&Default::default())
}

/// The `webhook-signature` header for a message signed with each secret (the current one
/// first, then those still valid while it rotates).
pub fn signature_header(secrets: &[&Secret], id: &str, timestamp: i64, body: &[u8]) -> String {
    secrets
        .iter()
        .map(|s| s.sign(id, timestamp, body))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    // The test vector of the Standard Webhooks reference libraries.
    const SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
    const ID: &str = "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk";
    const TS: i64 = 1649367553;
    const BODY: &[u8] = br#"{"email":"test@example.com","username":"test_user"}"#;
    const SIGNATURE: &str = "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=";

    #[test]
    fn signs_the_reference_vector() {
        let secret = Secret::parse(SECRET).expect("secret");
        assert_eq!(secret.sign(ID, TS, BODY), SIGNATURE);
        assert!(secret.verify(ID, TS, BODY, SIGNATURE));
        assert_eq!(Secret::parse(&secret.to_text()), Ok(secret));
    }

    #[test]
    fn empty_truncated_or_foreign_signatures_never_verify() {
        let secret = Secret::parse(SECRET).expect("secret");
        let truncated = &SIGNATURE[..SIGNATURE.len() - 8];
        for header in [
            "",
            "v1,",
            "v1, ",
            "v1",
            truncated,
            "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw",
            "v1,AAAA",
            "v2,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=",
            "v1,!!!notbase64",
        ] {
            assert!(!secret.verify(ID, TS, BODY, header), "{header:?}");
        }
        assert!(!secret.verify(ID, TS + 1, BODY, SIGNATURE));
        assert!(!secret.verify("msg_other", TS, BODY, SIGNATURE));
        assert!(!secret.verify(ID, TS, b"{}", SIGNATURE));
    }

    #[test]
    fn a_rotating_header_verifies_with_either_secret() {
        let old = Secret::parse(SECRET).expect("secret");
        let new = Secret::from_bytes(vec![7; 32]).expect("secret");
        let header = signature_header(&[&new, &old], ID, TS, BODY);
        assert!(old.verify(ID, TS, BODY, &header));
        assert!(new.verify(ID, TS, BODY, &header));
        let stranger = Secret::from_bytes(vec![9; 32]).expect("secret");
        assert!(!stranger.verify(ID, TS, BODY, &header));
        assert!(Secret::parse("whsec_AAAA").is_err());
        assert!(Secret::parse("C2FVsBQIhrscChlQIMV+b5sSYspob7oD").is_err());
    }
}

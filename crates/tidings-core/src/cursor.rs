//! Opaque pagination cursors over inbox and stream sequence numbers.
//!
//! A cursor is base64url (no padding) of 11 bytes: version byte `1`, the seq
//! as 8 bytes big-endian, and the first two bytes of SHA-256 over those nine
//! bytes. The checksum is not a secret (cursors are not authorisation); it
//! only makes typos and casual tampering fail loudly instead of silently
//! paging from the wrong place. Every cursor is exactly 15 characters.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

/// Current cursor layout version.
const VERSION: u8 = 1;
/// Version byte + 8 seq bytes.
const PAYLOAD_LEN: usize = 9;
/// Payload + 2 checksum bytes.
const RAW_LEN: usize = PAYLOAD_LEN + 2;
/// base64url length of `RAW_LEN` bytes without padding.
const ENCODED_LEN: usize = 15;

/// Why a cursor string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CursorError {
    /// Not base64url of the right length.
    #[error("cursor is malformed")]
    Malformed,
    /// Well-formed but produced by an unknown cursor format.
    #[error("cursor has unknown version {0}")]
    UnknownVersion(u8),
    /// Checksum does not match: the cursor was altered or mistyped.
    #[error("cursor checksum does not match (altered or mistyped cursor)")]
    Checksum,
    /// Decodes to a negative position.
    #[error("cursor position is out of range")]
    OutOfRange,
}

/// Encodes a sequence number as an opaque 15-character URL-safe cursor.
pub fn encode(seq: i64) -> String {
    let mut raw = [0u8; RAW_LEN];
    raw[0] = VERSION;
    raw[1..PAYLOAD_LEN].copy_from_slice(&seq.to_be_bytes());
    let sum = checksum(&raw[..PAYLOAD_LEN]);
    raw[PAYLOAD_LEN..].copy_from_slice(&sum);
    URL_SAFE_NO_PAD.encode(raw)
}

/// Decodes a cursor produced by [`encode`], rejecting garbage and tampering.
pub fn decode(cursor: &str) -> Result<i64, CursorError> {
    // Length check first so arbitrarily long input costs nothing.
    if cursor.len() != ENCODED_LEN {
        return Err(CursorError::Malformed);
    }
    let mut raw = [0u8; RAW_LEN];
    // The engine rejects non-zero trailing bits, so each value has exactly
    // one accepted spelling.
    let n = URL_SAFE_NO_PAD
        .decode_slice(cursor.as_bytes(), &mut raw)
        .map_err(|_| CursorError::Malformed)?;
    if n != RAW_LEN {
        return Err(CursorError::Malformed);
    }
    if raw[0] != VERSION {
        return Err(CursorError::UnknownVersion(raw[0]));
    }
    if checksum(&raw[..PAYLOAD_LEN]) != raw[PAYLOAD_LEN..] {
        return Err(CursorError::Checksum);
    }
    let mut seq_bytes = [0u8; 8];
    seq_bytes.copy_from_slice(&raw[1..PAYLOAD_LEN]);
    let seq = i64::from_be_bytes(seq_bytes);
    if seq < 0 {
        return Err(CursorError::OutOfRange);
    }
    Ok(seq)
}

fn checksum(payload: &[u8]) -> [u8; 2] {
    let h = Sha256::digest(payload);
    [h[0], h[1]]
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

    #[test]
    fn known_values() {
        for seq in [0, 1, 2, 255, 1 << 40, i64::MAX] {
            let c = encode(seq);
            assert_eq!(c.len(), ENCODED_LEN);
            assert!(c.bytes().all(|b| ALPHABET.contains(&b)));
            assert_eq!(decode(&c), Ok(seq));
        }
        assert_ne!(encode(1), encode(2));
    }

    #[test]
    fn rejects_garbage() {
        assert_eq!(decode(""), Err(CursorError::Malformed));
        assert_eq!(decode("abc"), Err(CursorError::Malformed));
        assert_eq!(decode("!!!!!!!!!!!!!!!"), Err(CursorError::Malformed));
        assert_eq!(decode(&"A".repeat(16)), Err(CursorError::Malformed));
        let padded = format!("{}=", encode(5));
        assert_eq!(decode(&padded), Err(CursorError::Malformed));
        assert_eq!(decode("ééééééé."), Err(CursorError::Malformed));
        assert_eq!(CursorError::Malformed.to_string(), "cursor is malformed");
    }

    #[test]
    fn rejects_negative_and_unknown_version() {
        assert_eq!(decode(&encode(-1)), Err(CursorError::OutOfRange));
        assert_eq!(decode(&encode(i64::MIN)), Err(CursorError::OutOfRange));

        let mut raw = [0u8; RAW_LEN];
        raw[0] = 2;
        raw[8] = 7;
        let sum = checksum(&raw[..PAYLOAD_LEN]);
        raw[PAYLOAD_LEN..].copy_from_slice(&sum);
        assert_eq!(
            decode(&URL_SAFE_NO_PAD.encode(raw)),
            Err(CursorError::UnknownVersion(2))
        );
    }

    #[test]
    fn rejects_bad_checksum() {
        let mut raw = [0u8; RAW_LEN];
        raw[0] = VERSION;
        raw[8] = 7;
        let sum = checksum(&raw[..PAYLOAD_LEN]);
        raw[PAYLOAD_LEN..].copy_from_slice(&sum);
        raw[8] = 8;
        assert_eq!(
            decode(&URL_SAFE_NO_PAD.encode(raw)),
            Err(CursorError::Checksum)
        );
    }

    #[test]
    fn single_character_flips_are_rejected() {
        let mut flips = 0usize;
        let mut accepted = 0usize;
        for seq in [1i64, 42, 1_000_000, i64::MAX] {
            let c = encode(seq);
            for i in 0..c.len() {
                for &b in ALPHABET {
                    let mut bytes = c.clone().into_bytes();
                    if bytes[i] == b {
                        continue;
                    }
                    bytes[i] = b;
                    let flipped = String::from_utf8(bytes).unwrap();
                    flips += 1;
                    if let Ok(v) = decode(&flipped) {
                        assert_ne!(v, seq);
                        accepted += 1;
                    }
                }
            }
        }
        // A 16-bit checksum lets roughly 1 in 65536 through.
        assert!(
            accepted * 100 < flips,
            "{accepted} of {flips} flips accepted"
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1024))]

        #[test]
        fn round_trip(seq in 0..=i64::MAX) {
            let c = encode(seq);
            prop_assert!(c.len() <= 16);
            prop_assert_eq!(decode(&c), Ok(seq));
        }

        #[test]
        fn decode_never_panics(s in any::<String>()) {
            let _ = decode(&s);
        }

        #[test]
        fn decode_never_panics_on_alphabet(s in "[A-Za-z0-9_=+/-]{13,17}") {
            let _ = decode(&s);
        }

        #[test]
        fn flips_are_mostly_rejected(
            seq in 0..=i64::MAX,
            idx in 0usize..ENCODED_LEN,
            sym in 0usize..64,
            junk in any::<char>(),
        ) {
            let c = encode(seq);
            let original = c.as_bytes()[idx];
            prop_assume!(ALPHABET[sym] != original);
            let mut bytes = c.clone().into_bytes();
            bytes[idx] = ALPHABET[sym];
            let flipped = String::from_utf8(bytes).unwrap();
            if let Ok(v) = decode(&flipped) {
                prop_assert_ne!(v, seq);
            }
            // Replacing a character with anything at all must never panic.
            let mut chars: Vec<char> = c.chars().collect();
            chars[idx] = junk;
            let junked: String = chars.into_iter().collect();
            if junk as u32 != original as u32 {
                prop_assert_ne!(decode(&junked), Ok(seq));
            }
        }
    }
}

//! Canonical JSON, content digests and stream hash chains.
//!
//! The canonical form is RFC 8785-like: object keys sorted by Unicode code
//! point, no insignificant whitespace, minimal string escaping, non-ASCII
//! emitted as raw UTF-8. Integers are plain decimal; floats use serde_json's
//! own shortest round-trip formatting (e.g. `1.0`, `1e20`, `-0.5`), which is
//! *our* canonical float form and deliberately differs from ECMAScript's.
//!
//! Caveat: without serde_json's `float_roundtrip` feature, `serde_json`'s
//! parser misreads some floats by an ULP or more (e.g. many results of
//! `0.1 * n`), so a float-bearing activity re-parsed from text may no longer
//! match its digest. Enable that feature wherever activities are parsed.
//! Two JSON texts that parse to equal [`serde_json::Value`]s therefore always
//! have the same canonical form and the same digest.

use serde_json::{Map, Number, Value};
use sha2::{Digest, Sha256};
use std::fmt::Write as _;

/// Key under which a stored activity carries its own digest.
const DIGEST_KEY: &str = "digest";

/// Stored digest does not match the digest recomputed from the content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("activity digest mismatch: expected {expected}, found {}", found.as_deref().unwrap_or("no digest"))]
pub struct DigestMismatch {
    /// Digest recomputed from the activity's canonical form.
    pub expected: String,
    /// The stored `"digest"` string; `None` when it is missing or not a string.
    pub found: Option<String>,
}

/// Serialises `value` deterministically (sorted keys, no whitespace, minimal escapes).
pub fn canonical_json(value: &Value) -> String {
    let mut out = String::new();
    write_value(&mut out, value);
    out
}

/// Returns `"sha256:"` followed by the lowercase hex SHA-256 of `bytes`.
pub fn digest_hex(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// Digest of an activity's canonical form, ignoring any top-level `"digest"` key.
pub fn activity_digest(activity: &Value) -> String {
    let mut out = String::new();
    match activity {
        // The stored digest cannot be part of what it digests, so skip it
        // without cloning the whole activity.
        Value::Object(map) => write_object(&mut out, map, Some(DIGEST_KEY)),
        other => write_value(&mut out, other),
    }
    digest_hex(out.as_bytes())
}

/// Link hash of a stream position: SHA-256 over `prev` (or `""`), `"\n"`, and `digest`.
pub fn chain_hash(prev: Option<&str>, digest: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(prev.unwrap_or("").as_bytes());
    hasher.update(b"\n");
    hasher.update(digest.as_bytes());
    format!("sha256:{}", hex::encode(hasher.finalize()))
}

/// Recomputes a stored activity's digest and compares it with its `"digest"` field.
pub fn verify_activity(stored: &Value) -> Result<(), DigestMismatch> {
    let expected = activity_digest(stored);
    let found = stored
        .get(DIGEST_KEY)
        .and_then(Value::as_str)
        .map(str::to_owned);
    if found.as_deref() == Some(expected.as_str()) {
        Ok(())
    } else {
        Err(DigestMismatch { expected, found })
    }
}

fn write_value(out: &mut String, value: &Value) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(n) => write_number(out, n),
        Value::String(s) => write_string(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(out, item);
            }
            out.push(']');
        }
        Value::Object(map) => write_object(out, map, None),
    }
}

fn write_object(out: &mut String, map: &Map<String, Value>, skip: Option<&str>) {
    // Sort explicitly: the Map's own iteration order depends on serde_json
    // features (`preserve_order`) that another crate may switch on. `str`
    // ordering is UTF-8 byte order, which equals code point order.
    let mut entries: Vec<(&String, &Value)> = map
        .iter()
        .filter(|(k, _)| Some(k.as_str()) != skip)
        .collect();
    entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
    out.push('{');
    for (i, (key, val)) in entries.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_string(out, key);
        out.push(':');
        write_value(out, val);
    }
    out.push('}');
}

fn write_number(out: &mut String, n: &Number) {
    // Go through the typed accessors rather than `Display` so the output stays
    // canonical even if `arbitrary_precision` is enabled somewhere in the build
    // (it would otherwise echo the input text, e.g. `1.50`).
    if let Some(i) = n.as_i64() {
        let _ = write!(out, "{i}");
    } else if let Some(u) = n.as_u64() {
        let _ = write!(out, "{u}");
    } else if let Some(f) = n.as_f64().and_then(Number::from_f64) {
        let _ = write!(out, "{f}");
    } else {
        let _ = write!(out, "{n}");
    }
}

fn write_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn keys_are_sorted_by_code_point() {
        let v = json!({"b": 1, "a": 2, "B": 3, "é": 4, "aa": 5, "": 6});
        assert_eq!(
            canonical_json(&v),
            r#"{"":6,"B":3,"a":2,"aa":5,"b":1,"é":4}"#
        );
    }

    #[test]
    fn code_point_order_beyond_bmp() {
        // U+FF61 sorts before U+1F600 by code point (UTF-16 order would differ).
        let v = json!({"\u{1F600}": 1, "\u{FF61}": 2});
        assert_eq!(canonical_json(&v), "{\"\u{FF61}\":2,\"\u{1F600}\":1}");
    }

    #[test]
    fn scalars() {
        assert_eq!(canonical_json(&json!(null)), "null");
        assert_eq!(canonical_json(&json!(true)), "true");
        assert_eq!(canonical_json(&json!(false)), "false");
        assert_eq!(canonical_json(&json!(0)), "0");
        assert_eq!(canonical_json(&json!(-17)), "-17");
        assert_eq!(canonical_json(&json!(u64::MAX)), "18446744073709551615");
        assert_eq!(canonical_json(&json!(i64::MIN)), "-9223372036854775808");
        assert_eq!(canonical_json(&json!(1.0)), "1.0");
        assert_eq!(canonical_json(&json!(-0.5)), "-0.5");
        assert_eq!(canonical_json(&json!(1e20)), "1e+20");
        assert_eq!(canonical_json(&json!(1.5e-7)), "1.5e-7");
    }

    #[test]
    fn escaping_is_minimal() {
        let s = "q\"b\\s/\u{08}\u{0c}\n\r\t\u{00}\u{1f}\u{7f}é\u{2028}😀";
        assert_eq!(
            canonical_json(&json!(s)),
            "\"q\\\"b\\\\s/\\b\\f\\n\\r\\t\\u0000\\u001f\u{7f}é\u{2028}😀\""
        );
    }

    #[test]
    fn nested_values() {
        let v = json!({"z": [1, {"y": null, "x": [true, "s"]}], "a": {"c": {}, "b": []}});
        assert_eq!(
            canonical_json(&v),
            r#"{"a":{"b":[],"c":{}},"z":[1,{"x":[true,"s"],"y":null}]}"#
        );
    }

    #[test]
    fn formatting_of_input_text_does_not_change_digest() {
        let a: Value =
            serde_json::from_str(r#"{"type":"note","tags":["a","b"],"body":{"text":"hi"}}"#)
                .unwrap();
        let b: Value = serde_json::from_str(
            "{\n  \"body\" : { \"text\" : \"h\\u0069\" },\n  \"tags\" : [ \"a\", \"b\" ],\n  \"type\":\"note\"\n}",
        )
        .unwrap();
        assert_eq!(canonical_json(&a), canonical_json(&b));
        assert_eq!(activity_digest(&a), activity_digest(&b));
    }

    #[test]
    fn digest_known_vectors() {
        assert_eq!(
            digest_hex(b""),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            digest_hex(b"abc"),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn activity_digest_ignores_top_level_digest_only() {
        let bare = json!({"a": 1, "n": {"digest": "inner"}});
        let mut with = bare.clone();
        with["digest"] = json!("sha256:whatever");
        assert_eq!(activity_digest(&bare), activity_digest(&with));
        assert_eq!(
            activity_digest(&bare),
            digest_hex(canonical_json(&bare).as_bytes())
        );
        let mut inner_changed = bare.clone();
        inner_changed["n"]["digest"] = json!("other");
        assert_ne!(activity_digest(&bare), activity_digest(&inner_changed));
    }

    #[test]
    fn activity_digest_of_non_object() {
        let v = json!([1, "digest"]);
        assert_eq!(activity_digest(&v), digest_hex(b"[1,\"digest\"]"));
    }

    #[test]
    fn chain_hash_definition() {
        assert_eq!(chain_hash(None, "sha256:ab"), digest_hex(b"\nsha256:ab"));
        assert_eq!(
            chain_hash(Some("sha256:p"), "sha256:ab"),
            digest_hex(b"sha256:p\nsha256:ab")
        );
        assert_ne!(chain_hash(None, "x"), chain_hash(Some(""), "y"));
    }

    #[test]
    fn verify_roundtrip_and_tamper() {
        let mut act = json!({"type": "note", "body": "hello"});
        let d = activity_digest(&act);
        act["digest"] = json!(d.clone());
        assert_eq!(verify_activity(&act), Ok(()));

        let mut tampered = act.clone();
        tampered["body"] = json!("hellO");
        let err = verify_activity(&tampered).unwrap_err();
        assert_eq!(err.found.as_deref(), Some(d.as_str()));
        assert_eq!(err.expected, activity_digest(&tampered));
        assert!(err.to_string().contains("mismatch"));

        let missing = json!({"type": "note", "body": "hello"});
        assert_eq!(verify_activity(&missing).unwrap_err().found, None);
        let non_string = json!({"type": "note", "digest": 5});
        assert_eq!(verify_activity(&non_string).unwrap_err().found, None);
        assert!(verify_activity(&json!(null)).is_err());
    }

    fn arb_number() -> impl Strategy<Value = Value> {
        prop_oneof![
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>().prop_filter_map("finite, parser-exact", |f| {
                // Without serde_json's `float_roundtrip` feature its parser is
                // off by an ULP or more for some floats; that is the parser's
                // limitation, not the serialiser's, so skip those here.
                let n = Number::from_f64(f)?;
                let back: f64 = serde_json::from_str(&n.to_string()).ok()?;
                (back == f).then_some(Value::Number(n))
            }),
            (any::<i32>(), 0u32..8).prop_map(|(m, d)| json!(f64::from(m) / 10f64.powi(d as i32))),
        ]
    }

    fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            arb_number(),
            any::<String>().prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
                prop::collection::vec((any::<String>(), inner), 0..8)
                    .prop_map(|kvs| Value::Object(kvs.into_iter().collect())),
            ]
        })
    }

    /// Rebuilds `v` inserting object keys in an order derived from `seed`.
    fn reinsert(v: &Value, seed: usize) -> Value {
        match v {
            Value::Array(items) => Value::Array(items.iter().map(|x| reinsert(x, seed)).collect()),
            Value::Object(map) => {
                let mut entries: Vec<(&String, &Value)> = map.iter().collect();
                if !entries.is_empty() {
                    let len = entries.len();
                    entries.rotate_left(seed % len);
                }
                if seed % 2 == 1 {
                    entries.reverse();
                }
                let mut out = Map::new();
                for (k, x) in entries {
                    out.insert(k.clone(), reinsert(x, seed / 2 + 1));
                }
                Value::Object(out)
            }
            other => other.clone(),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn canonical_parses_back_to_same_value(v in arb_json()) {
            let text = canonical_json(&v);
            let back: Value = serde_json::from_str(&text).unwrap();
            prop_assert_eq!(back, v);
        }

        #[test]
        fn canonical_is_idempotent(v in arb_json()) {
            let text = canonical_json(&v);
            let back: Value = serde_json::from_str(&text).unwrap();
            prop_assert_eq!(canonical_json(&back), text);
        }

        #[test]
        fn key_insertion_order_is_irrelevant(v in arb_json(), seed in any::<usize>()) {
            prop_assert_eq!(canonical_json(&reinsert(&v, seed)), canonical_json(&v));
        }

        #[test]
        fn top_level_shuffle_is_irrelevant(
            entries in prop::collection::vec((any::<String>(), arb_json()), 0..8)
                .prop_shuffle()
        ) {
            let forward: Map<String, Value> = entries.iter().cloned().collect();
            let backward: Map<String, Value> = entries.iter().rev().cloned().collect();
            // Later duplicates win on insert, so only compare when keys are unique.
            prop_assume!(forward.len() == entries.len());
            let f = Value::Object(forward);
            let b = Value::Object(backward);
            prop_assert_eq!(canonical_json(&f), canonical_json(&b));
            prop_assert_eq!(activity_digest(&f), activity_digest(&b));
        }
    }
}

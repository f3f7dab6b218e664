//! `tag@circle` subscription expressions and tag/slug normalisation.
//!
//! A subscription is written `tag@circle`, where either side may be `*`
//! (any): `*@design`, `release@eng`, `urgent@*`, `*@*`. Tags are normalised
//! with [`normalize_tag`] (so `#Release@Eng` parses as `release@eng`),
//! circles with [`normalize_slug`]. Error positions are 0-based *character*
//! indices into the original input, so a UI can point at the offending spot.

use serde::Serialize;
use std::fmt;
use std::str::FromStr;

/// Longest tag, in characters after normalisation.
const MAX_TAG_CHARS: usize = 64;
/// Longest slug, in characters.
const MAX_SLUG_CHARS: usize = 63;
/// Prefix reserved for tags the engine adds itself.
const SYSTEM_PREFIX: &str = "sys:";

/// One side of a subscription expression: `*` or an exact normalised value.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub enum Pattern {
    /// `*`: matches any value.
    Any,
    /// Matches exactly this (already normalised) value.
    Exact(String),
}

impl Pattern {
    /// Whether `value` is matched by this pattern (exact string comparison).
    pub fn matches(&self, value: &str) -> bool {
        match self {
            Pattern::Any => true,
            Pattern::Exact(v) => v == value,
        }
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pattern::Any => f.write_str("*"),
            Pattern::Exact(v) => f.write_str(v),
        }
    }
}

/// A parsed `tag@circle` subscription.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SubscriptionExpr {
    /// Tag side; `Exact` values are normalised tags.
    pub tag: Pattern,
    /// Circle side; `Exact` values are valid slugs.
    pub circle: Pattern,
}

impl SubscriptionExpr {
    /// Whether an activity with `tags` posted in `circle` is selected by this subscription.
    pub fn matches(&self, tags: &[String], circle: &str) -> bool {
        let tag_ok = match &self.tag {
            Pattern::Any => true,
            Pattern::Exact(t) => tags.iter().any(|x| x == t),
        };
        tag_ok && self.circle.matches(circle)
    }
}

impl fmt::Display for SubscriptionExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.tag, self.circle)
    }
}

impl FromStr for SubscriptionExpr {
    type Err = ExprError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse(s)
    }
}

/// Why a subscription expression was rejected, and where.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("at position {position}: {message}")]
pub struct ExprError {
    /// 0-based character index into the original input.
    pub position: usize,
    /// Human-readable description of the problem.
    pub message: String,
}

/// Why a tag or slug was rejected, and where.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("at position {position}: {message}")]
pub struct TagError {
    /// 0-based character index into the raw input.
    pub position: usize,
    /// Human-readable description of the problem.
    pub message: String,
}

impl From<TagError> for ExprError {
    fn from(e: TagError) -> Self {
        ExprError {
            position: e.position,
            message: e.message,
        }
    }
}

fn tag_err(position: usize, message: impl Into<String>) -> TagError {
    TagError {
        position,
        message: message.into(),
    }
}

fn expr_err(position: usize, message: impl Into<String>) -> ExprError {
    ExprError {
        position,
        message: message.into(),
    }
}

/// Parses a `tag@circle` expression, normalising both sides.
pub fn parse(input: &str) -> Result<SubscriptionExpr, ExprError> {
    let chars: Vec<char> = input.chars().collect();
    let start = chars
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(chars.len());
    let end = chars
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(start, |i| i + 1);
    let body = &chars[start..end];

    let mut ats = body
        .iter()
        .enumerate()
        .filter(|(_, c)| **c == '@')
        .map(|(i, _)| start + i);
    let Some(at) = ats.next() else {
        return Err(expr_err(chars.len(), "expected '@'"));
    };
    if let Some(second) = ats.next() {
        return Err(expr_err(second, "unexpected second '@'"));
    }

    let tag_side = &chars[start..at];
    let circle_side = &chars[at + 1..end];

    let tag = if tag_side.is_empty() {
        return Err(expr_err(start, "expected a tag or '*' before '@'"));
    } else if tag_side == ['*'] {
        Pattern::Any
    } else {
        Pattern::Exact(check_tag(tag_side, start)?)
    };
    let circle = if circle_side.is_empty() {
        return Err(expr_err(at + 1, "expected a circle or '*' after '@'"));
    } else if circle_side == ['*'] {
        Pattern::Any
    } else {
        Pattern::Exact(check_slug(circle_side, at + 1)?)
    };
    Ok(SubscriptionExpr { tag, circle })
}

/// Normalises a user tag: trim, strip one `#`, lowercase; 1..=64 alphanumerics or `-_.`.
pub fn normalize_tag(raw: &str) -> Result<String, TagError> {
    let (chars, offset) = trimmed_chars(raw);
    check_tag(chars.as_slice(), offset)
}

/// Normalises a circle or user-name slug: trim, ASCII-lowercase, `[a-z0-9][a-z0-9_-]{0,62}`.
pub fn normalize_slug(raw: &str) -> Result<String, TagError> {
    let (chars, offset) = trimmed_chars(raw);
    check_slug(chars.as_slice(), offset)
}

/// Whether `s` is already a valid normalised slug (no trimming or lowercasing applied).
pub fn is_valid_slug(s: &str) -> bool {
    let bytes = s.as_bytes();
    match bytes.split_first() {
        None => false,
        Some((first, rest)) => {
            bytes.len() <= MAX_SLUG_CHARS
                && (first.is_ascii_lowercase() || first.is_ascii_digit())
                && rest.iter().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_' || *b == b'-'
                })
        }
    }
}

/// The engine's own tag for `name`, e.g. `sys:reply`.
pub fn system_tag(name: &str) -> String {
    format!("{SYSTEM_PREFIX}{}", name.to_lowercase())
}

/// Characters of `raw` with surrounding whitespace removed, plus how many were cut in front.
fn trimmed_chars(raw: &str) -> (Vec<char>, usize) {
    let leading = raw.len() - raw.trim_start().len();
    let offset = raw[..leading].chars().count();
    (raw.trim().chars().collect(), offset)
}

fn is_tag_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '-' | '_' | '.')
}

/// Validates and normalises an untrimmed tag; `offset` maps indices back to the caller's input.
fn check_tag(chars: &[char], offset: usize) -> Result<String, TagError> {
    let (body, body_start) = match chars.split_first() {
        Some(('#', rest)) => (rest, offset + 1),
        _ => (chars, offset),
    };
    if body.is_empty() {
        return Err(tag_err(body_start, "tag is empty"));
    }
    let prefix: Vec<char> = SYSTEM_PREFIX.chars().collect();
    if body.len() >= prefix.len()
        && body
            .iter()
            .zip(&prefix)
            .all(|(a, b)| a.to_ascii_lowercase() == *b)
    {
        return Err(tag_err(
            body_start,
            "tags starting with 'sys:' are reserved for the system",
        ));
    }
    let mut out = String::with_capacity(body.len());
    let mut count = 0usize;
    for (i, &c) in body.iter().enumerate() {
        let pos = body_start + i;
        // 'İ' is the one letter whose lowercase adds a combining mark ("i̇"); it stands for
        // 'i', as the tag pattern the API documents (letters and digits) implies.
        for lc in c
            .to_lowercase()
            .filter(|&lc| !(c == '\u{130}' && lc == '\u{307}'))
        {
            // Require a lowercase-stable allowed character so the output is a
            // fixed point: normalising a normalised tag never changes it.
            let stable = lc.to_lowercase().eq(std::iter::once(lc));
            if !is_tag_char(lc) || !stable {
                return Err(tag_err(pos, format!("invalid character {c:?} in tag")));
            }
            count += 1;
            if count > MAX_TAG_CHARS {
                return Err(tag_err(
                    pos,
                    format!("tag is longer than {MAX_TAG_CHARS} characters"),
                ));
            }
            out.push(lc);
        }
    }
    Ok(out)
}

/// Validates and normalises an untrimmed slug; `offset` maps indices back to the caller's input.
fn check_slug(chars: &[char], offset: usize) -> Result<String, TagError> {
    if chars.is_empty() {
        return Err(tag_err(offset, "slug is empty"));
    }
    let mut out = String::with_capacity(chars.len());
    for (i, &c) in chars.iter().enumerate() {
        let pos = offset + i;
        let lc = c.to_ascii_lowercase();
        let ok = if i == 0 {
            lc.is_ascii_lowercase() || lc.is_ascii_digit()
        } else {
            lc.is_ascii_lowercase() || lc.is_ascii_digit() || lc == '_' || lc == '-'
        };
        if !ok {
            let message = if i == 0 && (lc == '_' || lc == '-') {
                format!("slug must start with a letter or digit, not {c:?}")
            } else {
                format!("invalid character {c:?} in slug")
            };
            return Err(tag_err(pos, message));
        }
        if i >= MAX_SLUG_CHARS {
            return Err(tag_err(
                pos,
                format!("slug is longer than {MAX_SLUG_CHARS} characters"),
            ));
        }
        out.push(lc);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn exact(s: &str) -> Pattern {
        Pattern::Exact(s.to_string())
    }

    fn expr(tag: Pattern, circle: Pattern) -> SubscriptionExpr {
        SubscriptionExpr { tag, circle }
    }

    fn pos(input: &str) -> usize {
        parse(input).unwrap_err().position
    }

    #[test]
    fn parses_examples() {
        assert_eq!(
            parse("*@design").unwrap(),
            expr(Pattern::Any, exact("design"))
        );
        assert_eq!(
            parse("release@eng").unwrap(),
            expr(exact("release"), exact("eng"))
        );
        assert_eq!(
            parse("urgent@*").unwrap(),
            expr(exact("urgent"), Pattern::Any)
        );
        assert_eq!(parse("*@*").unwrap(), expr(Pattern::Any, Pattern::Any));
        assert_eq!(
            parse("#Release@Eng").unwrap(),
            expr(exact("release"), exact("eng"))
        );
        assert_eq!(
            parse(" \t release@eng \n").unwrap(),
            expr(exact("release"), exact("eng"))
        );
        assert_eq!(
            parse("Ünïcödé@a-b_c").unwrap(),
            expr(exact("ünïcödé"), exact("a-b_c"))
        );
        assert_eq!(
            parse("v1.2-rc_3@0x").unwrap(),
            expr(exact("v1.2-rc_3"), exact("0x"))
        );
    }

    #[test]
    fn displays_canonically() {
        assert_eq!(parse("#Release@Eng").unwrap().to_string(), "release@eng");
        assert_eq!(parse(" *@DESIGN ").unwrap().to_string(), "*@design");
        assert_eq!(parse("*@*").unwrap().to_string(), "*@*");
        let e: SubscriptionExpr = "Urgent@*".parse().unwrap();
        assert_eq!(e.to_string(), "urgent@*");
    }

    #[test]
    fn error_positions() {
        assert_eq!(pos("release"), 7);
        assert_eq!(pos("rele"), 4);
        assert_eq!(
            parse("rele").unwrap_err().to_string(),
            "at position 4: expected '@'"
        );
        assert_eq!(pos(""), 0);
        assert_eq!(pos("   "), 3);
        assert_eq!(pos("@eng"), 0);
        assert_eq!(pos("  @eng"), 2);
        assert_eq!(pos("eng@"), 4);
        assert_eq!(pos("eng@  "), 4);
        assert_eq!(pos("a@b@c"), 3);
        assert_eq!(pos("re!ease@eng"), 2);
        assert_eq!(pos("release@en!g"), 10);
        assert_eq!(pos("release@_eng"), 8);
        assert_eq!(pos("rel ease@eng"), 3);
        assert_eq!(pos("release @eng"), 7);
        assert_eq!(pos("release@ eng"), 8);
        assert_eq!(pos("sys:reply@eng"), 0);
        assert_eq!(pos("  sys:reply@eng"), 2);
        assert_eq!(pos("#SYS:x@eng"), 1);
        assert_eq!(pos("#@eng"), 1);
        assert_eq!(pos("#*@eng"), 1);
        assert_eq!(pos("x@**"), 2);
        // Character, not byte, positions.
        assert_eq!(pos("ééé!@eng"), 3);
        assert_eq!(pos("é@é"), 2);
    }

    #[test]
    fn error_messages() {
        assert!(
            parse("sys:reply@eng")
                .unwrap_err()
                .message
                .contains("reserved")
        );
        assert!(parse("a@b@c").unwrap_err().message.contains("second '@'"));
        assert!(parse("@eng").unwrap_err().message.contains("tag"));
        assert!(parse("eng@").unwrap_err().message.contains("circle"));
    }

    #[test]
    fn length_limits() {
        let t64 = "a".repeat(64);
        assert_eq!(normalize_tag(&t64).unwrap(), t64);
        assert_eq!(normalize_tag(&"a".repeat(65)).unwrap_err().position, 64);
        let s63 = "a".repeat(63);
        assert_eq!(normalize_slug(&s63).unwrap(), s63);
        assert_eq!(normalize_slug(&"a".repeat(64)).unwrap_err().position, 63);
        assert_eq!(pos(&format!("x@{}", "a".repeat(64))), 65);
    }

    #[test]
    fn tag_normalisation() {
        assert_eq!(normalize_tag("  #Release ").unwrap(), "release");
        assert_eq!(normalize_tag("ÄÖÜ").unwrap(), "äöü");
        assert_eq!(normalize_tag("日本").unwrap(), "日本");
        assert_eq!(normalize_tag("a.b-c_d").unwrap(), "a.b-c_d");
        assert_eq!(normalize_tag("").unwrap_err().position, 0);
        assert_eq!(normalize_tag("#").unwrap_err().position, 1);
        assert_eq!(normalize_tag("##a").unwrap_err().position, 1);
        assert_eq!(normalize_tag("  a b").unwrap_err().position, 3);
        assert_eq!(normalize_tag(" sys:x").unwrap_err().position, 1);
        assert_eq!(normalize_tag("a:b").unwrap_err().position, 1);
        // 'İ' lowercases to "i\u{307}"; it stands for 'i' (the API documents tags as letters
        // and digits, and the contract run sent one), not a refused combining mark.
        assert_eq!(normalize_tag("aİ").unwrap(), "ai");
        assert_eq!(normalize_tag("a\u{307}").unwrap_err().position, 1);
    }

    #[test]
    fn slug_normalisation() {
        assert_eq!(normalize_slug(" Design ").unwrap(), "design");
        assert_eq!(normalize_slug("0-a_b").unwrap(), "0-a_b");
        assert_eq!(normalize_slug("").unwrap_err().position, 0);
        assert_eq!(normalize_slug("-a").unwrap_err().position, 0);
        assert_eq!(normalize_slug(" a.b").unwrap_err().position, 2);
        assert_eq!(normalize_slug("É").unwrap_err().position, 0);
        assert!(normalize_slug("-a").unwrap_err().message.contains("start"));
    }

    #[test]
    fn valid_slug_check() {
        assert!(is_valid_slug("eng"));
        assert!(is_valid_slug("0"));
        assert!(is_valid_slug(&"a".repeat(63)));
        assert!(!is_valid_slug(&"a".repeat(64)));
        assert!(!is_valid_slug(""));
        assert!(!is_valid_slug("Eng"));
        assert!(!is_valid_slug(" eng"));
        assert!(!is_valid_slug("_eng"));
        assert!(!is_valid_slug("é"));
    }

    #[test]
    fn system_tags() {
        assert_eq!(system_tag("Reply"), "sys:reply");
        assert_eq!(system_tag("note"), "sys:note");
        // System tags cannot be typed by users.
        assert!(normalize_tag(&system_tag("reply")).is_err());
    }

    #[test]
    fn matching() {
        let tags = vec!["release".to_string(), "sys:note".to_string()];
        assert!(parse("release@eng").unwrap().matches(&tags, "eng"));
        assert!(!parse("release@eng").unwrap().matches(&tags, "design"));
        assert!(!parse("urgent@*").unwrap().matches(&tags, "eng"));
        assert!(parse("*@eng").unwrap().matches(&[], "eng"));
        assert!(parse("*@*").unwrap().matches(&[], "anything"));
        assert!(!parse("release@*").unwrap().matches(&[], "eng"));
        assert!(Pattern::Any.matches(""));
        assert!(exact("a").matches("a"));
        assert!(!exact("a").matches("A"));
    }

    #[test]
    fn errors_serialize_and_display() {
        let e = parse("@x").unwrap_err();
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["position"], 0);
        assert!(e.to_string().starts_with("at position 0: "));
        let t = normalize_tag("a!").unwrap_err();
        assert_eq!(t.to_string(), "at position 1: invalid character '!' in tag");
    }

    fn tag_char() -> impl Strategy<Value = char> {
        prop_oneof![
            4 => prop::char::ranges(vec!['a'..='z', '0'..='9'].into()),
            1 => prop::sample::select(vec!['-', '_', '.', 'é', 'ß', 'ж', 'ü', '中', '٣', 'ω']),
        ]
    }

    fn arb_tag() -> impl Strategy<Value = String> {
        prop::collection::vec(tag_char(), 1..=64)
            .prop_map(|cs| cs.into_iter().collect::<String>())
            .prop_filter("reserved prefix", |s| !s.starts_with("sys:"))
    }

    fn arb_slug() -> impl Strategy<Value = String> {
        "[a-z0-9][a-z0-9_-]{0,62}"
    }

    fn arb_pattern(inner: impl Strategy<Value = String>) -> impl Strategy<Value = Pattern> {
        prop_oneof![Just(Pattern::Any), inner.prop_map(Pattern::Exact)]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn round_trip(tag in arb_pattern(arb_tag()), circle in arb_pattern(arb_slug())) {
            let e = SubscriptionExpr { tag, circle };
            prop_assert_eq!(parse(&e.to_string()).unwrap(), e);
        }

        #[test]
        fn normalised_parse_is_a_fixed_point(tag in arb_tag(), slug in arb_slug(), hash in any::<bool>()) {
            let raw = format!(" {}{}@{} ", if hash { "#" } else { "" }, tag.to_uppercase(), slug.to_uppercase());
            if let Ok(e) = parse(&raw) {
                prop_assert_eq!(parse(&e.to_string()).unwrap(), e);
            }
        }

        #[test]
        fn valid_slugs_normalise_to_themselves(slug in arb_slug()) {
            prop_assert!(is_valid_slug(&slug));
            prop_assert_eq!(normalize_slug(&slug).unwrap(), slug);
        }

        #[test]
        fn parse_never_panics(s in any::<String>()) {
            if let Err(e) = parse(&s) {
                prop_assert!(e.position <= s.chars().count());
            }
        }

        #[test]
        fn parse_never_panics_on_near_misses(s in "[ #@*a-zA-Z0-9:_.!é-]{0,12}") {
            match parse(&s) {
                Ok(e) => prop_assert_eq!(parse(&e.to_string()).unwrap(), e),
                Err(e) => prop_assert!(e.position <= s.chars().count()),
            }
        }

        #[test]
        fn normalize_never_panics(s in any::<String>()) {
            if let Err(e) = normalize_tag(&s) {
                prop_assert!(e.position <= s.chars().count());
            }
            if let Err(e) = normalize_slug(&s) {
                prop_assert!(e.position <= s.chars().count());
            }
            if let Ok(t) = normalize_tag(&s) {
                prop_assert_eq!(normalize_tag(&t).unwrap(), t);
            }
        }
    }
}

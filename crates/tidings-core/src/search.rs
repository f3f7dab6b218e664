//! Search: the query language, the words text is indexed by, and highlighted snippets.
//!
//! Pure code shared by both stores, so that the SQLite and PostgreSQL indexes see the same
//! words and every snippet is built (and escaped) the same way whichever engine found it.
//!
//! Layout:
//! - [`words`] / [`index_text`] — how text becomes words: runs of letters and digits,
//!   lowercased, each at most [`MAX_WORD_CHARS`], then stemmed (Snowball English, Porter2:
//!   `panics` and `panic` are one word). Both engines index this text and queries are spelled
//!   with the same function, so they agree on what a word is, and so does the saved-search
//!   matcher ([`crate::saved`]).
//! - [`parse`] — the query language: words, `"phrases"`, `-exclusions`, `word*` prefixes (the
//!   last word is a prefix while someone types), `from:user`, `in:circle`, `tag:x`; typed
//!   [`QueryError`]s.
//! - [`highlight`] — an HTML-safe snippet with `<mark>`…`</mark>` around matched words.
//! - [`BestCursor`] — the position of a page in a relevance-ranked result.

use crate::expr::{normalize_slug, normalize_tag};

/// Longest query, in characters.
pub const MAX_QUERY_CHARS: usize = 256;
/// Most search terms (words, phrases, exclusions and operators together) in one query.
pub const MAX_TERMS: usize = 16;
/// Longest indexed word, in characters; longer runs are cut (both when indexing and querying).
pub const MAX_WORD_CHARS: usize = 64;
/// Shortest word matched as a prefix: a one-letter prefix matches too much to be useful.
pub const MIN_PREFIX_CHARS: usize = 2;

/// Why a query was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    /// The query is longer than [`MAX_QUERY_CHARS`].
    #[error("the query is {chars} characters long; at most {max} are allowed")]
    TooLong {
        /// Its length.
        chars: usize,
        /// The limit.
        max: usize,
    },
    /// More than [`MAX_TERMS`] terms.
    #[error("the query has more than {max} terms")]
    TooManyTerms {
        /// The limit.
        max: usize,
    },
    /// A `"` opened a phrase that never closes.
    #[error("a quote at character {at} is never closed")]
    UnclosedQuote {
        /// 1-based character position of the opening quote.
        at: usize,
    },
    /// An operator without a value (`from:` alone).
    #[error("`{operator}:` needs a value, e.g. `{operator}:{example}`")]
    EmptyOperator {
        /// `from`, `in` or `tag`.
        operator: &'static str,
        /// A value that would do.
        example: &'static str,
    },
    /// An operator's value is not a user name, circle name or tag.
    #[error("`{operator}:{value}` is not valid: {reason}")]
    InvalidOperator {
        /// `from`, `in` or `tag`.
        operator: &'static str,
        /// The value given.
        value: String,
        /// Why it is refused.
        reason: String,
    },
    /// Nothing to look for: no words and no filter.
    #[error("the query has no words to look for (and no from:, in: or tag: filter)")]
    Empty,
}

impl QueryError {
    /// A stable, machine-readable code for the API's error body.
    pub fn code(&self) -> &'static str {
        match self {
            QueryError::TooLong { .. } => "query_too_long",
            QueryError::TooManyTerms { .. } => "query_too_many_terms",
            QueryError::UnclosedQuote { .. } => "query_unclosed_quote",
            QueryError::EmptyOperator { .. } => "query_empty_operator",
            QueryError::InvalidOperator { .. } => "query_invalid_operator",
            QueryError::Empty => "query_empty",
        }
    }
}

/// Adjacent words that must appear in this order; the last one may be a prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Term {
    /// The words, as [`words`] spells them (never empty).
    pub words: Vec<String>,
    /// The last word matches any word it begins.
    pub prefix: bool,
}

/// A parsed query: what must match, what must not, and the operator filters.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Query {
    /// Every one of these must match.
    pub include: Vec<Term>,
    /// None of these may match.
    pub exclude: Vec<Term>,
    /// `from:` user names (all must hold, so two different ones find nothing).
    pub from: Vec<String>,
    /// `in:` circle names.
    pub circles: Vec<String>,
    /// `tag:` tags, normalised.
    pub tags: Vec<String>,
}

impl Query {
    /// True when there is neither a word to find nor a filter.
    pub fn is_empty(&self) -> bool {
        self.include.is_empty()
            && self.exclude.is_empty()
            && self.from.is_empty()
            && self.circles.is_empty()
            && self.tags.is_empty()
    }

    /// Every word a snippet should mark (prefixes flagged), from the terms that must match.
    pub fn marks(&self) -> Vec<(String, bool)> {
        let mut marks = Vec::new();
        for term in &self.include {
            let last = term.words.len().saturating_sub(1);
            for (i, word) in term.words.iter().enumerate() {
                marks.push((word.clone(), term.prefix && i == last));
            }
        }
        marks
    }
}

/// The words of `text`: runs of letters and digits, lowercased, each cut to
/// [`MAX_WORD_CHARS`] and stemmed.
pub fn words(text: &str) -> Vec<String> {
    word_spans(text)
        .into_iter()
        .map(|(start, end)| normalize_word(&text[start..end]))
        .collect()
}

/// The text an index stores for `text`: its [`words`] separated by single spaces.
pub fn index_text(text: &str) -> String {
    words(text).join(" ")
}

/// Lowercases a run of letters and digits, cuts it to [`MAX_WORD_CHARS`] and stems it.
fn normalize_word(run: &str) -> String {
    let word: String = run
        .chars()
        .flat_map(char::to_lowercase)
        .filter(|c| c.is_alphanumeric())
        .take(MAX_WORD_CHARS)
        .collect();
    stem(word)
}

/// The Snowball English (Porter2) stem of a lowercased word. Stemming only removes or
/// rewrites letters, but a stem that is empty or carries anything but letters and digits
/// (never seen; guarded so a word can never vanish or change the index's alphabet) falls
/// back to the word itself.
pub fn stem(word: String) -> String {
    static STEMMER: std::sync::OnceLock<rust_stemmers::Stemmer> = std::sync::OnceLock::new();
    let stemmer =
        STEMMER.get_or_init(|| rust_stemmers::Stemmer::create(rust_stemmers::Algorithm::English));
    let stemmed = stemmer.stem(&word);
    if stemmed.is_empty() || stemmed == word || !stemmed.chars().all(char::is_alphanumeric) {
        return word;
    }
    stemmed.into_owned()
}

/// Byte ranges of the runs of letters and digits in `text`.
fn word_spans(text: &str) -> Vec<(usize, usize)> {
    let mut spans = Vec::new();
    let mut start = None;
    for (i, c) in text.char_indices() {
        match (c.is_alphanumeric(), start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                spans.push((s, i));
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        spans.push((s, text.len()));
    }
    spans
}

/// Parses a query. The last bare word is a prefix (type-ahead) unless the query ends in
/// whitespace; `word*` is a prefix anywhere. Unknown `name:` pairs are plain words.
pub fn parse(input: &str) -> Result<Query, QueryError> {
    let chars = input.chars().count();
    if chars > MAX_QUERY_CHARS {
        return Err(QueryError::TooLong {
            chars,
            max: MAX_QUERY_CHARS,
        });
    }
    let mut query = Query::default();
    let mut terms = 0usize;
    let chars: Vec<char> = input.chars().collect();
    let mut i = 0;
    // Where the last bare word landed, so it can become a prefix at the end.
    let mut last_bare: Option<usize> = None;
    while i < chars.len() {
        if chars[i].is_whitespace() {
            i += 1;
            continue;
        }
        terms += 1;
        if terms > MAX_TERMS {
            return Err(QueryError::TooManyTerms { max: MAX_TERMS });
        }
        let negated = chars[i] == '-' && chars.get(i + 1).is_some_and(|c| !c.is_whitespace());
        if negated {
            i += 1;
        }
        if chars[i] == '"' {
            let open = i;
            let close = chars[open + 1..]
                .iter()
                .position(|&c| c == '"')
                .map(|p| open + 1 + p)
                .ok_or(QueryError::UnclosedQuote { at: open + 1 })?;
            let text: String = chars[open + 1..close].iter().collect();
            // A `*` right after the closing quote makes the phrase's last word a prefix.
            let starred = chars.get(close + 1) == Some(&'*');
            i = close + 1 + usize::from(starred);
            push_term(&mut query, &text, negated, starred);
            last_bare = None;
            continue;
        }
        let start = i;
        while i < chars.len() && !chars[i].is_whitespace() {
            i += 1;
        }
        let token: String = chars[start..i].iter().collect();
        if !negated && let Some((name, value)) = token.split_once(':') {
            let operator = match name.to_ascii_lowercase().as_str() {
                "from" => Some("from"),
                "in" => Some("in"),
                "tag" => Some("tag"),
                _ => None,
            };
            if let Some(operator) = operator {
                push_operator(&mut query, operator, value)?;
                last_bare = None;
                continue;
            }
        }
        let starred = token.ends_with('*');
        let before = if negated {
            query.exclude.len()
        } else {
            query.include.len()
        };
        push_term(&mut query, token.trim_end_matches('*'), negated, starred);
        last_bare =
            (!negated && !starred && query.include.len() > before).then(|| query.include.len() - 1);
    }
    let typing = chars.last().is_some_and(|c| !c.is_whitespace());
    if typing
        && let Some(at) = last_bare
        && let Some(term) = query.include.get_mut(at)
        && term
            .words
            .last()
            .is_some_and(|w| w.chars().count() >= MIN_PREFIX_CHARS)
    {
        term.prefix = true;
    }
    if query.is_empty() {
        return Err(QueryError::Empty);
    }
    Ok(query)
}

/// Adds a word, a phrase or an exclusion (text without words, like `--`, adds nothing).
fn push_term(query: &mut Query, text: &str, negated: bool, starred: bool) {
    let words = words(text);
    if words.is_empty() {
        return;
    }
    let prefix = starred
        && words
            .last()
            .is_some_and(|w| w.chars().count() >= MIN_PREFIX_CHARS);
    let term = Term { words, prefix };
    let list = if negated {
        &mut query.exclude
    } else {
        &mut query.include
    };
    if !list.contains(&term) {
        list.push(term);
    }
}

fn push_operator(query: &mut Query, operator: &'static str, raw: &str) -> Result<(), QueryError> {
    let (example, list) = match operator {
        "from" => ("ana", &mut query.from),
        "in" => ("eng", &mut query.circles),
        _ => ("release", &mut query.tags),
    };
    let raw = raw.trim_start_matches('@');
    if raw.is_empty() {
        return Err(QueryError::EmptyOperator { operator, example });
    }
    let value = match operator {
        "tag" => normalize_tag(raw),
        _ => normalize_slug(raw),
    }
    .map_err(|e| QueryError::InvalidOperator {
        operator,
        value: raw.to_owned(),
        reason: e.message,
    })?;
    if !list.contains(&value) {
        list.push(value);
    }
    Ok(())
}

/// Marks that open and close a highlighted word in a snippet.
pub const MARK_OPEN: &str = "<mark>";
/// See [`MARK_OPEN`].
pub const MARK_CLOSE: &str = "</mark>";
/// What stands for text cut from either end of a snippet.
pub const ELLIPSIS: &str = "…";

/// A snippet of `text` at most about `max_chars` characters long, around the first matched
/// word: HTML-escaped (`& < > " '`), with every word `marks` matches wrapped in
/// `<mark>`…`</mark>` (a mark that is a prefix matches any word it begins). Safe to insert as
/// HTML: the only tags in it are the marks.
pub fn highlight(text: &str, marks: &[(String, bool)], max_chars: usize) -> String {
    let spans = word_spans(text);
    let matched: Vec<(usize, usize)> = spans
        .into_iter()
        .filter(|&(s, e)| {
            let word = normalize_word(&text[s..e]);
            marks
                .iter()
                .any(|(m, prefix)| word == *m || (*prefix && word.starts_with(m.as_str())))
        })
        .collect();
    let (from, to) = window(text, matched.first().map(|m| m.0), max_chars);
    let mut out = String::with_capacity(to - from + 32);
    if from > 0 {
        out.push_str(ELLIPSIS);
    }
    let mut at = from;
    for &(s, e) in matched.iter().filter(|&&(s, e)| s >= from && e <= to) {
        escape_into(&mut out, &text[at..s]);
        out.push_str(MARK_OPEN);
        escape_into(&mut out, &text[s..e]);
        out.push_str(MARK_CLOSE);
        at = e;
    }
    escape_into(&mut out, &text[at..to]);
    if to < text.len() {
        out.push_str(ELLIPSIS);
    }
    out
}

/// Byte range of at most `max_chars` characters of `text` that shows the byte `focus`, starting
/// a little before it, on character boundaries (and at a space when one is near).
fn window(text: &str, focus: Option<usize>, max_chars: usize) -> (usize, usize) {
    let total = text.chars().count();
    if total <= max_chars {
        return (0, text.len());
    }
    let focus_char = focus.map_or(0, |f| text[..f].chars().count());
    let lead = max_chars / 4;
    let mut start_char = focus_char.saturating_sub(lead);
    if start_char + max_chars > total {
        start_char = total.saturating_sub(max_chars);
    }
    let mut bounds = text
        .char_indices()
        .map(|(i, _)| i)
        .chain(std::iter::once(text.len()));
    let start = bounds.nth(start_char).unwrap_or(0);
    let end = bounds
        .nth(max_chars.saturating_sub(1))
        .unwrap_or(text.len());
    // Start after a space when one is close, so the snippet does not open mid-word.
    let start = match text[start..focus.unwrap_or(start).max(start)].find(' ') {
        Some(p) if start > 0 && p < 16 => start + p + 1,
        _ => start,
    };
    (start, end)
}

fn escape_into(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
}

/// Where a page of a relevance-ranked result starts: the ranked set is the matches up to seq
/// `upto` (fixed on the first page, so later pages rank the same set), and `offset` results
/// of it were already shown. Packed into one cursor position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BestCursor {
    /// Newest seq the ranked set holds.
    pub upto: i64,
    /// Results already shown.
    pub offset: i64,
}

/// Offsets fit in this many bits of a packed [`BestCursor`].
const OFFSET_BITS: u32 = 16;

impl BestCursor {
    /// The cursor position this packs into; None when it does not fit.
    pub fn pack(self) -> Option<i64> {
        if !(0..1 << OFFSET_BITS).contains(&self.offset) || self.upto < 0 {
            return None;
        }
        self.upto
            .checked_mul(1 << OFFSET_BITS)
            .map(|high| high | self.offset)
    }

    /// The cursor a position packs.
    pub fn unpack(position: i64) -> BestCursor {
        BestCursor {
            upto: position >> OFFSET_BITS,
            offset: position & ((1 << OFFSET_BITS) - 1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn term(words: &[&str], prefix: bool) -> Term {
        Term {
            words: words.iter().map(|w| (*w).to_owned()).collect(),
            prefix,
        }
    }

    #[test]
    fn words_are_lowercased_runs_of_letters_and_digits() {
        assert_eq!(
            words("Tokio's panic, v2.0!"),
            ["tokio", "s", "panic", "v2", "0"]
        );
        assert_eq!(words("Ärger über Çafé"), ["ärger", "über", "çafé"]);
        assert_eq!(index_text("  a--b  "), "a b");
        let long = "x".repeat(100);
        assert_eq!(words(&long)[0].len(), MAX_WORD_CHARS);
    }

    #[test]
    fn words_are_stemmed_the_same_in_text_and_queries() {
        assert_eq!(words("panic panics Panicked"), ["panic", "panic", "panick"]);
        assert_eq!(words("running runs ran"), ["run", "run", "ran"]);
        assert_eq!(words("happy happiness"), ["happi", "happi"]);
        // A query word finds its other forms, and the highlight marks them.
        let marks = parse("panic ").expect("ok").marks();
        assert_eq!(
            highlight("Panics everywhere", &marks, 200),
            "<mark>Panics</mark> everywhere"
        );
        // Typing a word whole finds its longer forms through the prefix of its stem.
        assert_eq!(
            parse("happy").expect("ok").include,
            [term(&["happi"], true)]
        );
        // Numbers and non-English words pass through.
        assert_eq!(words("v2 日本 straße"), ["v2", "日本", "straße"]);
    }

    #[test]
    fn parses_words_phrases_exclusions_and_operators() {
        let q =
            parse(r#"Tokio "async runtime" -panic -"hard fault" from:@Ana in:eng tag:#Release "#)
                .expect("valid");
        assert_eq!(
            q.include,
            [term(&["tokio"], false), term(&["async", "runtim"], false)]
        );
        assert_eq!(
            q.exclude,
            [term(&["panic"], false), term(&["hard", "fault"], false)]
        );
        assert_eq!(q.from, ["ana"]);
        assert_eq!(q.circles, ["eng"]);
        assert_eq!(q.tags, ["release"]);
    }

    #[test]
    fn the_last_word_is_a_prefix_while_typing() {
        assert_eq!(parse("tok").expect("ok").include, [term(&["tok"], true)]);
        assert_eq!(parse("tok ").expect("ok").include, [term(&["tok"], false)]);
        assert_eq!(
            parse("rust tok").expect("ok").include,
            [term(&["rust"], false), term(&["tok"], true)]
        );
        // One letter is too short to be a prefix; an explicit star works anywhere.
        assert_eq!(parse("t").expect("ok").include, [term(&["t"], false)]);
        assert_eq!(
            parse("tok* rust ").expect("ok").include,
            [term(&["tok"], true), term(&["rust"], false)]
        );
        assert_eq!(
            parse(r#""async run"*"#).expect("ok").include,
            [term(&["async", "run"], true)]
        );
        // A word with punctuation inside is a phrase of its words.
        assert_eq!(
            parse("don't ").expect("ok").include,
            [term(&["don", "t"], false)]
        );
    }

    #[test]
    fn refuses_what_it_cannot_run() {
        assert_eq!(
            parse(&"a ".repeat(200)),
            Err(QueryError::TooLong {
                chars: 400,
                max: MAX_QUERY_CHARS
            })
        );
        assert_eq!(
            parse(&"ab ".repeat(17)).map_err(|e| e.code()),
            Err("query_too_many_terms")
        );
        assert_eq!(
            parse(r#"a "open"#),
            Err(QueryError::UnclosedQuote { at: 3 })
        );
        assert_eq!(
            parse("from:").map_err(|e| e.code()),
            Err("query_empty_operator")
        );
        assert_eq!(
            parse("in:Bad!Name").map_err(|e| e.code()),
            Err("query_invalid_operator")
        );
        assert_eq!(parse("   ").map_err(|e| e.code()), Err("query_empty"));
        assert_eq!(parse("-- !!").map_err(|e| e.code()), Err("query_empty"));
        // Exclusions and filters alone are a query; unknown operators are words.
        assert!(parse("-spam from:ana").is_ok());
        assert_eq!(
            parse("http://x ").expect("ok").include,
            [term(&["http", "x"], false)]
        );
    }

    #[test]
    fn highlights_are_escaped_and_marked() {
        let marks = parse("tokio pan").expect("ok").marks();
        assert_eq!(
            highlight("<b>Tokio</b> panics & \"fails\"", &marks, 200),
            "&lt;b&gt;<mark>Tokio</mark>&lt;/b&gt; <mark>panics</mark> &amp; &quot;fails&quot;"
        );
        // A long text is cut around the first match, with ellipses.
        let text = format!("{} needle {}", "hay ".repeat(100), "straw ".repeat(100));
        let snippet = highlight(&text, &parse("needle ").expect("ok").marks(), 60);
        assert!(
            snippet.starts_with(ELLIPSIS) && snippet.ends_with(ELLIPSIS),
            "{snippet}"
        );
        assert!(snippet.contains("<mark>needle</mark>"), "{snippet}");
        assert!(snippet.chars().count() <= 60 + 2 + 13, "{snippet}");
        // Nothing matched: the start of the text.
        assert_eq!(highlight("plain", &marks, 10), "plain");
    }

    #[test]
    fn best_cursors_round_trip() {
        let c = BestCursor {
            upto: 123_456,
            offset: 40,
        };
        assert_eq!(BestCursor::unpack(c.pack().expect("fits")), c);
        assert_eq!(
            BestCursor {
                upto: 1,
                offset: 1 << 16
            }
            .pack(),
            None
        );
    }

    proptest! {
        /// Any input parses or fails with a typed error, never panics; a parsed query holds
        /// only words its index would hold.
        #[test]
        fn parse_never_panics(input in "\\PC{0,300}") {
            if let Ok(q) = parse(&input) {
                for t in q.include.iter().chain(&q.exclude) {
                    prop_assert!(!t.words.is_empty());
                    for w in &t.words {
                        prop_assert!(!w.is_empty() && w.chars().all(char::is_alphanumeric));
                    }
                }
            }
        }

        /// A snippet never carries markup of its own: removing the marks leaves text without
        /// `<`, `>` or quotes.
        #[test]
        fn snippets_are_safe(text in "\\PC{0,400}", q in "[a-z<>&\"' ]{1,20}") {
            let marks = parse(&q).map(|q| q.marks()).unwrap_or_default();
            let out = highlight(&text, &marks, 80);
            let bare = out.replace(MARK_OPEN, "").replace(MARK_CLOSE, "");
            prop_assert!(!bare.contains('<') && !bare.contains('>'));
            prop_assert!(!bare.contains('"') && !bare.contains('\''));
        }
    }
}

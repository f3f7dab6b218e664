//! Saved searches as subscription terms, and matching them against one activity.
//!
//! A saved search is written next to `tag@circle` as a quoted query with an optional circle:
//! `"tokio panic"@eng` (posts of `eng` that a search for `tokio panic` finds), or `"rust
//! async"` (equivalently `"rust async"@*`: every public post and every post of a circle the
//! person may read). The query is the search language of [`crate::search`], parsed as a
//! finished query (its last word is a whole word, not a type-ahead prefix).
//!
//! The router matches each new activity against saved searches in pure code
//! ([`SavedSearch::matches`]) over the same words the index stores ([`crate::search::words`]),
//! so a live match is exactly what a search would return (the store's contract suite checks
//! that equivalence against both engines). To avoid looking at every saved search per
//! activity, each one has a [`SavedSearch::key_word`]: a word every match must contain, so
//! the store looks saved searches up by the words of the activity, the way tags are.

use crate::expr::{Pattern, SubscriptionExpr, normalize_slug};
use crate::search::{Query, QueryError, Term, parse, words};
use std::fmt;

/// Why a saved-search term was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SavedSearchError {
    /// Not of the form `"query"` or `"query"@circle`.
    #[error("at position {position}: {message}")]
    Syntax {
        /// 0-based character index into the term.
        position: usize,
        /// What is wrong.
        message: String,
    },
    /// The query itself is not valid search syntax.
    #[error("{0}")]
    Query(#[from] QueryError),
    /// Nothing every match must contain (only prefixes, exclusions or operators).
    #[error(
        "a saved search needs at least one whole word to look for (not only prefixes, exclusions or from:/in:/tag:)"
    )]
    NoWord,
}

impl SavedSearchError {
    /// The 0-based character position the error points at, when it has one.
    pub fn position(&self) -> usize {
        match self {
            SavedSearchError::Syntax { position, .. } => *position,
            _ => 0,
        }
    }
}

/// A parsed saved search: the query and where it looks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedSearch {
    /// The query as written (trimmed), shown back in the term and the inbox's reason.
    pub text: String,
    /// The parsed query.
    pub query: Query,
    /// One circle, or any circle and public post the subscriber may read.
    pub circle: Pattern,
}

/// The facts of one activity a saved search is matched against: the same fields the search
/// index holds, plus what the query's operators filter on.
#[derive(Debug, Clone, Copy)]
pub struct MatchDoc<'a> {
    /// The object's name (title).
    pub title: &'a str,
    /// Its tags, as the index holds them (space-separated).
    pub tags: &'a str,
    /// Its summary and content.
    pub body: &'a str,
    /// The author's username (`from:`).
    pub author: &'a str,
    /// The circles it is addressed to (`in:` and the term's circle).
    pub circles: &'a [String],
    /// Its normalised tags (`tag:`).
    pub tag_list: &'a [String],
}

/// One subscription term: `tag@circle` or a saved search.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubscriptionTerm {
    /// `tag@circle`.
    Tag(SubscriptionExpr),
    /// `"query"@circle`.
    Search(SavedSearch),
}

impl From<SubscriptionExpr> for SubscriptionTerm {
    fn from(expr: SubscriptionExpr) -> Self {
        SubscriptionTerm::Tag(expr)
    }
}

impl From<SavedSearch> for SubscriptionTerm {
    fn from(search: SavedSearch) -> Self {
        SubscriptionTerm::Search(search)
    }
}

impl SubscriptionTerm {
    /// The circle side of the term.
    pub fn circle(&self) -> &Pattern {
        match self {
            SubscriptionTerm::Tag(e) => &e.circle,
            SubscriptionTerm::Search(s) => &s.circle,
        }
    }
}

impl fmt::Display for SubscriptionTerm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SubscriptionTerm::Tag(e) => e.fmt(f),
            SubscriptionTerm::Search(s) => s.fmt(f),
        }
    }
}

/// Whether the query starts a saved-search term (rather than a `tag@circle` one).
pub fn is_saved_search(input: &str) -> bool {
    input.trim_start().starts_with('"')
}

/// Parses `"query"` or `"query"@circle` (`@*` means any circle). The query is everything
/// between the first and the last quote, so it may hold quoted phrases of its own.
pub fn parse_saved(input: &str) -> Result<SavedSearch, SavedSearchError> {
    let chars: Vec<char> = input.chars().collect();
    let start = chars
        .iter()
        .position(|c| !c.is_whitespace())
        .unwrap_or(chars.len());
    let end = chars
        .iter()
        .rposition(|c| !c.is_whitespace())
        .map_or(start, |i| i + 1);
    if chars.get(start) != Some(&'"') {
        return Err(SavedSearchError::Syntax {
            position: start,
            message: "a saved search starts with '\"'".into(),
        });
    }
    let close = chars[start + 1..end]
        .iter()
        .rposition(|&c| c == '"')
        .map(|p| start + 1 + p)
        .ok_or(SavedSearchError::Syntax {
            position: end,
            message: "the saved search's closing '\"' is missing".into(),
        })?;
    let rest: String = chars[close + 1..end].iter().collect();
    let circle = if rest.is_empty() {
        Pattern::Any
    } else if let Some(name) = rest.strip_prefix('@') {
        if name == "*" {
            Pattern::Any
        } else {
            Pattern::Exact(normalize_slug(name).map_err(|e| SavedSearchError::Syntax {
                position: close + 2 + e.position,
                message: e.message,
            })?)
        }
    } else {
        return Err(SavedSearchError::Syntax {
            position: close + 1,
            message: "expected '@circle' or nothing after the closing '\"'".into(),
        });
    };
    let text: String = chars[start + 1..close].iter().collect::<String>();
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    // A saved query is finished, not being typed: its last word is whole.
    let query = parse(&format!("{text} "))?;
    let saved = SavedSearch {
        text,
        query,
        circle,
    };
    if saved.key_word().is_none() {
        return Err(SavedSearchError::NoWord);
    }
    Ok(saved)
}

impl fmt::Display for SavedSearch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{}\"", self.text)?;
        match &self.circle {
            Pattern::Any => Ok(()),
            Pattern::Exact(c) => write!(f, "@{c}"),
        }
    }
}

impl SavedSearch {
    /// A word every match contains (the longest whole word of the terms that must match:
    /// long words are the rarer ones); None when there is none.
    pub fn key_word(&self) -> Option<&str> {
        self.query
            .include
            .iter()
            .flat_map(|t| {
                let whole = if t.prefix {
                    t.words.len().saturating_sub(1)
                } else {
                    t.words.len()
                };
                t.words.iter().take(whole)
            })
            .max_by_key(|w| (w.chars().count(), std::cmp::Reverse(w.as_str())))
            .map(String::as_str)
    }

    /// Whether a search for this query, in this term's circle, finds the activity (the
    /// caller checks that the subscriber may read it).
    pub fn matches(&self, doc: &MatchDoc<'_>) -> bool {
        if let Pattern::Exact(circle) = &self.circle
            && !doc.circles.iter().any(|c| c == circle)
        {
            return false;
        }
        query_matches(&self.query, doc)
    }
}

/// Whether `query` finds `doc`, as the search index would: every include term in one field,
/// no exclude term in any, and every operator filter.
pub fn query_matches(query: &Query, doc: &MatchDoc<'_>) -> bool {
    let fields = [words(doc.title), words(doc.tags), words(doc.body)];
    let found = |term: &Term| fields.iter().any(|f| term_in(f, term));
    query.include.iter().all(found)
        && !query.exclude.iter().any(found)
        && query.from.iter().all(|a| a == doc.author)
        && query
            .circles
            .iter()
            .all(|c| doc.circles.iter().any(|x| x == c))
        && query
            .tags
            .iter()
            .all(|t| doc.tag_list.iter().any(|x| x == t))
}

/// Whether the words of `term` appear adjacent, in order, in `field` (the last one as a
/// prefix when the term is one).
fn term_in(field: &[String], term: &Term) -> bool {
    let n = term.words.len();
    if n == 0 || field.len() < n {
        return false;
    }
    field.windows(n).any(|window| {
        window
            .iter()
            .zip(&term.words)
            .enumerate()
            .all(|(i, (w, t))| {
                if term.prefix && i == n - 1 {
                    w.starts_with(t.as_str())
                } else {
                    w == t
                }
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn doc<'a>(body: &'a str, circles: &'a [String]) -> MatchDoc<'a> {
        MatchDoc {
            title: "",
            tags: "",
            body,
            author: "ana",
            circles,
            tag_list: &[],
        }
    }

    #[test]
    fn parses_terms_with_and_without_circle() {
        let s = parse_saved(r#" "Tokio  panic"@Eng "#).unwrap();
        assert_eq!(s.text, "Tokio panic");
        assert_eq!(s.circle, Pattern::Exact("eng".into()));
        assert_eq!(s.to_string(), r#""Tokio panic"@eng"#);
        let any = parse_saved(r#""rust async""#).unwrap();
        assert_eq!(any.circle, Pattern::Any);
        assert_eq!(any.to_string(), r#""rust async""#);
        assert_eq!(parse_saved(r#""rust async"@*"#).unwrap(), any);
        // Phrases inside: everything between the first and last quote is the query.
        let phrase = parse_saved(r#"""tokio panic" -test"@eng"#).unwrap();
        assert_eq!(phrase.query.include[0].words, vec!["tokio", "panic"]);
        assert_eq!(phrase.query.exclude[0].words, vec!["test"]);
        // The last word is whole, not a type-ahead prefix.
        assert!(!any.query.include.iter().any(|t| t.prefix));
        // Canonical text parses to itself.
        assert_eq!(parse_saved(&s.to_string()).unwrap(), s);
    }

    #[test]
    fn refuses_bad_terms() {
        assert!(matches!(
            parse_saved("tokio"),
            Err(SavedSearchError::Syntax { position: 0, .. })
        ));
        assert!(matches!(
            parse_saved(r#""tokio"#),
            Err(SavedSearchError::Syntax { .. })
        ));
        assert!(matches!(
            parse_saved(r#""tokio"eng"#),
            Err(SavedSearchError::Syntax { position: 7, .. })
        ));
        assert!(matches!(
            parse_saved(r#""tokio"@_x"#),
            Err(SavedSearchError::Syntax { position: 8, .. })
        ));
        assert!(matches!(
            parse_saved(r#""tok* -x""#),
            Err(SavedSearchError::NoWord)
        ));
        assert!(matches!(
            parse_saved(r#""from:ana""#),
            Err(SavedSearchError::NoWord)
        ));
        assert!(matches!(
            parse_saved(r#""""#),
            Err(SavedSearchError::Query(QueryError::Empty))
        ));
    }

    #[test]
    fn key_word_is_a_required_whole_word() {
        let s = parse_saved(r#""go tokio pan*""#).unwrap();
        assert_eq!(s.key_word(), Some("tokio"));
        let s = parse_saved(r#""ab cd""#).unwrap();
        assert_eq!(s.key_word(), Some("ab"));
    }

    #[test]
    fn matches_like_the_index() {
        let eng = vec!["eng".to_string()];
        let s = parse_saved(r#""tokio panic"@eng"#).unwrap();
        assert!(s.matches(&doc("A Tokio task: PANIC at the disco", &eng)));
        assert!(!s.matches(&doc("A Tokio task: PANIC at the disco", &[])));
        assert!(!s.matches(&doc("only tokio", &eng)));
        let phrase = parse_saved(r#"""tokio panic"""#).unwrap();
        assert!(phrase.matches(&doc("tokio, panic!", &[])));
        assert!(!phrase.matches(&doc("panic tokio", &[])));
        let excl = parse_saved(r#""tokio -async""#).unwrap();
        assert!(excl.matches(&doc("tokio", &[])));
        assert!(!excl.matches(&doc("tokio async", &[])));
        let prefix = parse_saved(r#""tokio pan*""#).unwrap();
        assert!(prefix.matches(&doc("tokio panics", &[])));
        let from = parse_saved(r#""tokio from:bo""#).unwrap();
        assert!(!from.matches(&doc("tokio", &[])));
        // A phrase must sit within one field.
        let split = MatchDoc {
            title: "tokio",
            ..doc("panic", &[])
        };
        assert!(!phrase.matches(&split));
        assert!(s.matches(&MatchDoc {
            circles: &eng,
            ..split
        }));
    }

    proptest! {
        #[test]
        fn parse_never_panics(s in "\\PC{0,80}") {
            if let Err(SavedSearchError::Syntax { position, .. }) = parse_saved(&s) {
                prop_assert!(position <= s.chars().count());
            }
        }

        #[test]
        fn canonical_form_is_a_fixed_point(q in "[a-z ]{1,30}", circle in proptest::option::of("[a-z][a-z0-9]{0,8}")) {
            let term = match &circle { Some(c) => format!("\"{q}\"@{c}"), None => format!("\"{q}\"") };
            if let Ok(s) = parse_saved(&term) {
                prop_assert_eq!(parse_saved(&s.to_string()).unwrap(), s);
            }
        }

        #[test]
        fn a_match_always_holds_the_key_word(q in "[a-c]{1,2}( [a-c]{1,2}){0,2}", body in "[a-c ]{0,40}") {
            if let Ok(s) = parse_saved(&format!("\"{q}\"")) {
                let key = s.key_word().unwrap().to_owned();
                if s.matches(&doc(&body, &[])) {
                    prop_assert!(words(&body).contains(&key));
                }
            }
        }
    }
}

//! Pure core of Tidings: everything here is free of IO so it can be tested exhaustively.
//!
//! Layout:
//! - [`canonical`] — canonical JSON, activity digests and stream hash chains.
//! - [`expr`] — `tag@circle` subscription expressions and tag/slug normalisation.
//! - [`cursor`] — opaque pagination cursors.
//! - [`merge`] — k-way merge of ordered streams (the inbox multiplexer's heart).
//! - [`activity`] — validation and normalisation of published activities.
//! - [`routing`] — who receives an activity, and why.
//! - [`feeds`] — feed declarations, notification reasons, aggregation into groups.
//! - [`search`] — the search query language, indexed words, highlighted snippets.
//! - [`filter`] — the integration bus's topic filters (`tag@circle`, fields, JSONPath) and
//!   their index.
//! - [`webhook`] — Standard Webhooks signatures.
//! - [`media`] — media uploads: type sniffing, size and pixel caps, derived sizes, blob keys,
//!   the media an activity references.

pub mod activity;
pub mod canonical;
pub mod cursor;
pub mod expr;
pub mod feeds;
pub mod filter;
pub mod media;
pub mod merge;
pub mod routing;
pub mod search;
pub mod webhook;

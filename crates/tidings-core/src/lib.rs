//! Pure core of Tidings: everything here is free of IO so it can be tested exhaustively.
//!
//! Layout:
//! - [`canonical`] — canonical JSON, activity digests and stream hash chains.
//! - [`expr`] — `tag@circle` subscription expressions and tag/slug normalisation.
//! - [`cursor`] — opaque pagination cursors.
//! - [`merge`] — k-way merge of ordered streams (the inbox multiplexer's heart).
//! - [`moderation`] — report reasons, moderators' decisions, and how activities record them.
//! - [`activity`] — validation and normalisation of published activities.
//! - [`routing`] — who receives an activity, and why.
//! - [`feeds`] — feed declarations, notification reasons, aggregation into groups.
//! - [`saved`] — saved searches as subscription terms (`"tokio panic"@eng`) and their matcher.
//! - [`search`] — the search query language, indexed words, highlighted snippets.
//! - [`filter`] — the integration bus's topic filters (`tag@circle`, fields, JSONPath) and
//!   their index.
//! - [`webhook`] — Standard Webhooks signatures.
//! - [`schedule`] — the bus's scheduling maths: cron in an IANA zone across DST, RFC 3339.
//! - [`conversations`] — conversation ids of direct messages, user group references.
//! - [`media`] — media uploads: type sniffing, size and pixel caps, derived sizes, blob keys,
//!   the media an activity references.

pub mod activity;
pub mod canonical;
pub mod conversations;
pub mod cursor;
pub mod expr;
pub mod feeds;
pub mod filter;
pub mod media;
pub mod merge;
pub mod moderation;
pub mod routing;
pub mod saved;
pub mod schedule;
pub mod search;
pub mod webhook;

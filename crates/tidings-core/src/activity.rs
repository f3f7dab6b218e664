//! Validation and normalisation of published activities.
//!
//! A client posts a loose ActivityStreams 2.0 document; [`normalize`] checks it against the
//! limits and the type registry and returns a [`Draft`] that the store turns into an immutable
//! record with [`Draft::into_record`]. Nothing here touches the clock or the store: the caller
//! supplies ids, timestamps and the registry.

use crate::conversations::GroupRef;
use crate::expr::{TagError, is_valid_slug, normalize_slug, normalize_tag, system_tag};
use serde::Serialize;
use serde_json::{Map, Value, json};
use std::collections::BTreeSet;

/// ActivityStreams context carried by every stored activity.
pub const AS_CONTEXT: &str = "https://www.w3.org/ns/activitystreams";

/// Built-in activity types (the verbs).
pub const ACTIVITY_TYPES: &[&str] = &[
    "Create", "Update", "Delete", "Like", "Dislike", "Announce", "Follow", "Undo", "Join", "Leave",
    "Add", "Remove", "Accept", "Reject", "Flag", "View", "Read", "Block", "Question",
];

/// Built-in object types.
pub const OBJECT_TYPES: &[&str] = &[
    "Note", "Article", "Image", "Link", "Video", "Audio", "Document", "Page", "Event",
];

/// Top-level keys the engine owns: they are set, derived or refused by Tidings and are never
/// copied from a posted document as a custom activity type's own fields.
const RESERVED_KEYS: &[&str] = &[
    "@context",
    "id",
    "type",
    "actor",
    "published",
    "to",
    "cc",
    "bto",
    "bcc",
    "audience",
    "tag",
    "object",
    "actions",
    "inReplyTo",
    "digest",
    "tidings",
];

/// Limits applied to every publish; each breach is a clear 4xx, never a truncation.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Longest `content` in characters.
    pub max_content_chars: usize,
    /// Longest other string field in characters (name, summary, url, …).
    pub max_string_chars: usize,
    /// Most user tags per activity.
    pub max_tags: usize,
    /// Most entries in `to`.
    pub max_audience: usize,
    /// Most actions per activity.
    pub max_actions: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_content_chars: 20_000,
            max_string_chars: 2_048,
            max_tags: 32,
            max_audience: 64,
            max_actions: 16,
        }
    }
}

/// Whether an activity is a major one (Create/Update of an object) or a minor one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Creation or edit of content.
    Major,
    /// Reactions, follows, joins and other bookkeeping.
    Minor,
}

impl Kind {
    /// Stable text form stored and used in filters.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Major => "major",
            Kind::Minor => "minor",
        }
    }
}

/// One entry of an activity's `to`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Addressee {
    /// Anyone may read it.
    Public,
    /// The actor's followers.
    Followers,
    /// A circle by name.
    Circle(String),
    /// A user by name.
    User(String),
    /// A topic of the integration bus, by name.
    Topic(String),
    /// A user group: its members at publish time (decision 0027).
    Group(GroupRef),
}

impl Addressee {
    /// Parses `public`, `followers`, `circle:NAME`, `user:NAME`, `topic:NAME` or
    /// `group:NAME[@CIRCLE]`.
    pub fn parse(raw: &str) -> Option<Addressee> {
        let raw = raw.trim();
        match raw {
            "public" | "as:Public" | "https://www.w3.org/ns/activitystreams#Public" => {
                return Some(Addressee::Public);
            }
            "followers" => return Some(Addressee::Followers),
            _ => {}
        }
        let (scheme, name) = raw.split_once(':')?;
        if scheme == "group" {
            return GroupRef::parse(name).map(Addressee::Group);
        }
        let name = normalize_slug(name).ok()?;
        match scheme {
            "circle" => Some(Addressee::Circle(name)),
            "user" => Some(Addressee::User(name)),
            "topic" => Some(Addressee::Topic(name)),
            _ => None,
        }
    }

    /// The canonical text stored in `to`.
    pub fn as_text(&self) -> String {
        match self {
            Addressee::Public => "public".to_owned(),
            Addressee::Followers => "followers".to_owned(),
            Addressee::Circle(c) => format!("circle:{c}"),
            Addressee::User(u) => format!("user:{u}"),
            Addressee::Topic(t) => format!("topic:{t}"),
            Addressee::Group(g) => format!("group:{}", g.as_text()),
        }
    }
}

/// A named link an object carries (`read` → the blog post).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Action {
    /// Slug naming the action, unique within the activity.
    pub name: String,
    /// Absolute http(s) URL the action opens.
    pub url: String,
    /// HTTP method the target expects.
    pub method: String,
}

/// What a registry says about a type name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TypeStatus {
    /// Built in to Tidings.
    BuiltIn,
    /// Registered as a custom type (its schema is checked by the caller).
    Custom,
    /// Unknown: refused.
    Unknown,
}

/// A validation failure, mapped to HTTP 400/422 at the edge.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct ActivityError {
    /// Machine-readable code (`invalid_activity`, `limit_exceeded`, `unknown_type`).
    pub code: &'static str,
    /// Human-readable explanation.
    pub message: String,
    /// JSON path of the offending field.
    pub field: String,
}

fn invalid(field: &str, message: impl Into<String>) -> ActivityError {
    ActivityError {
        code: "invalid_activity",
        message: message.into(),
        field: field.to_owned(),
    }
}

fn too_big(field: &str, message: impl Into<String>) -> ActivityError {
    ActivityError {
        code: "limit_exceeded",
        message: message.into(),
        field: field.to_owned(),
    }
}

fn tag_error(field: &str, raw: &str, e: TagError) -> ActivityError {
    invalid(field, format!("tag {raw:?}: {}", e.message))
}

/// A validated publish, ready to be stamped with id, actor and time.
#[derive(Debug, Clone, PartialEq)]
pub struct Draft {
    /// The verb.
    pub activity_type: String,
    /// The object: either a typed object or a reference to another activity's id.
    pub object: Value,
    /// The object's type when it is an object.
    pub object_type: Option<String>,
    /// Id of the activity this one acts on (Like, Announce, Update, Delete, Undo…).
    pub object_ref: Option<String>,
    /// Audience, deduplicated and sorted.
    pub to: Vec<Addressee>,
    /// User tags, normalised, deduplicated, in first-seen order.
    pub tags: Vec<String>,
    /// Actions, in the order given.
    pub actions: Vec<Action>,
    /// The activity this replies to.
    pub in_reply_to: Option<String>,
    /// Major or minor.
    pub kind: Kind,
    /// A registered custom activity type's own top-level fields (never engine-owned keys);
    /// always empty for built-in types.
    pub extra: Map<String, Value>,
}

/// Checks a posted activity. `type_status` answers for activity and object type names.
pub fn normalize(
    input: &Value,
    limits: &Limits,
    type_status: &dyn Fn(&str) -> TypeStatus,
) -> Result<Draft, ActivityError> {
    let doc = input
        .as_object()
        .ok_or_else(|| invalid("$", "an activity must be a JSON object"))?;

    let activity_type = match doc.get("type") {
        None => "Create".to_owned(),
        Some(Value::String(t)) => t.clone(),
        Some(_) => return Err(invalid("type", "type must be a string")),
    };
    check_type_name("type", &activity_type, type_status)?;

    let in_reply_to = optional_string(doc, "inReplyTo", limits.max_string_chars)?;
    let actions = parse_actions(doc.get("actions"), limits)?;

    let (object, object_type, object_ref) = match doc.get("object") {
        Some(Value::String(reference)) => {
            let reference = reference.trim();
            if reference.is_empty() || reference.chars().count() > limits.max_string_chars {
                return Err(invalid("object", "object reference must be a non-empty id"));
            }
            (
                Value::String(reference.to_owned()),
                None,
                Some(reference.to_owned()),
            )
        }
        Some(Value::Object(obj)) => {
            let (object, object_type) = normalize_object(obj, limits, type_status)?;
            let object_ref = object.get("id").and_then(Value::as_str).map(str::to_owned);
            (object, Some(object_type), object_ref)
        }
        None => return Err(invalid("object", "object is required")),
        Some(_) => return Err(invalid("object", "object must be an object or an id")),
    };

    match activity_type.as_str() {
        "Create" if object_type.is_none() => {
            return Err(invalid("object", "Create needs an object, not a reference"));
        }
        "Update" | "Delete" | "Like" | "Dislike" | "Announce" | "Undo" | "Flag"
            if object_ref.is_none() =>
        {
            return Err(invalid(
                "object",
                format!("{activity_type} needs the id of the activity it acts on"),
            ));
        }
        _ => {}
    }

    let to = parse_audience(doc.get("to"), limits)?;
    let tags = parse_tags(doc.get("tag"), limits)?;
    let kind = if matches!(activity_type.as_str(), "Create" | "Update") {
        Kind::Major
    } else {
        Kind::Minor
    };
    // Only a registered custom verb has fields of its own, vouched for by its schema; for
    // built-in verbs nothing describes unknown top-level fields, so they stay ignored.
    let extra = if type_status(&activity_type) == TypeStatus::Custom {
        custom_fields(doc, limits)?
    } else {
        Map::new()
    };

    Ok(Draft {
        activity_type,
        object,
        object_type,
        object_ref,
        to,
        tags,
        actions,
        in_reply_to,
        kind,
        extra,
    })
}

/// The posted document's top-level fields that are not engine-owned, size-checked like object
/// fields (a `url`/`href` anywhere in them must be http(s) too).
fn custom_fields(
    doc: &Map<String, Value>,
    limits: &Limits,
) -> Result<Map<String, Value>, ActivityError> {
    let mut extra = Map::new();
    for (key, value) in doc {
        if RESERVED_KEYS.contains(&key.as_str()) {
            continue;
        }
        check_value_sizes(key, key, value, limits, 0)?;
        extra.insert(key.clone(), value.clone());
    }
    Ok(extra)
}

fn check_type_name(
    field: &str,
    name: &str,
    type_status: &dyn Fn(&str) -> TypeStatus,
) -> Result<(), ActivityError> {
    if name.is_empty() || name.len() > 64 || !name.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(invalid(field, format!("{name:?} is not a valid type name")));
    }
    if type_status(name) == TypeStatus::Unknown {
        return Err(ActivityError {
            code: "unknown_type",
            message: format!("type {name:?} is neither built in nor registered"),
            field: field.to_owned(),
        });
    }
    Ok(())
}

fn optional_string(
    doc: &Map<String, Value>,
    key: &str,
    max: usize,
) -> Result<Option<String>, ActivityError> {
    match doc.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.chars().count() > max => Err(too_big(
            key,
            format!("{key} is longer than {max} characters"),
        )),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.trim().to_owned())),
        Some(_) => Err(invalid(key, format!("{key} must be a string"))),
    }
}

fn normalize_object(
    obj: &Map<String, Value>,
    limits: &Limits,
    type_status: &dyn Fn(&str) -> TypeStatus,
) -> Result<(Value, String), ActivityError> {
    let object_type = match obj.get("type") {
        None => "Note".to_owned(),
        Some(Value::String(t)) => t.clone(),
        Some(_) => return Err(invalid("object.type", "object.type must be a string")),
    };
    check_type_name("object.type", &object_type, type_status)?;
    let mut out = Map::new();
    for (key, value) in obj {
        let field = format!("object.{key}");
        check_value_sizes(&field, key, value, limits, 0)?;
        out.insert(key.clone(), value.clone());
    }
    out.insert("type".to_owned(), Value::String(object_type.clone()));
    for url_field in ["url", "href"] {
        if let Some(v) = out.get(url_field) {
            match v.as_str() {
                Some(u) if is_http_url(u) => {}
                _ => {
                    return Err(invalid(
                        &format!("object.{url_field}"),
                        "must be an absolute http(s) URL",
                    ));
                }
            }
        }
    }
    if object_type == "Link" && !out.contains_key("url") && !out.contains_key("href") {
        return Err(invalid("object.url", "a Link needs a url"));
    }
    if object_type == "Image" && !out.contains_key("url") {
        return Err(invalid("object.url", "an Image needs a url"));
    }
    Ok((Value::Object(out), object_type))
}

fn check_value_sizes(
    field: &str,
    key: &str,
    value: &Value,
    limits: &Limits,
    depth: usize,
) -> Result<(), ActivityError> {
    if depth > 8 {
        return Err(too_big(field, "object is nested too deeply"));
    }
    match value {
        Value::String(s) => {
            let max = if key == "content" {
                limits.max_content_chars
            } else {
                limits.max_string_chars
            };
            if s.chars().count() > max {
                return Err(too_big(
                    field,
                    format!("{field} is longer than {max} characters"),
                ));
            }
            // Links anywhere in the object (attachment, icon, tag…) are as dangerous as the
            // top-level url: only absolute http(s) URLs, never `javascript:` and friends.
            // The one relative form allowed is this server's own media (`/api/v1/media/…`),
            // which attachments reference without knowing the host they are served under.
            if matches!(key, "url" | "href") && !is_http_url(s) && !crate::media::is_media_path(s) {
                return Err(invalid(
                    field,
                    "must be an absolute http(s) URL (or /api/v1/media/…)",
                ));
            }
        }
        Value::Array(items) => {
            if items.len() > 256 {
                return Err(too_big(field, format!("{field} has more than 256 items")));
            }
            for item in items {
                check_value_sizes(field, key, item, limits, depth + 1)?;
            }
        }
        Value::Object(map) => {
            if map.len() > 64 {
                return Err(too_big(field, format!("{field} has more than 64 keys")));
            }
            for (k, v) in map {
                check_value_sizes(&format!("{field}.{k}"), k, v, limits, depth + 1)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// True for absolute http(s) URLs with a host.
pub fn is_http_url(url: &str) -> bool {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    match rest {
        Some(rest) => {
            let host = rest.split(['/', '?', '#']).next().unwrap_or("");
            !host.is_empty() && !url.chars().any(char::is_whitespace)
        }
        None => false,
    }
}

fn parse_audience(value: Option<&Value>, limits: &Limits) -> Result<Vec<Addressee>, ActivityError> {
    let items: Vec<&Value> = match value {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(_)) => value.into_iter().collect(),
        Some(Value::Array(items)) => items.iter().collect(),
        Some(_) => return Err(invalid("to", "to must be a string or a list of strings")),
    };
    if items.len() > limits.max_audience {
        return Err(too_big(
            "to",
            format!("to has more than {} entries", limits.max_audience),
        ));
    }
    let mut set = BTreeSet::new();
    for item in items {
        let raw = item
            .as_str()
            .ok_or_else(|| invalid("to", "each entry of to must be a string"))?;
        let addressee = Addressee::parse(raw).ok_or_else(|| {
            invalid(
                "to",
                format!(
                    "{raw:?} is not an audience: use public, followers, circle:NAME, user:NAME, group:NAME[@CIRCLE] or topic:NAME"
                ),
            )
        })?;
        set.insert(addressee);
    }
    Ok(set.into_iter().collect())
}

fn parse_tags(value: Option<&Value>, limits: &Limits) -> Result<Vec<String>, ActivityError> {
    let items: Vec<&Value> = match value {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(_)) => value.into_iter().collect(),
        Some(Value::Array(items)) => items.iter().collect(),
        Some(_) => return Err(invalid("tag", "tag must be a string or a list of strings")),
    };
    if items.len() > limits.max_tags {
        return Err(too_big(
            "tag",
            format!("more than {} tags", limits.max_tags),
        ));
    }
    let mut tags: Vec<String> = Vec::with_capacity(items.len());
    for item in items {
        // AS2 tags may be objects with a name; accept both.
        let raw = match item {
            Value::String(s) => s.as_str(),
            Value::Object(o) => o.get("name").and_then(Value::as_str).unwrap_or(""),
            _ => return Err(invalid("tag", "each tag must be a string")),
        };
        let tag = normalize_tag(raw).map_err(|e| tag_error("tag", raw, e))?;
        if !tags.contains(&tag) {
            tags.push(tag);
        }
    }
    Ok(tags)
}

fn parse_actions(value: Option<&Value>, limits: &Limits) -> Result<Vec<Action>, ActivityError> {
    let items = match value {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(items)) => items,
        Some(_) => return Err(invalid("actions", "actions must be a list")),
    };
    if items.len() > limits.max_actions {
        return Err(too_big(
            "actions",
            format!("more than {} actions", limits.max_actions),
        ));
    }
    let mut actions: Vec<Action> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let field = format!("actions[{i}]");
        let obj = item
            .as_object()
            .ok_or_else(|| invalid(&field, "an action is {name, url, method}"))?;
        let name = obj
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| invalid(&format!("{field}.name"), "action name is required"))?;
        if !is_valid_slug(name) {
            return Err(invalid(
                &format!("{field}.name"),
                "action name must be a lowercase slug",
            ));
        }
        let url = obj
            .get("url")
            .and_then(Value::as_str)
            .ok_or_else(|| invalid(&format!("{field}.url"), "action url is required"))?;
        if !is_http_url(url) || url.chars().count() > limits.max_string_chars {
            return Err(invalid(
                &format!("{field}.url"),
                "action url must be an absolute http(s) URL",
            ));
        }
        let method = match obj.get("method") {
            None => "GET".to_owned(),
            Some(Value::String(m)) => m.to_ascii_uppercase(),
            Some(_) => {
                return Err(invalid(
                    &format!("{field}.method"),
                    "method must be a string",
                ));
            }
        };
        if !matches!(method.as_str(), "GET" | "POST" | "PUT" | "PATCH" | "DELETE") {
            return Err(invalid(
                &format!("{field}.method"),
                "method must be GET, POST, PUT, PATCH or DELETE",
            ));
        }
        if actions.iter().any(|a| a.name == name) {
            return Err(invalid(&format!("{field}.name"), "duplicate action name"));
        }
        actions.push(Action {
            name: name.to_owned(),
            url: url.to_owned(),
            method,
        });
    }
    Ok(actions)
}

impl Draft {
    /// System tags the engine adds: the object type and `sys:reply` for replies.
    pub fn system_tags(&self) -> Vec<String> {
        let mut tags = Vec::new();
        if let Some(t) = &self.object_type {
            tags.push(system_tag(t));
        }
        if self.in_reply_to.is_some() {
            tags.push(system_tag("reply"));
        }
        tags
    }

    /// Appends default actions (from a registered type) whose names are not taken.
    pub fn add_default_actions(&mut self, defaults: &[Action]) {
        for action in defaults {
            if !self.actions.iter().any(|a| a.name == action.name) {
                self.actions.push(action.clone());
            }
        }
    }

    /// Builds the stored record (without its digest): the immutable AS2 document.
    pub fn into_record(self, id: &str, actor: &str, published: &str) -> Value {
        let mut tags = self.tags.clone();
        tags.extend(self.system_tags());
        let mut doc = Map::new();
        doc.insert("@context".into(), json!(AS_CONTEXT));
        doc.insert("id".into(), json!(id));
        doc.insert("type".into(), json!(self.activity_type));
        doc.insert("actor".into(), json!(actor));
        doc.insert("published".into(), json!(published));
        doc.insert(
            "to".into(),
            Value::Array(self.to.iter().map(|a| Value::String(a.as_text())).collect()),
        );
        doc.insert("tag".into(), json!(tags));
        doc.insert("object".into(), self.object);
        if !self.actions.is_empty() {
            doc.insert("actions".into(), json!(self.actions));
        }
        if let Some(parent) = self.in_reply_to {
            doc.insert("inReplyTo".into(), json!(parent));
        }
        // Draft's fields are public, so a hand-built one could carry `digest`, `tidings` or an
        // `id`: reserved keys are skipped again and engine fields are never overwritten.
        for (key, value) in self.extra {
            if !RESERVED_KEYS.contains(&key.as_str()) {
                doc.entry(key).or_insert(value);
            }
        }
        Value::Object(doc)
    }
}

/// Tags of a stored record (user and system), for indexing.
pub fn record_tags(record: &Value) -> Vec<String> {
    record
        .get("tag")
        .and_then(Value::as_array)
        .map(|tags| {
            tags.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn builtin(name: &str) -> TypeStatus {
        if ACTIVITY_TYPES.contains(&name) || OBJECT_TYPES.contains(&name) {
            TypeStatus::BuiltIn
        } else if name == "Poll" {
            TypeStatus::Custom
        } else {
            TypeStatus::Unknown
        }
    }

    fn norm(v: Value) -> Result<Draft, ActivityError> {
        normalize(&v, &Limits::default(), &builtin)
    }

    #[test]
    fn create_note_is_normalised() {
        let d = norm(json!({
            "type": "Create",
            "object": {"type": "Note", "content": "hi"},
            "to": ["circle:Eng", "user:bob", "public", "circle:eng"],
            "tag": ["#Release", "release", "Urgent"],
            "actions": [{"name": "read", "url": "https://blog.example/p/1"}]
        }))
        .expect("valid");
        assert_eq!(d.kind, Kind::Major);
        assert_eq!(d.tags, vec!["release", "urgent"]);
        assert_eq!(
            d.to,
            vec![
                Addressee::Public,
                Addressee::Circle("eng".into()),
                Addressee::User("bob".into())
            ]
        );
        assert_eq!(d.actions[0].method, "GET");
        let rec = d.into_record("a1", "user:ana", "2026-01-01T00:00:00Z");
        assert_eq!(rec["tag"], json!(["release", "urgent", "sys:note"]));
        assert_eq!(rec["actor"], json!("user:ana"));
    }

    #[test]
    fn reply_gets_system_tag() {
        let d = norm(json!({"object": {"content": "re"}, "inReplyTo": "x"})).expect("valid");
        assert_eq!(d.system_tags(), vec!["sys:note", "sys:reply"]);
        assert_eq!(d.activity_type, "Create");
    }

    #[test]
    fn bad_inputs_are_refused_with_fields() {
        let cases = [
            (json!([]), "$"),
            (json!({"type": 3, "object": {}}), "type"),
            (json!({"type": "Explode", "object": {}}), "type"),
            (json!({"object": {"type": "Hologram"}}), "object.type"),
            (json!({"type": "Create"}), "object"),
            (json!({"type": "Create", "object": "abc"}), "object"),
            (
                json!({"type": "Like", "object": {"type": "Note"}}),
                "object",
            ),
            (json!({"object": {}, "to": ["everyone"]}), "to"),
            (json!({"object": {}, "tag": ["sys:evil"]}), "tag"),
            (json!({"object": {}, "tag": [""]}), "tag"),
            (json!({"object": {"type": "Link"}}), "object.url"),
            (
                json!({"object": {"url": "javascript:alert(1)"}}),
                "object.url",
            ),
            (
                json!({"object": {"attachment": [{"href": "javascript:alert(1)"}]}}),
                "object.attachment.href",
            ),
            (
                json!({"object": {}, "actions": [{"name": "Read", "url": "https://x.y"}]}),
                "actions[0].name",
            ),
            (
                json!({"object": {}, "actions": [{"name": "read", "url": "ftp://x"}]}),
                "actions[0].url",
            ),
            (
                json!({"object": {}, "actions": [{"name": "read", "url": "https://x", "method": "BREW"}]}),
                "actions[0].method",
            ),
        ];
        for (input, field) in cases {
            let err = norm(input.clone()).expect_err(&input.to_string());
            assert_eq!(err.field, field, "{input}");
        }
    }

    #[test]
    fn limits_are_enforced() {
        let limits = Limits {
            max_tags: 2,
            max_audience: 1,
            max_content_chars: 5,
            ..Limits::default()
        };
        let run = |v: Value| normalize(&v, &limits, &builtin);
        assert_eq!(
            run(json!({"object": {}, "tag": ["a", "b", "c"]})).map_err(|e| e.code),
            Err("limit_exceeded")
        );
        assert_eq!(
            run(json!({"object": {}, "to": ["public", "user:a"]})).map_err(|e| e.code),
            Err("limit_exceeded")
        );
        assert_eq!(
            run(json!({"object": {"content": "123456"}})).map_err(|e| e.code),
            Err("limit_exceeded")
        );
        assert!(run(json!({"object": {"content": "12345"}})).is_ok());
    }

    #[test]
    fn custom_types_pass_when_registered() {
        assert!(norm(json!({"object": {"type": "Poll"}})).is_ok());
        assert_eq!(
            norm(json!({"type": "Poll", "object": "id"})).map(|d| d.kind),
            Ok(Kind::Minor)
        );
    }

    #[test]
    fn custom_activity_keeps_its_own_fields() {
        let d = norm(json!({
            "type": "Poll",
            "object": {"content": "lunch?"},
            "question": "Pizza or sushi?",
            "choices": [{"name": "pizza", "url": "https://menu.example/pizza"}],
            "closes": {"at": "2026-01-02T00:00:00Z", "votes": 10}
        }))
        .expect("valid");
        assert_eq!(
            Value::Object(d.extra.clone()),
            json!({
                "question": "Pizza or sushi?",
                "choices": [{"name": "pizza", "url": "https://menu.example/pizza"}],
                "closes": {"at": "2026-01-02T00:00:00Z", "votes": 10}
            })
        );
        let rec = d.into_record("a1", "user:ana", "2026-01-01T00:00:00Z");
        assert_eq!(rec["question"], json!("Pizza or sushi?"));
        assert_eq!(rec["closes"]["votes"], json!(10));
        assert_eq!(rec["type"], json!("Poll"));
    }

    #[test]
    fn builtin_activity_drops_unknown_fields() {
        let d = norm(json!({
            "type": "Create",
            "object": {"content": "hi"},
            "location": "Office",
            "url": "javascript:alert(1)"
        }))
        .expect("unknown top-level fields of built-in types are ignored, not checked");
        assert!(d.extra.is_empty());
        let rec = d.into_record("a1", "user:ana", "2026-01-01T00:00:00Z");
        assert!(rec.get("location").is_none());
        assert!(rec.get("url").is_none());
    }

    #[test]
    fn reserved_keys_are_never_copied() {
        let mut doc = Map::new();
        for key in RESERVED_KEYS {
            doc.insert((*key).to_owned(), json!("forged"));
        }
        // Valid values where the engine reads them, so normalisation itself succeeds.
        doc.insert("type".into(), json!("Poll"));
        doc.insert("object".into(), json!("some-id"));
        doc.insert("to".into(), json!(["public"]));
        doc.insert("tag".into(), json!(["release"]));
        doc.insert("actions".into(), json!([]));
        doc.insert("inReplyTo".into(), json!("parent"));
        doc.insert("mine".into(), json!(1));
        let d = norm(Value::Object(doc)).expect("valid");
        assert_eq!(Value::Object(d.extra.clone()), json!({"mine": 1}));
        let rec = d.into_record("a1", "user:ana", "2026-01-01T00:00:00Z");
        for key in ["id", "actor", "published", "@context"] {
            assert_ne!(rec[key], json!("forged"), "{key}");
        }
        for key in ["cc", "bto", "bcc", "audience", "digest", "tidings"] {
            assert!(rec.get(key).is_none(), "{key}");
        }
        assert_eq!(rec["mine"], json!(1));
    }

    #[test]
    fn hand_built_extra_cannot_override_the_record() {
        let mut d = norm(json!({"type": "Poll", "object": "x"})).expect("valid");
        d.extra.insert("id".into(), json!("forged"));
        d.extra.insert("digest".into(), json!("sha256:forged"));
        d.extra.insert("tidings".into(), json!({}));
        d.extra.insert("mine".into(), json!(true));
        let rec = d.into_record("a1", "user:ana", "2026-01-01T00:00:00Z");
        assert_eq!(rec["id"], json!("a1"));
        assert!(rec.get("digest").is_none());
        assert!(rec.get("tidings").is_none());
        assert_eq!(rec["mine"], json!(true));
    }

    #[test]
    fn custom_activity_fields_are_limited_like_object_fields() {
        let limits = Limits {
            max_string_chars: 32,
            max_content_chars: 40,
            ..Limits::default()
        };
        let run = |v: Value| normalize(&v, &limits, &builtin);
        let base = |key: &str, value: Value| {
            let mut doc = json!({"type": "Poll", "object": "x"});
            doc[key] = value;
            doc
        };
        let cases = [
            (
                base("question", json!("x".repeat(33))),
                "limit_exceeded",
                "question",
            ),
            (
                base("closes", json!({"note": "x".repeat(33)})),
                "limit_exceeded",
                "closes.note",
            ),
            (
                base("choices", json!(vec![1; 257])),
                "limit_exceeded",
                "choices",
            ),
            (
                base("url", json!("javascript:alert(1)")),
                "invalid_activity",
                "url",
            ),
            (
                base("links", json!([{"href": "data:text/html,x"}])),
                "invalid_activity",
                "links.href",
            ),
        ];
        for (input, code, field) in cases {
            let err = run(input.clone()).expect_err(&input.to_string());
            assert_eq!((err.code, err.field.as_str()), (code, field), "{input}");
        }
        let mut deep = json!(1);
        for _ in 0..10 {
            deep = json!({"n": deep});
        }
        assert_eq!(
            run(base("deep", deep)).map_err(|e| e.code),
            Err("limit_exceeded")
        );
        // `content` has the content limit, as in objects.
        assert!(run(base("content", json!("x".repeat(40)))).is_ok());
        assert!(run(base("url", json!("https://ok.example/a"))).is_ok());
    }

    #[test]
    fn addressees_parse() {
        assert_eq!(
            Addressee::parse("circle:a-b"),
            Some(Addressee::Circle("a-b".into()))
        );
        assert_eq!(Addressee::parse("user:"), None);
        assert_eq!(
            Addressee::parse("group:x"),
            Some(Addressee::Group(GroupRef {
                name: "x".into(),
                circle: None
            }))
        );
        assert_eq!(Addressee::parse("group:"), None);
        assert_eq!(
            Addressee::parse("topic:Orders"),
            Some(Addressee::Topic("orders".into()))
        );
        assert_eq!(Addressee::parse("public"), Some(Addressee::Public));
    }
}

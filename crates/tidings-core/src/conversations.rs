//! Conversations and user groups: the pure rules (decision 0027).
//!
//! A **conversation** is the set of people a direct message is between. A message belongs to
//! one when it is a `Create` whose `to` names people only (`user:NAME`, no circle, group,
//! follower, public or topic audience) and the author plus those people are at least two.
//! Its id is a digest of that set, so it is a pure function of the stored record: the store's
//! projection, a rebuild, and the live channel all spell the same id without asking anyone,
//! and a reply (which inherits its parent's `to` plus the parent's author) lands in the same
//! conversation.
//!
//! A **group** is a named set of people, owned by a person (`group:NAME`, resolved among the
//! author's own groups) or by a circle (`group:NAME@CIRCLE`).

use crate::expr::normalize_slug;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;

/// A group reference as written after `group:` in `to` or an inbox filter.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GroupRef {
    /// The group's name (a slug).
    pub name: String,
    /// The circle that owns it; None: a group of the person who uses the reference.
    pub circle: Option<String>,
}

impl GroupRef {
    /// Parses `NAME` or `NAME@CIRCLE` (both slugs).
    pub fn parse(raw: &str) -> Option<GroupRef> {
        let raw = raw.trim();
        let (name, circle) = match raw.split_once('@') {
            Some((name, circle)) => (name, Some(normalize_slug(circle).ok()?)),
            None => (raw, None),
        };
        Some(GroupRef {
            name: normalize_slug(name).ok()?,
            circle,
        })
    }

    /// The canonical text (`NAME` or `NAME@CIRCLE`).
    pub fn as_text(&self) -> String {
        match &self.circle {
            Some(circle) => format!("{}@{circle}", self.name),
            None => self.name.clone(),
        }
    }
}

/// Prefix of every conversation id.
pub const CONVERSATION_PREFIX: &str = "cv_";

/// The conversation id of a participant set (usernames; order and repeats do not matter).
/// None for fewer than two people.
pub fn conversation_id<'a>(participants: impl IntoIterator<Item = &'a str>) -> Option<String> {
    let set: BTreeSet<&str> = participants.into_iter().collect();
    if set.len() < 2 {
        return None;
    }
    let mut hasher = Sha256::new();
    for name in &set {
        // Usernames are slugs (no newline), so the joined form is unambiguous.
        hasher.update(name.as_bytes());
        hasher.update(b"\n");
    }
    let digest = hasher.finalize();
    Some(format!(
        "{CONVERSATION_PREFIX}{}",
        hex::encode(digest.get(..16).unwrap_or_default())
    ))
}

/// The participants of a stored activity record that is a direct message: the author and the
/// people in `to`, sorted, deduplicated. None when the record is not one.
pub fn participants(record: &Value) -> Option<Vec<String>> {
    let to = record.get("to")?.as_array()?;
    let to: Vec<&str> = to.iter().map(Value::as_str).collect::<Option<_>>()?;
    participants_of(
        record.get("type")?.as_str()?,
        record.get("actor")?.as_str()?,
        &to,
    )
}

/// [`participants`] from a record's `type`, `actor` and `to`.
pub fn participants_of(kind: &str, actor: &str, to: &[&str]) -> Option<Vec<String>> {
    if kind != "Create" {
        return None;
    }
    let author = actor.strip_prefix("user:")?;
    let mut set = BTreeSet::new();
    set.insert(author.to_owned());
    for entry in to {
        set.insert(entry.strip_prefix("user:")?.to_owned());
    }
    (set.len() >= 2).then(|| set.into_iter().collect())
}

/// The conversation a stored record belongs to, if it is a direct message.
pub fn conversation_of(record: &Value) -> Option<String> {
    let people = participants(record)?;
    conversation_id(people.iter().map(String::as_str))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_id_depends_on_the_set_only() {
        let a = conversation_id(["ana", "bob"]);
        assert_eq!(a, conversation_id(["bob", "ana", "bob"]));
        assert_ne!(a, conversation_id(["ana", "bob", "cy"]));
        assert_eq!(conversation_id(["ana"]), None);
        assert_eq!(conversation_id(["ana", "ana"]), None);
        let id = a.unwrap_or_default();
        assert!(id.starts_with(CONVERSATION_PREFIX));
        assert_eq!(id.len(), CONVERSATION_PREFIX.len() + 32);
    }

    #[test]
    fn only_people_only_messages_are_conversations() {
        let dm = json!({"type": "Create", "actor": "user:ana", "to": ["user:bob"]});
        let reply = json!({"type": "Create", "actor": "user:bob", "to": ["user:ana", "user:bob"]});
        assert_eq!(
            participants(&dm),
            Some(vec!["ana".to_owned(), "bob".to_owned()])
        );
        assert_eq!(conversation_of(&dm), conversation_of(&reply));
        for other in [
            json!({"type": "Create", "actor": "user:ana", "to": ["user:bob", "circle:eng"]}),
            json!({"type": "Create", "actor": "user:ana", "to": ["group:friends"]}),
            json!({"type": "Create", "actor": "user:ana", "to": ["public", "user:bob"]}),
            json!({"type": "Create", "actor": "user:ana", "to": ["user:ana"]}),
            json!({"type": "Create", "actor": "user:ana", "to": []}),
            json!({"type": "Like", "actor": "user:ana", "to": ["user:bob"]}),
        ] {
            assert_eq!(conversation_of(&other), None, "{other}");
        }
    }

    #[test]
    fn group_refs() {
        assert_eq!(
            GroupRef::parse("Friends"),
            Some(GroupRef {
                name: "friends".into(),
                circle: None
            })
        );
        let shared = GroupRef::parse("leads@eng");
        assert_eq!(
            shared.as_ref().map(GroupRef::as_text).as_deref(),
            Some("leads@eng")
        );
        assert_eq!(GroupRef::parse(""), None);
        assert_eq!(GroupRef::parse("a@"), None);
        assert_eq!(GroupRef::parse("a b"), None);
    }
}

//! Moderation vocabulary: the fixed list of report reasons, the decisions a moderator takes on
//! a reported item, and how both are written into the activities that record them.
//!
//! A moderation activity is an ordinary built-in verb (Flag, Reject, Remove, Block) carrying a
//! `moderation` object. Posted documents never carry it: `activity::normalize` keeps no extra
//! fields on built-in verbs, so only the engine can write one, after it checked who may act.
//! That is what lets the report queue and the bans be re-derived from the log alone.

use serde_json::{Map, Value, json};

/// The key of the engine-written moderation object in an activity record.
pub const MODERATION_KEY: &str = "moderation";

/// Longest report comment or decision reason, in characters.
pub const MAX_NOTE_CHARS: usize = 1000;

/// Why an item is reported (PeerTube's predefined reasons, folded for text posts).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReportReason {
    /// Unsolicited advertising or repeated junk.
    Spam,
    /// Targeted attacks on a person.
    Harassment,
    /// Attacks on a group for who they are.
    Hate,
    /// Threats or glorified violence.
    Violence,
    /// Sexual content where it does not belong.
    Sexual,
    /// False information presented as fact.
    Misinformation,
    /// Against the circle's purpose or rules.
    OffTopic,
    /// Anything else (the comment says what).
    Other,
}

impl ReportReason {
    /// Every reason, in the order the UI lists them.
    pub const ALL: [ReportReason; 8] = [
        ReportReason::Spam,
        ReportReason::Harassment,
        ReportReason::Hate,
        ReportReason::Violence,
        ReportReason::Sexual,
        ReportReason::Misinformation,
        ReportReason::OffTopic,
        ReportReason::Other,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            ReportReason::Spam => "spam",
            ReportReason::Harassment => "harassment",
            ReportReason::Hate => "hate",
            ReportReason::Violence => "violence",
            ReportReason::Sexual => "sexual",
            ReportReason::Misinformation => "misinformation",
            ReportReason::OffTopic => "off_topic",
            ReportReason::Other => "other",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<ReportReason> {
        ReportReason::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

/// What a moderator does with a reported item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Decision {
    /// The reports are unfounded; the item stays.
    Dismiss,
    /// The item is taken down (retracted from every audience by the decision).
    Hide,
    /// The item is taken down and its author is removed from the circle.
    Remove,
    /// The item is taken down and its author is banned from the circle (until a date or for
    /// good): they cannot post to it or rejoin it.
    Ban,
}

impl Decision {
    /// Every decision.
    pub const ALL: [Decision; 4] = [
        Decision::Dismiss,
        Decision::Hide,
        Decision::Remove,
        Decision::Ban,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Dismiss => "dismiss",
            Decision::Hide => "hide",
            Decision::Remove => "remove",
            Decision::Ban => "ban",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<Decision> {
        Decision::ALL.into_iter().find(|d| d.as_str() == s)
    }

    /// The ActivityStreams verb that records the decision.
    pub fn verb(self) -> &'static str {
        match self {
            Decision::Dismiss => "Reject",
            Decision::Hide | Decision::Remove => "Remove",
            Decision::Ban => "Block",
        }
    }

    /// Whether the decision takes the item down.
    pub fn takes_down(self) -> bool {
        self != Decision::Dismiss
    }
}

/// The `moderation` object of a Flag: where it is reported, why.
pub fn flag_fields(circles: &[String], reason: ReportReason, comment: &str) -> Map<String, Value> {
    let mut extra = Map::new();
    extra.insert(
        MODERATION_KEY.into(),
        json!({"circles": circles, "reason": reason.as_str(), "comment": comment}),
    );
    extra
}

/// The `moderation` object of a decision.
pub fn decision_fields(
    circle: &str,
    decision: Decision,
    reason: &str,
    until: Option<&str>,
    flags: &[String],
) -> Map<String, Value> {
    let mut fields = json!({
        "circle": circle,
        "decision": decision.as_str(),
        "reason": reason,
        "resolves": flags,
    });
    if let (Some(until), Some(map)) = (until, fields.as_object_mut()) {
        map.insert("until".into(), json!(until));
    }
    let mut extra = Map::new();
    extra.insert(MODERATION_KEY.into(), fields);
    extra
}

/// A report read back from a Flag record.
#[derive(Debug, Clone, PartialEq)]
pub struct FlagRecord {
    /// Circles the item was reported in.
    pub circles: Vec<String>,
    /// Why.
    pub reason: ReportReason,
    /// The reporter's words.
    pub comment: String,
}

/// Reads the moderation object of a Flag record; None for a Flag a person posted by hand.
pub fn read_flag(record: &Value) -> Option<FlagRecord> {
    let m = record.get(MODERATION_KEY)?;
    Some(FlagRecord {
        circles: m
            .get("circles")?
            .as_array()?
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        reason: ReportReason::parse(m.get("reason")?.as_str()?)?,
        comment: m
            .get("comment")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
    })
}

/// A decision read back from its record.
#[derive(Debug, Clone, PartialEq)]
pub struct DecisionRecord {
    /// The circle it was taken in.
    pub circle: String,
    /// What was decided.
    pub decision: Decision,
    /// The moderator's reason.
    pub reason: String,
    /// A ban's end (RFC 3339), None for good.
    pub until: Option<String>,
    /// Ids of the Flags it resolves.
    pub resolves: Vec<String>,
}

/// Reads the moderation object of a decision record; None for an activity without one.
pub fn read_decision(record: &Value) -> Option<DecisionRecord> {
    let m = record.get(MODERATION_KEY)?;
    Some(DecisionRecord {
        circle: m.get("circle")?.as_str()?.to_owned(),
        decision: Decision::parse(m.get("decision")?.as_str()?)?,
        reason: m
            .get("reason")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        until: m.get("until").and_then(Value::as_str).map(str::to_owned),
        resolves: m
            .get("resolves")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default(),
    })
}

/// Whether a ban ending at `until` (RFC 3339 UTC, as the engine writes it) still holds at
/// `now` (same form). Both come from the engine's own clock format, so they compare as text.
pub fn ban_holds(until: Option<&str>, now: &str) -> bool {
    until.is_none_or(|u| u > now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for r in ReportReason::ALL {
            assert_eq!(ReportReason::parse(r.as_str()), Some(r));
        }
        for d in Decision::ALL {
            assert_eq!(Decision::parse(d.as_str()), Some(d));
        }
        assert_eq!(ReportReason::parse("SPAM"), None);
        assert_eq!(Decision::parse("delete"), None);
    }

    #[test]
    fn records_read_back_what_was_written() {
        let flag = Value::Object(flag_fields(&["eng".into()], ReportReason::Spam, "ads"));
        assert_eq!(
            read_flag(&flag),
            Some(FlagRecord {
                circles: vec!["eng".into()],
                reason: ReportReason::Spam,
                comment: "ads".into()
            })
        );
        let d = Value::Object(decision_fields(
            "eng",
            Decision::Ban,
            "repeat",
            Some("2030-01-01T00:00:00.000Z"),
            &["f1".into()],
        ));
        let back = read_decision(&d).expect("decision");
        assert_eq!(back.decision, Decision::Ban);
        assert_eq!(back.until.as_deref(), Some("2030-01-01T00:00:00.000Z"));
        assert_eq!(back.resolves, vec!["f1".to_owned()]);
        assert_eq!(read_flag(&json!({"type": "Flag"})), None);
    }

    #[test]
    fn bans_end_when_their_date_passes() {
        let now = "2026-12-01T12:00:00.000Z";
        assert!(ban_holds(None, now));
        assert!(ban_holds(Some("2026-12-02T00:00:00.000Z"), now));
        assert!(!ban_holds(Some("2026-12-01T11:59:59.999Z"), now));
    }
}

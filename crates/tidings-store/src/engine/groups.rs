//! User groups (decision 0027): named sets of people, owned by a person or shared within a
//! circle (owned by the circle, managed by its owner and moderators).
//!
//! A group itself (`user_groups`: id, name, owner) is mutable state like a circle. Its
//! membership is history: every change is an unlisted `Add` or `Remove` activity in the log
//! (actor: who made the change, object `user:NAME`, target `group:ID`), and `group_members` is
//! their projection, written in the activity's transaction and replayed by `tidings rebuild`
//! ([`replay_all`]). Only the engine writes such activities: a built-in verb posted through
//! the API keeps no `target` (decision 0012), so no one can forge a membership.
//!
//! Addressing `group:NAME` resolves the group among the author's own, `group:NAME@CIRCLE`
//! among the circle's (the author must be an active member), to the members *at publish
//! time*, written as addressees of the activity: someone removed before a post never gets it,
//! and routing (fan-out or merge) treats them exactly like people named one by one.

use super::activities::publish_in;
use super::circles::{circle_by_name, membership, put_member_in};
use super::users::user_by_name;
use super::{Effects, Shared, Store};
use crate::model::{
    Circle, MembershipChange, MembershipState, PublishInput, Role, User, UserGroup, UserStatus,
};
use crate::sql::{Connection, OptionalExtension, params};
use crate::{StoreError, StoreResult, now_rfc3339};
use serde_json::{Map, Value};
use tidings_core::activity::{Draft, Kind};
use tidings_core::conversations::GroupRef;

/// Most people one request may add to a group.
pub const MAX_GROUP_CHANGE: usize = 256;

/// A group's row.
#[derive(Debug, Clone)]
struct GroupRow {
    id: String,
    name: String,
    owner_user_id: Option<i64>,
    /// The owning circle, for a circle's group.
    circle: Option<Circle>,
    created_at: String,
}

/// The group `reference` names for `person`, if it exists (whether they may use it is
/// decided by the caller).
fn find(conn: &Connection, reference: &GroupRef, person: &User) -> StoreResult<Option<GroupRow>> {
    let (sql, owner, circle) = match &reference.circle {
        None => (
            "SELECT id, name, owner_user_id, created_at FROM user_groups
             WHERE owner_user_id = ?1 AND name = ?2",
            person.id,
            None,
        ),
        Some(circle_name) => {
            let Ok(circle) = circle_by_name(conn, circle_name) else {
                return Ok(None);
            };
            (
                "SELECT id, name, owner_user_id, created_at FROM user_groups
                 WHERE owner_circle_id = ?1 AND name = ?2",
                circle.id,
                Some(circle),
            )
        }
    };
    Ok(conn
        .prepare_cached(sql)?
        .query_row(params![owner, reference.name], |r| {
            Ok(GroupRow {
                id: r.get(0)?,
                name: r.get(1)?,
                owner_user_id: r.get(2)?,
                circle: None,
                created_at: r.get(3)?,
            })
        })
        .optional()?
        .map(|row| GroupRow { circle, ..row }))
}

/// Whether `person` is an active member of `circle`.
fn active_member(conn: &Connection, circle: &Circle, person: &User) -> StoreResult<bool> {
    Ok(membership(conn, circle.id, person.id)?.is_some_and(|m| m.state == MembershipState::Active))
}

/// Whether `person` may address the group, filter by it and see it: its owner, or an active
/// member of the circle that owns it.
fn may_use(conn: &Connection, group: &GroupRow, person: &User) -> StoreResult<bool> {
    match &group.circle {
        None => Ok(group.owner_user_id == Some(person.id)),
        Some(circle) => active_member(conn, circle, person),
    }
}

/// Whether `person` may change the group: its owner, or the owning circle's owner and
/// moderators (and the instance's admins).
fn may_manage(conn: &Connection, group: &GroupRow, person: &User) -> StoreResult<bool> {
    match &group.circle {
        None => Ok(group.owner_user_id == Some(person.id)),
        Some(circle) => Ok(person.is_admin
            || membership(conn, circle.id, person.id)?
                .is_some_and(|m| m.state == MembershipState::Active && m.role >= Role::Moderator)),
    }
}

/// The group `reference` names, if `person` may use it; "not found" otherwise (so a group's
/// existence does not leak to outsiders).
fn usable(conn: &Connection, reference: &GroupRef, person: &User) -> StoreResult<GroupRow> {
    match find(conn, reference, person)? {
        Some(group) if may_use(conn, &group, person)? || may_manage(conn, &group, person)? => {
            Ok(group)
        }
        _ => Err(StoreError::not_found("group")),
    }
}

/// Members' user ids (not deleted), sorted.
fn member_ids(conn: &Connection, group_id: &str) -> StoreResult<Vec<i64>> {
    Ok(conn
        .prepare_cached(
            "SELECT g.user_id FROM group_members g JOIN users u ON u.id = g.user_id
             WHERE g.group_id = ?1 AND u.status != 'deleted' ORDER BY g.user_id",
        )?
        .query_map([group_id], |r| r.get(0))?
        .collect::<Result<_, _>>()?)
}

/// The people `group:REF` reaches when `author` publishes to it: the members now. An
/// unknown group, or one the author may not use, is `unknown_group` (422, nothing stored).
pub(crate) fn audience(
    conn: &Connection,
    reference: &GroupRef,
    author: &User,
) -> StoreResult<Vec<i64>> {
    match find(conn, reference, author)? {
        Some(group) if may_use(conn, &group, author)? => member_ids(conn, &group.id),
        _ => Err(StoreError::unprocessable(
            "unknown_group",
            format!(
                "no group {:?} you may address (your own groups are group:NAME, a circle's \
                 group:NAME@CIRCLE, for its members)",
                reference.as_text()
            ),
        )),
    }
}

fn to_model(conn: &Connection, group: &GroupRow) -> StoreResult<UserGroup> {
    let members = conn
        .prepare_cached(
            "SELECT u.username FROM group_members g JOIN users u ON u.id = g.user_id
             WHERE g.group_id = ?1 AND u.status != 'deleted' ORDER BY u.username",
        )?
        .query_map([&group.id], |r| r.get::<_, String>(0))?
        .collect::<Result<Vec<_>, _>>()?;
    let owner = match group.owner_user_id {
        Some(id) => Some(super::users::user_by_id(conn, id)?.username),
        None => None,
    };
    let circle = group.circle.as_ref().map(|c| c.name.clone());
    let reference = GroupRef {
        name: group.name.clone(),
        circle: circle.clone(),
    };
    Ok(UserGroup {
        id: group.id.clone(),
        name: group.name.clone(),
        address: format!("group:{}", reference.as_text()),
        owner,
        circle,
        members,
        created_at: group.created_at.clone(),
    })
}

/// A person to add: an existing, not deleted user.
fn person(conn: &Connection, name: &str) -> StoreResult<User> {
    user_by_name(conn, name)
        .ok()
        .filter(|u| u.status != UserStatus::Deleted)
        .ok_or_else(|| StoreError::unprocessable("unknown_user", format!("no user {name:?}")))
}

/// Adds (or removes) one member: the `Add`/`Remove` activity in `actor`'s outbox and the
/// projection row, in the caller's transaction. Nothing happens when nothing would change.
fn change(
    conn: &Connection,
    shared: &Shared,
    fx: &mut Effects,
    actor: &User,
    group_id: &str,
    member: &User,
    add: bool,
) -> StoreResult<()> {
    let present: bool = conn
        .prepare_cached(
            "SELECT EXISTS(SELECT 1 FROM group_members WHERE group_id = ?1 AND user_id = ?2)",
        )?
        .query_row(params![group_id, member.id], |r| r.get(0))?;
    if present == add {
        return Ok(());
    }
    let object = format!("user:{}", member.username);
    let mut extra = Map::new();
    extra.insert("target".into(), Value::String(format!("group:{group_id}")));
    let draft = Draft {
        activity_type: if add { "Add" } else { "Remove" }.to_owned(),
        object: Value::String(object.clone()),
        object_type: None,
        object_ref: Some(object),
        to: Vec::new(),
        tags: Vec::new(),
        actions: Vec::new(),
        in_reply_to: None,
        kind: Kind::Minor,
        extra,
    };
    let published = publish_in(
        conn,
        shared,
        fx,
        PublishInput {
            actor: actor.clone(),
            draft,
            idempotency_key: None,
        },
    )?;
    apply(conn, group_id, member.id, add, published.seq)
}

/// Writes one membership change into the projection.
fn apply(conn: &Connection, group_id: &str, user: i64, add: bool, seq: i64) -> StoreResult<()> {
    if add {
        conn.prepare_cached(
            "INSERT INTO group_members(group_id, user_id, since_seq) VALUES (?1, ?2, ?3)
             ON CONFLICT DO NOTHING",
        )?
        .execute(params![group_id, user, seq])?;
    } else {
        conn.prepare_cached("DELETE FROM group_members WHERE group_id = ?1 AND user_id = ?2")?
            .execute(params![group_id, user])?;
    }
    Ok(())
}

/// Whether a publish is a group membership change the engine made (an `Add`/`Remove` whose
/// `target` is a group): such activities are unlisted, like a Join.
pub(crate) fn is_membership_change(draft: &Draft) -> bool {
    matches!(draft.activity_type.as_str(), "Add" | "Remove")
        && draft
            .extra
            .get("target")
            .and_then(Value::as_str)
            .is_some_and(|t| t.starts_with("group:"))
}

/// Re-derives `group_members` from the log: every engine-made Add/Remove, in log order, of
/// groups that still exist. Runs inside the caller's transaction; returns the changes applied.
pub(crate) fn replay_all(conn: &Connection) -> StoreResult<u64> {
    conn.execute_batch("DELETE FROM group_members")?;
    let mut applied = 0u64;
    let mut last = 0i64;
    loop {
        let rows: Vec<(i64, String, String)> = conn
            .prepare_cached(
                "SELECT a.seq, a.type, a.body FROM activities a
                 WHERE a.seq > ?1 AND NOT a.listed AND a.type IN ('Add', 'Remove')
                 ORDER BY a.seq LIMIT 500",
            )?
            .query_map([last], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<Result<_, _>>()?;
        let Some(&(end, _, _)) = rows.last() else {
            break;
        };
        for (seq, kind, body) in rows {
            let record: Value = serde_json::from_str(&body)?;
            let group = record
                .get("target")
                .and_then(Value::as_str)
                .and_then(|t| t.strip_prefix("group:"));
            let member = record
                .get("object")
                .and_then(Value::as_str)
                .and_then(|o| o.strip_prefix("user:"));
            let (Some(group), Some(member)) = (group, member) else {
                continue;
            };
            let exists: bool = conn
                .prepare_cached("SELECT EXISTS(SELECT 1 FROM user_groups WHERE id = ?1)")?
                .query_row([group], |r| r.get(0))?;
            let user: Option<i64> = conn
                .prepare_cached("SELECT id FROM users WHERE username = ?1")?
                .query_row([member], |r| r.get(0))
                .optional()?;
            if let (true, Some(user)) = (exists, user) {
                apply(conn, group, user, kind == "Add", seq)?;
                applied += 1;
            }
        }
        last = end;
    }
    Ok(applied)
}

/// Checks a group name (a slug) and gives its normal form.
fn group_name(raw: &str) -> StoreResult<String> {
    tidings_core::expr::normalize_slug(raw).map_err(|e| {
        StoreError::unprocessable("invalid_group_name", format!("name {raw:?}: {}", e.message))
    })
}

impl Store {
    /// Creates a group owned by `actor` (or, with `circle`, by that circle: its owner and
    /// moderators create and manage those) with its first members.
    pub async fn create_group(
        &self,
        actor: User,
        name: String,
        circle: Option<String>,
        members: Vec<String>,
    ) -> StoreResult<UserGroup> {
        let shared = self.shared.clone();
        self.write(move |conn, fx| {
            let name = group_name(&name)?;
            if members.len() > MAX_GROUP_CHANGE {
                return Err(StoreError::unprocessable(
                    "limit_exceeded",
                    format!("at most {MAX_GROUP_CHANGE} members per request"),
                ));
            }
            let owner_circle = match &circle {
                None => None,
                Some(circle_name) => {
                    let circle = circle_by_name(conn, circle_name)?;
                    let manages = actor.is_admin
                        || membership(conn, circle.id, actor.id)?.is_some_and(|m| {
                            m.state == MembershipState::Active && m.role >= Role::Moderator
                        });
                    if !manages {
                        if !super::circles::can_read_circle(conn, &circle, Some(&actor))? {
                            return Err(StoreError::not_found("circle"));
                        }
                        return Err(StoreError::forbidden(
                            "not_circle_moderator",
                            "only a circle's owner and moderators make its groups",
                        ));
                    }
                    Some(circle)
                }
            };
            let reference = GroupRef {
                name: name.clone(),
                circle: owner_circle.as_ref().map(|c| c.name.clone()),
            };
            if find(conn, &reference, &actor)?.is_some() {
                return Err(StoreError::conflict(
                    "group_name_taken",
                    format!("a group named {:?} exists", reference.as_text()),
                ));
            }
            let people = members
                .iter()
                .map(|m| person(conn, m))
                .collect::<StoreResult<Vec<_>>>()?;
            let id = uuid::Uuid::now_v7().to_string();
            let created_at = now_rfc3339();
            conn.prepare_cached(
                "INSERT INTO user_groups(id, name, owner_user_id, owner_circle_id, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![
                id,
                name,
                owner_circle.is_none().then_some(actor.id),
                owner_circle.as_ref().map(|c| c.id),
                created_at
            ])?;
            for member in &people {
                change(conn, &shared, fx, &actor, &id, member, true)?;
            }
            let group = find(conn, &reference, &actor)?.ok_or(StoreError::not_found("group"))?;
            to_model(conn, &group)
        })
        .await
    }

    /// The groups `viewer` may use: their own, then those of circles they are an active member
    /// of, by name.
    pub async fn user_groups(&self, viewer: User) -> StoreResult<Vec<UserGroup>> {
        self.read(move |conn| {
            let ids: Vec<(String, Option<String>)> = conn
                .prepare_cached(
                    "SELECT g.name, NULL FROM user_groups g WHERE g.owner_user_id = ?1
                     UNION ALL
                     SELECT g.name, c.name FROM user_groups g
                     JOIN circles c ON c.id = g.owner_circle_id
                     JOIN memberships m ON m.circle_id = c.id
                     WHERE m.user_id = ?1 AND m.state = 'active'",
                )?
                .query_map([viewer.id], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<_, _>>()?;
            let mut out = Vec::with_capacity(ids.len());
            for (name, circle) in ids {
                if let Some(group) = find(conn, &GroupRef { name, circle }, &viewer)? {
                    out.push(to_model(conn, &group)?);
                }
            }
            out.sort_by(|a, b| (&a.circle, &a.name).cmp(&(&b.circle, &b.name)));
            Ok(out)
        })
        .await
    }

    /// One group; "not found" unless `viewer` may use or manage it.
    pub async fn group(&self, viewer: User, reference: GroupRef) -> StoreResult<UserGroup> {
        self.read(move |conn| {
            let group = usable(conn, &reference, &viewer)?;
            to_model(conn, &group)
        })
        .await
    }

    /// User ids of a group's members, for an inbox filter (`from=group:NAME`).
    pub async fn group_member_ids(
        &self,
        viewer: User,
        reference: GroupRef,
    ) -> StoreResult<Vec<i64>> {
        self.read(move |conn| {
            let group = usable(conn, &reference, &viewer)?;
            member_ids(conn, &group.id)
        })
        .await
    }

    /// Adds people to a group (each one an `Add` activity); people already in it are skipped.
    pub async fn add_group_members(
        &self,
        actor: User,
        reference: GroupRef,
        names: Vec<String>,
    ) -> StoreResult<UserGroup> {
        self.change_members(actor, reference, names, true).await
    }

    /// Removes people from a group (each one a `Remove` activity).
    pub async fn remove_group_members(
        &self,
        actor: User,
        reference: GroupRef,
        names: Vec<String>,
    ) -> StoreResult<UserGroup> {
        self.change_members(actor, reference, names, false).await
    }

    async fn change_members(
        &self,
        actor: User,
        reference: GroupRef,
        names: Vec<String>,
        add: bool,
    ) -> StoreResult<UserGroup> {
        let shared = self.shared.clone();
        self.write(move |conn, fx| {
            if names.len() > MAX_GROUP_CHANGE {
                return Err(StoreError::unprocessable(
                    "limit_exceeded",
                    format!("at most {MAX_GROUP_CHANGE} members per request"),
                ));
            }
            let group = usable(conn, &reference, &actor)?;
            if !may_manage(conn, &group, &actor)? {
                return Err(StoreError::forbidden(
                    "not_group_manager",
                    "only the group's owner (or its circle's owner and moderators) change it",
                ));
            }
            for name in &names {
                let member = if add {
                    person(conn, name)?
                } else {
                    user_by_name(conn, name).map_err(|_| StoreError::not_found("group member"))?
                };
                change(conn, &shared, fx, &actor, &group.id, &member, add)?;
            }
            to_model(conn, &group)
        })
        .await
    }

    /// Deletes a group. Its history stays in the log; a later group of the same name is
    /// another group (another id), so a rebuild never gives it the old members.
    pub async fn delete_group(&self, actor: User, reference: GroupRef) -> StoreResult<()> {
        self.write(move |conn, _fx| {
            let group = usable(conn, &reference, &actor)?;
            if !may_manage(conn, &group, &actor)? {
                return Err(StoreError::forbidden(
                    "not_group_manager",
                    "only the group's owner (or its circle's owner and moderators) delete it",
                ));
            }
            conn.prepare_cached("DELETE FROM group_members WHERE group_id = ?1")?
                .execute([&group.id])?;
            conn.prepare_cached("DELETE FROM user_groups WHERE id = ?1")?
                .execute([&group.id])?;
            Ok(())
        })
        .await
    }

    /// Adds every member of a group `actor` may use to a circle in one transaction, as
    /// `PUT /circles/{c}/members/{user}` by a moderator would, one by one.
    pub async fn add_group_to_circle(
        &self,
        circle: &str,
        actor: User,
        reference: GroupRef,
    ) -> StoreResult<Vec<MembershipChange>> {
        let circle = circle.to_owned();
        let shared = self.shared.clone();
        self.write(move |conn, fx| {
            let group = usable(conn, &reference, &actor)?;
            let names = to_model(conn, &group)?.members;
            names
                .iter()
                .map(|name| put_member_in(conn, &shared, fx, &circle, name, &actor, None, None))
                .collect()
        })
        .await
    }
}

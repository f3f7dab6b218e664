//! Circles and memberships.

use super::activities::publish_in;
use super::subscriptions::{close_circle_subscriptions, subscribe};
use super::users::user_by_name;
use super::{Effects, Shared, Store};
use crate::hot::Effect;
use crate::model::{Circle, JoinPolicy, Membership, MembershipState, Role, User, Visibility};
use crate::model::{MembershipChange, NewCircle, PublishInput};
use crate::sql::{Connection, OptionalExtension, Row, params};
use crate::{StoreError, StoreResult, now_rfc3339};
use tidings_core::activity::{Addressee, Draft};
use tidings_core::expr::{Pattern, SubscriptionExpr};

const CIRCLE_BY_NAME: &str = "SELECT c.id, c.name, c.display_name, c.description, c.visibility,
    c.join_policy, (SELECT username FROM users WHERE id = c.owner_id), 0, c.created_at, c.archived_at
    FROM circles c WHERE c.name = ?1";

pub(crate) const CIRCLE_COLUMNS: &str =
    "c.id, c.name, c.display_name, c.description, c.visibility, c.join_policy,
    (SELECT username FROM users WHERE id = c.owner_id),
    (SELECT COUNT(*) FROM memberships m WHERE m.circle_id = c.id AND m.state = 'active'),
    c.created_at, c.archived_at";

pub(crate) fn circle_from_row(row: &Row<'_>) -> crate::sql::Result<Circle> {
    let visibility: String = row.get(4)?;
    let policy: String = row.get(5)?;
    Ok(Circle {
        id: row.get(0)?,
        name: row.get(1)?,
        display_name: row.get(2)?,
        description: row.get(3)?,
        visibility: if visibility == "private" {
            Visibility::Private
        } else {
            Visibility::Public
        },
        join_policy: match policy.as_str() {
            "approval" => JoinPolicy::Approval,
            "invite" => JoinPolicy::Invite,
            _ => JoinPolicy::Open,
        },
        owner: row.get(6)?,
        member_count: row.get(7)?,
        created_at: row.get(8)?,
        archived_at: row.get(9)?,
        my_membership: None,
    })
}

fn role_from_db(s: &str) -> Role {
    match s {
        "owner" => Role::Owner,
        "moderator" => Role::Moderator,
        _ => Role::Member,
    }
}

fn role_to_db(role: Role) -> &'static str {
    match role {
        Role::Owner => "owner",
        Role::Moderator => "moderator",
        Role::Member => "member",
    }
}

fn membership_from_row(row: &Row<'_>) -> crate::sql::Result<Membership> {
    let state: String = row.get(3)?;
    Ok(Membership {
        circle: row.get(0)?,
        username: row.get(1)?,
        role: role_from_db(&row.get::<_, String>(2)?),
        state: if state == "active" {
            MembershipState::Active
        } else {
            MembershipState::Requested
        },
        since: row.get(4)?,
    })
}

const MEMBERSHIP_SELECT: &str = "SELECT c.name, u.username, m.role, m.state, m.created_at
    FROM memberships m JOIN circles c ON c.id = m.circle_id JOIN users u ON u.id = m.user_id";

/// A circle by name, without visibility checks and without its member count (the hot paths
/// that call this, publish and membership changes, do not need the count).
pub(crate) fn circle_by_name(conn: &Connection, name: &str) -> StoreResult<Circle> {
    conn.prepare_cached(CIRCLE_BY_NAME)?
        .query_row([name], circle_from_row)
        .optional()?
        .ok_or(StoreError::not_found("circle"))
}

/// Active members of a circle.
fn member_count(conn: &Connection, circle_id: i64) -> StoreResult<i64> {
    Ok(conn
        .prepare_cached(
            "SELECT COUNT(*) FROM memberships WHERE circle_id = ?1 AND state = 'active'",
        )?
        .query_row([circle_id], |r| r.get(0))?)
}

/// The membership of a user in a circle, if any.
pub(crate) fn membership(
    conn: &Connection,
    circle_id: i64,
    user_id: i64,
) -> StoreResult<Option<Membership>> {
    Ok(conn
        .prepare_cached(&format!(
            "{MEMBERSHIP_SELECT} WHERE m.circle_id = ?1 AND m.user_id = ?2"
        ))?
        .query_row(params![circle_id, user_id], membership_from_row)
        .optional()?)
}

/// Whether `viewer` may read the circle's stream.
pub(crate) fn can_read_circle(
    conn: &Connection,
    circle: &Circle,
    viewer: Option<&User>,
) -> StoreResult<bool> {
    if circle.visibility == Visibility::Public {
        return Ok(true);
    }
    let Some(viewer) = viewer else {
        return Ok(false);
    };
    if viewer.is_admin {
        return Ok(true);
    }
    Ok(membership(conn, circle.id, viewer.id)?.is_some_and(|m| m.state == MembershipState::Active))
}

/// A circle the viewer may see; private circles are "not found" to outsiders.
pub(crate) fn visible_circle(
    conn: &Connection,
    name: &str,
    viewer: Option<&User>,
) -> StoreResult<Circle> {
    let mut circle = circle_by_name(conn, name)?;
    if !can_read_circle(conn, &circle, viewer)? {
        return Err(StoreError::not_found("circle"));
    }
    circle.member_count = member_count(conn, circle.id)?;
    if let Some(viewer) = viewer {
        circle.my_membership = membership(conn, circle.id, viewer.id)?;
    }
    Ok(circle)
}

fn default_subscription(circle: &str) -> SubscriptionExpr {
    SubscriptionExpr {
        tag: Pattern::Any,
        circle: Pattern::Exact(circle.to_owned()),
    }
}

fn insert_membership(
    conn: &Connection,
    fx: &mut Effects,
    circle_id: i64,
    user_id: i64,
    role: Role,
    state: &str,
) -> StoreResult<()> {
    conn.prepare_cached(
        "INSERT INTO memberships(circle_id, user_id, role, state, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT(circle_id, user_id) DO UPDATE SET role = excluded.role, state = excluded.state",
    )?
    .execute(params![circle_id, user_id, role_to_db(role), state, now_rfc3339()])?;
    fx.push(Effect::Member {
        user: user_id,
        circle: circle_id,
        active: state == "active",
    });
    Ok(())
}

/// Makes a user an active member with `role`; a user who was not one already also gets the
/// default `*@circle` subscription (a role change must not re-add one they removed).
fn enroll(
    conn: &Connection,
    fx: &mut Effects,
    circle_id: i64,
    circle_name: &str,
    user_id: i64,
    role: Role,
    was_active: bool,
) -> StoreResult<()> {
    insert_membership(conn, fx, circle_id, user_id, role, "active")?;
    if !was_active {
        subscribe(conn, fx, user_id, &default_subscription(circle_name).into())?;
    }
    Ok(())
}

fn ensure_not_archived(circle: &Circle) -> StoreResult<()> {
    if circle.archived_at.is_some() {
        return Err(StoreError::unprocessable(
            "circle_archived",
            format!("circle {:?} is archived and read-only", circle.name),
        ));
    }
    Ok(())
}

/// Usernames of a circle's active owner and moderators.
pub(super) fn circle_keepers(conn: &Connection, circle_id: i64) -> StoreResult<Vec<String>> {
    let mut stmt = conn.prepare_cached(
        "SELECT u.username FROM memberships m JOIN users u ON u.id = m.user_id
         WHERE m.circle_id = ?1 AND m.state = 'active' AND m.role IN ('owner', 'moderator')
           AND u.status = 'active'
         ORDER BY u.username",
    )?;
    let names = stmt
        .query_map([circle_id], |r| r.get(0))?
        .collect::<Result<Vec<String>, _>>()?;
    Ok(names)
}

/// Whether a role may manage members.
pub(super) fn manages(m: &Option<Membership>) -> Option<Role> {
    m.as_ref()
        .filter(|m| m.state == MembershipState::Active && m.role >= Role::Moderator)
        .map(|m| m.role)
}

/// [`Store::put_member`] inside a write job (also used to add a whole group at once).
#[allow(clippy::too_many_arguments)]
pub(crate) fn put_member_in(
    conn: &Connection,
    shared: &Shared,
    fx: &mut Effects,
    circle_name: &str,
    target: &str,
    actor: &User,
    role: Option<Role>,
    join: Option<Draft>,
) -> StoreResult<MembershipChange> {
    let circle = circle_by_name(conn, circle_name)?;
    let actor_membership = membership(conn, circle.id, actor.id)?;
    let actor_role = manages(&actor_membership);
    let readable =
        circle.visibility == Visibility::Public || actor.is_admin || actor_membership.is_some();
    if !readable {
        return Err(StoreError::not_found("circle"));
    }
    ensure_not_archived(&circle)?;
    let target_user = user_by_name(conn, target)?;
    if target_user.status != crate::model::UserStatus::Active {
        return Err(StoreError::unprocessable(
            "user_inactive",
            format!("user {target:?} is suspended or deleted"),
        ));
    }
    if let Some(until) = super::moderation::ban(conn, circle.id, target_user.id)? {
        return Err(super::moderation::banned_error(
            &circle.name,
            until.as_deref(),
        ));
    }
    let existing = membership(conn, circle.id, target_user.id)?;
    let created = existing.is_none();
    let by_manager = actor_role.is_some() || actor.is_admin;

    if by_manager {
        let role = role.unwrap_or_else(|| existing.as_ref().map_or(Role::Member, |m| m.role));
        if role == Role::Owner || existing.as_ref().is_some_and(|m| m.role == Role::Owner) {
            if role != Role::Owner || existing.as_ref().is_none_or(|m| m.role != Role::Owner) {
                return Err(StoreError::forbidden(
                    "owner_is_fixed",
                    "the owner's role cannot be given or changed",
                ));
            }
        } else if role == Role::Moderator && actor_role != Some(Role::Owner) && !actor.is_admin {
            return Err(StoreError::forbidden(
                "owner_only",
                "only the owner appoints moderators",
            ));
        } else if existing.as_ref().is_some_and(|m| m.role == Role::Moderator)
            && actor_role != Some(Role::Owner)
            && !actor.is_admin
            && target_user.id != actor.id
        {
            return Err(StoreError::forbidden(
                "owner_only",
                "only the owner changes a moderator's role",
            ));
        }
        let was_active = existing
            .as_ref()
            .is_some_and(|m| m.state == MembershipState::Active);
        enroll(
            conn,
            fx,
            circle.id,
            &circle.name,
            target_user.id,
            role,
            was_active,
        )?;
    } else if target_user.id == actor.id {
        if existing
            .as_ref()
            .is_some_and(|m| m.state == MembershipState::Active)
        {
            // Already a member: nothing changes, and roles cannot be self-granted.
            if role.is_some_and(|r| Some(r) != existing.as_ref().map(|m| m.role)) {
                return Err(StoreError::forbidden(
                    "not_circle_moderator",
                    "only owners and moderators change roles",
                ));
            }
        } else {
            if role.is_some_and(|r| r != Role::Member) {
                return Err(StoreError::forbidden(
                    "not_circle_moderator",
                    "only owners and moderators grant roles",
                ));
            }
            match circle.join_policy {
                JoinPolicy::Open => {
                    enroll(
                        conn,
                        fx,
                        circle.id,
                        &circle.name,
                        actor.id,
                        Role::Member,
                        false,
                    )?;
                    // In the same transaction: the keepers hear of every join (the
                    // Join is unlisted, so it is their notification, not an item).
                    let keepers = circle_keepers(conn, circle.id)?;
                    if let Some(mut draft) = join.filter(|_| !keepers.is_empty()) {
                        draft.to = keepers.into_iter().map(Addressee::User).collect();
                        publish_in(
                            conn,
                            shared,
                            fx,
                            PublishInput {
                                actor: actor.clone(),
                                draft,
                                idempotency_key: None,
                            },
                        )?;
                    }
                }
                JoinPolicy::Approval => {
                    insert_membership(conn, fx, circle.id, actor.id, Role::Member, "requested")?;
                }
                JoinPolicy::Invite => {
                    return Err(StoreError::forbidden(
                        "invite_only",
                        "this circle is invite-only: a moderator must add you",
                    ));
                }
            }
        }
    } else {
        return Err(StoreError::forbidden(
            "not_circle_moderator",
            "only owners and moderators add other people",
        ));
    }
    let membership = membership(conn, circle.id, target_user.id)?
        .ok_or(StoreError::Corrupt("membership vanished".into()))?;
    Ok(MembershipChange {
        membership,
        created,
    })
}

impl Store {
    /// Creates a circle owned by `owner`, who joins it and subscribes to `*@name`.
    pub async fn create_circle(&self, owner: User, new: NewCircle) -> StoreResult<Circle> {
        self.write(move |conn, fx| {
            let exists: bool = conn
                .prepare_cached("SELECT EXISTS(SELECT 1 FROM circles WHERE name = ?1)")?
                .query_row([&new.name], |r| r.get(0))?;
            if exists {
                return Err(StoreError::conflict(
                    "circle_name_taken",
                    format!("a circle named {:?} exists", new.name),
                ));
            }
            let circle_id: i64 = conn.prepare_cached(
                "INSERT INTO circles(name, display_name, description, visibility, join_policy, owner_id, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) RETURNING id",
            )?
            .query_row(params![
                new.name,
                new.display_name,
                new.description,
                match new.visibility {
                    Visibility::Public => "public",
                    Visibility::Private => "private",
                },
                match new.join_policy {
                    JoinPolicy::Open => "open",
                    JoinPolicy::Approval => "approval",
                    JoinPolicy::Invite => "invite",
                },
                owner.id,
                now_rfc3339()
            ], |r| r.get(0))?;
            fx.push(Effect::Circle {
                id: circle_id,
                name: new.name.clone(),
                public: new.visibility == Visibility::Public,
            });
            enroll(conn, fx, circle_id, &new.name, owner.id, Role::Owner, false)?;
            visible_circle(conn, &new.name, Some(&owner))
        })
        .await
    }

    /// A circle as `viewer` may see it.
    pub async fn circle(&self, name: &str, viewer: Option<User>) -> StoreResult<Circle> {
        let name = name.to_owned();
        self.read(move |conn| visible_circle(conn, &name, viewer.as_ref()))
            .await
    }

    /// Public circles and the viewer's own, matching `q` on name or description.
    pub async fn search_circles(
        &self,
        q: String,
        viewer: Option<User>,
        limit: i64,
    ) -> StoreResult<Vec<Circle>> {
        self.read(move |conn| {
            let pattern = format!(
                "%{}%",
                q.to_lowercase().replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")
            );
            let viewer_id = viewer.as_ref().map(|v| v.id).unwrap_or(-1);
            let is_admin = viewer.as_ref().is_some_and(|v| v.is_admin);
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {CIRCLE_COLUMNS} FROM circles c
                 WHERE (c.visibility = 'public' OR ?3
                        OR EXISTS(SELECT 1 FROM memberships m WHERE m.circle_id = c.id
                                  AND m.user_id = ?2 AND m.state = 'active'))
                   AND (lower(c.name) LIKE ?1 ESCAPE '\\' OR lower(c.display_name) LIKE ?1 ESCAPE '\\'
                        OR lower(c.description) LIKE ?1 ESCAPE '\\')
                 ORDER BY (SELECT COUNT(*) FROM memberships m WHERE m.circle_id = c.id AND m.state = 'active') DESC, c.name
                 LIMIT ?4"
            ))?;
            let mut circles = stmt
                .query_map(params![pattern, viewer_id, is_admin, limit], circle_from_row)?
                .collect::<Result<Vec<_>, _>>()?;
            if let Some(viewer) = &viewer {
                for circle in &mut circles {
                    circle.my_membership = membership(conn, circle.id, viewer.id)?;
                }
            }
            Ok(circles)
        })
        .await
    }

    /// Archives a circle (owner or admin): read-only afterwards.
    pub async fn archive_circle(&self, name: &str, actor: User) -> StoreResult<Circle> {
        let name = name.to_owned();
        self.write(move |conn, _fx| {
            let circle = visible_circle(conn, &name, Some(&actor))?;
            let role = manages(&circle.my_membership);
            if role != Some(Role::Owner) && !actor.is_admin {
                return Err(StoreError::forbidden(
                    "not_circle_owner",
                    "only the owner or an admin can archive a circle",
                ));
            }
            ensure_not_archived(&circle)?;
            conn.prepare_cached("UPDATE circles SET archived_at = ?2 WHERE id = ?1")?
                .execute(params![circle.id, now_rfc3339()])?;
            visible_circle(conn, &name, Some(&actor))
        })
        .await
    }

    /// Members (and pending requests, for moderators) of a circle the viewer can see.
    pub async fn circle_members(&self, name: &str, viewer: User) -> StoreResult<Vec<Membership>> {
        let name = name.to_owned();
        self.read(move |conn| {
            let circle = visible_circle(conn, &name, Some(&viewer))?;
            let show_requests = manages(&circle.my_membership).is_some() || viewer.is_admin;
            let mut stmt = conn.prepare_cached(&format!(
                "{MEMBERSHIP_SELECT} WHERE m.circle_id = ?1 AND (m.state = 'active' OR ?2)
                 ORDER BY CASE m.role WHEN 'owner' THEN 0 WHEN 'moderator' THEN 1 ELSE 2 END, u.username"
            ))?;
            Ok(stmt
                .query_map(params![circle.id, show_requests], membership_from_row)?
                .collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    /// A user's enrolments that the viewer may see.
    pub async fn user_circles(&self, username: &str, viewer: User) -> StoreResult<Vec<Membership>> {
        let username = username.to_owned();
        self.read(move |conn| {
            let user = user_by_name(conn, &username)?;
            let mine = user.id == viewer.id || viewer.is_admin;
            let mut stmt = conn.prepare_cached(&format!(
                "{MEMBERSHIP_SELECT} WHERE m.user_id = ?1
                   AND (?3 OR (m.state = 'active' AND (c.visibility = 'public'
                        OR EXISTS(SELECT 1 FROM memberships v WHERE v.circle_id = c.id
                                  AND v.user_id = ?2 AND v.state = 'active'))))
                 ORDER BY c.name"
            ))?;
            Ok(stmt
                .query_map(params![user.id, viewer.id, mine], membership_from_row)?
                .collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    /// Adds `target` to a circle. Self-joins follow the join policy (open: member; approval:
    /// request); owners and moderators add anyone, approve requests and set roles.
    /// `join` is published as the caller's Join activity, addressed to the circle's owner and
    /// moderators, when the call makes them a member of an open circle by themselves (not when
    /// a moderator adds or approves them).
    pub async fn put_member(
        &self,
        circle_name: &str,
        target: &str,
        actor: User,
        role: Option<Role>,
        join: Option<Draft>,
    ) -> StoreResult<MembershipChange> {
        let circle_name = circle_name.to_owned();
        let target = target.to_owned();
        let shared = self.shared.clone();
        self.write(move |conn, fx| {
            put_member_in(conn, &shared, fx, &circle_name, &target, &actor, role, join)
        })
        .await
    }

    /// Removes `target` from a circle (leave, reject a request, or remove a member).
    pub async fn remove_member(
        &self,
        circle_name: &str,
        target: &str,
        actor: User,
    ) -> StoreResult<()> {
        let circle_name = circle_name.to_owned();
        let target = target.to_owned();
        self.write(move |conn, fx| {
            let circle = circle_by_name(conn, &circle_name)?;
            let actor_membership = membership(conn, circle.id, actor.id)?;
            if circle.visibility == Visibility::Private
                && actor_membership.is_none()
                && !actor.is_admin
            {
                return Err(StoreError::not_found("circle"));
            }
            let target_user = user_by_name(conn, &target)?;
            let existing = membership(conn, circle.id, target_user.id)?
                .ok_or(StoreError::not_found("membership"))?;
            let actor_role = manages(&actor_membership);
            if existing.role == Role::Owner {
                return Err(StoreError::conflict(
                    "owner_cannot_leave",
                    "the owner cannot leave or be removed; archive the circle instead",
                ));
            }
            let allowed = target_user.id == actor.id
                || actor.is_admin
                || actor_role == Some(Role::Owner)
                || (actor_role == Some(Role::Moderator) && existing.role == Role::Member);
            if !allowed {
                return Err(StoreError::forbidden(
                    "not_circle_moderator",
                    "only owners and moderators remove other people",
                ));
            }
            conn.prepare_cached("DELETE FROM memberships WHERE circle_id = ?1 AND user_id = ?2")?
                .execute(params![circle.id, target_user.id])?;
            fx.push(Effect::Member {
                user: target_user.id,
                circle: circle.id,
                active: false,
            });
            close_circle_subscriptions(conn, fx, target_user.id, circle.id)?;
            Ok(())
        })
        .await
    }
}

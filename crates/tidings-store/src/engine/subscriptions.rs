//! `tag@circle` subscriptions and saved searches (`"tokio panic"@eng`, decision 0028).
//! Removal closes a subscription at the current log position rather than deleting it, so
//! inboxes merged at read time stay exactly what was routed.
//!
//! A saved search is always fanned out on write (the router matches its text; its audience
//! is one person), so it never becomes a read-time window of the hot index: it has a
//! `search_word` and no `tag`.

use super::circles::{can_read_circle, circle_by_name};
use super::users::last_seq;
use super::{Effects, Store};
use crate::hot::Effect;
use crate::model::{Subscription, User};
use crate::sql::{Connection, OptionalExtension, params};
use crate::{StoreError, StoreResult, now_rfc3339};
use std::sync::Arc;
use tidings_core::expr::Pattern;
use tidings_core::saved::SubscriptionTerm;

fn pattern_value(p: &Pattern) -> Option<&str> {
    match p {
        Pattern::Any => None,
        Pattern::Exact(s) => Some(s.as_str()),
    }
}

/// Opens a subscription (or returns the open one with the same expression).
/// Returns the subscription and whether it was created.
pub(crate) fn subscribe(
    conn: &Connection,
    fx: &mut Effects,
    user_id: i64,
    term: &SubscriptionTerm,
) -> StoreResult<(Subscription, bool)> {
    let text = term.to_string();
    let existing = conn
        .prepare_cached(
            "SELECT id, expr, created_at FROM subscriptions
             WHERE user_id = ?1 AND expr = ?2 AND until_seq IS NULL",
        )?
        .query_row(params![user_id, text], |r| {
            Ok(Subscription {
                id: r.get(0)?,
                expr: r.get(1)?,
                created_at: r.get(2)?,
            })
        })
        .optional()?;
    if let Some(existing) = existing {
        return Ok((existing, false));
    }
    let circle_id = match term.circle() {
        Pattern::Any => None,
        Pattern::Exact(name) => Some(circle_by_name(conn, name)?.id),
    };
    let (tag, search_word) = match term {
        SubscriptionTerm::Tag(expr) => (pattern_value(&expr.tag), None),
        SubscriptionTerm::Search(search) => (None, search.key_word()),
    };
    let created_at = now_rfc3339();
    let since = last_seq(conn)?;
    let id: i64 = conn
        .prepare_cached(
            "INSERT INTO subscriptions(user_id, expr, tag, circle_id, since_seq, created_at,
                                       search_word)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) RETURNING id",
        )?
        .query_row(
            params![
                user_id,
                text,
                tag,
                circle_id,
                since,
                created_at,
                search_word
            ],
            |r| r.get(0),
        )?;
    if search_word.is_none() {
        fx.push(Effect::Subscribe {
            user: user_id,
            id,
            circle: circle_id,
            tag: tag.map(str::to_owned),
            since,
            via: Arc::from(format!("subscription:{id}:{text}")),
        });
    }
    Ok((
        Subscription {
            id,
            expr: text,
            created_at,
        },
        true,
    ))
}

/// Closes every open subscription of a user on one circle (on leaving it).
pub(crate) fn close_circle_subscriptions(
    conn: &Connection,
    fx: &mut Effects,
    user_id: i64,
    circle_id: i64,
) -> StoreResult<()> {
    let until = last_seq(conn)?;
    fx.push(Effect::Close {
        user: user_id,
        id: None,
        circle: Some(circle_id),
        until,
    });
    conn.prepare_cached(
        "UPDATE subscriptions SET until_seq = ?3
         WHERE user_id = ?1 AND circle_id = ?2 AND until_seq IS NULL",
    )?
    .execute(params![user_id, circle_id, until])?;
    Ok(())
}

impl Store {
    /// The user's open subscriptions, oldest first.
    pub async fn subscriptions(&self, user_id: i64) -> StoreResult<Vec<Subscription>> {
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT id, expr, created_at FROM subscriptions
                 WHERE user_id = ?1 AND until_seq IS NULL ORDER BY id",
            )?;
            Ok(stmt
                .query_map([user_id], |r| {
                    Ok(Subscription {
                        id: r.get(0)?,
                        expr: r.get(1)?,
                        created_at: r.get(2)?,
                    })
                })?
                .collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    /// Subscribes `user` to a `tag@circle` expression or a saved search. A named circle must
    /// be readable by the user (public, or a member of a private one). Returns the
    /// subscription and whether it is new.
    pub async fn add_subscription(
        &self,
        user: User,
        expr: impl Into<SubscriptionTerm>,
    ) -> StoreResult<(Subscription, bool)> {
        let expr: SubscriptionTerm = expr.into();
        self.write(move |conn, fx| {
            if let Pattern::Exact(name) = expr.circle() {
                let circle = circle_by_name(conn, name)?;
                if !can_read_circle(conn, &circle, Some(&user))? {
                    return Err(StoreError::not_found("circle"));
                }
            }
            subscribe(conn, fx, user.id, &expr)
        })
        .await
    }

    /// Removes (closes) one of the user's subscriptions.
    pub async fn remove_subscription(&self, user_id: i64, id: i64) -> StoreResult<()> {
        self.write(move |conn, fx| {
            let until = last_seq(conn)?;
            let changed = conn
                .prepare_cached(
                    "UPDATE subscriptions SET until_seq = ?3
                     WHERE id = ?1 AND user_id = ?2 AND until_seq IS NULL",
                )?
                .execute(params![id, user_id, until])?;
            if changed == 0 {
                return Err(StoreError::not_found("subscription"));
            }
            fx.push(Effect::Close {
                user: user_id,
                id: Some(id),
                circle: None,
                until,
            });
            Ok(())
        })
        .await
    }
}

//! The authorization fuzz: a random community (users, public and private circles with every
//! join policy, memberships and roles, follows, subscriptions, posts, replies, likes, shares,
//! retractions, hides, markers, sessions) is built and then hit with random requests by random
//! users against the routes that take other people's ids. Every answer is checked against
//! [`Model`], a plain reference model of who may read or write what:
//!
//! - every write gets the status the model predicts, and the model only changes when it
//!   succeeds (so a refused write that changed something shows up in a later read);
//! - every listing a user can page through (outboxes, circle streams, members, a user's
//!   circles, replies, one's subscriptions, search results) holds exactly what the model says
//!   that user may see; the inbox holds nothing they may not see;
//! - every activity anywhere in any answer (feeds and notifications included) must be one the
//!   caller may read: zero cross-user reads.
//!
//! `TIDINGS_AUTHZ_REQUESTS` (default 3000, the CI smoke) sets the number of requests,
//! `TIDINGS_AUTHZ_SEED` replays a run (the seed is printed). `bench/authz-fuzz.sh` runs 100k in
//! release. The server config is [`campaign_config`]: anything that would refuse requests for
//! reasons other than authorization (rate limits) is turned off there.

mod common;

use common::{Resp, TestServer};
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use tidings_server::config::ServerConfig;
use tidings_store::StoreConfig;

/// The server configuration the campaign runs with, spelled out: open registration, default
/// publish limits. Rate limits (when the server has them) must be off here, or the 429s would
/// be reported as authorization mismatches.
fn campaign_config() -> ServerConfig {
    ServerConfig {
        registration_open: true,
        ..ServerConfig::default()
    }
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Role {
    Member,
    Moderator,
    Owner,
}

impl Role {
    fn as_str(self) -> &'static str {
        match self {
            Role::Member => "member",
            Role::Moderator => "moderator",
            Role::Owner => "owner",
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Policy {
    Open,
    Approval,
    Invite,
}

#[derive(Debug)]
struct Circle {
    public: bool,
    policy: Policy,
    archived: bool,
    /// user → (role, active); `false` is a pending request.
    members: BTreeMap<usize, (Role, bool)>,
}

/// What the model knows of one activity: enough to decide who may read it.
#[derive(Debug, Clone, Default)]
struct Activity {
    author: usize,
    /// Shown in outboxes and streams (not Delete, Undo).
    listed: bool,
    public: bool,
    followers: bool,
    users: BTreeSet<usize>,
    circles: BTreeSet<String>,
    retracted: bool,
    /// A Create (note or reply): may be replied to, liked, shared.
    create: bool,
    in_reply_to: Option<String>,
    /// The search word its text carries (notes and replies).
    word: Option<&'static str>,
}

#[derive(Debug)]
struct Sub {
    owner: usize,
    expr: String,
    circle: Option<String>,
    open: bool,
}

/// The reference model: who is who, who may read and write what.
#[derive(Default)]
struct Model {
    names: Vec<String>,
    follows: BTreeSet<(usize, usize)>,
    circles: BTreeMap<String, Circle>,
    activities: BTreeMap<String, Activity>,
    /// Ids in publish order (for picking targets).
    ids: Vec<String>,
    subs: BTreeMap<i64, Sub>,
    hides: BTreeSet<(usize, String)>,
    /// (user, target, "Like"|"Announce") → the live reaction's id.
    reactions: BTreeMap<(usize, String, &'static str), String>,
    /// (follower, followee) → the Follow's id.
    follow_ids: BTreeMap<(usize, usize), String>,
}

impl Model {
    fn active(&self, u: usize, c: &str) -> bool {
        self.circles
            .get(c)
            .and_then(|c| c.members.get(&u))
            .is_some_and(|m| m.1)
    }

    fn can_read_circle(&self, u: usize, c: &str) -> bool {
        self.circles.get(c).is_some_and(|circle| circle.public) || self.active(u, c)
    }

    /// The rule of DESIGN: author, public, addressed, followers (following now), or a circle
    /// that is public or that the reader is an active member of.
    fn readable(&self, u: usize, a: &Activity) -> bool {
        a.author == u
            || a.public
            || a.users.contains(&u)
            || (a.followers && self.follows.contains(&(u, a.author)))
            || a.circles.iter().any(|c| self.can_read_circle(u, c))
    }

    fn readable_id(&self, u: usize, id: &str) -> bool {
        self.activities.get(id).is_some_and(|a| self.readable(u, a))
    }

    /// A manager's role (active owner or moderator).
    fn manages(&self, u: usize, c: &str) -> Option<Role> {
        self.circles
            .get(c)
            .and_then(|c| c.members.get(&u))
            .filter(|m| m.1 && m.0 >= Role::Moderator)
            .map(|m| m.0)
    }

    /// The status a publish to `circles` by `u` gets from its audience (None: accepted).
    fn audience_refusal(&self, u: usize, circles: &BTreeSet<String>) -> Option<u16> {
        for c in circles {
            let Some(circle) = self.circles.get(c) else {
                return Some(422);
            };
            if !self.active(u, c) {
                return Some(if self.can_read_circle(u, c) { 403 } else { 422 });
            }
            if circle.archived {
                return Some(422);
            }
        }
        None
    }

    fn open_sub(&self, u: usize, expr: &str) -> Option<i64> {
        self.subs
            .iter()
            .find(|(_, s)| s.owner == u && s.open && s.expr == expr)
            .map(|(id, _)| *id)
    }

    /// Makes `u` an active member; a new one gets `*@c` (ids learnt from the next listing).
    fn enroll(&mut self, u: usize, c: &str, role: Role) -> bool {
        let circle = self.circles.get_mut(c).expect("circle");
        let was_active = circle.members.get(&u).is_some_and(|m| m.1);
        circle.members.insert(u, (role, true));
        !was_active
    }
}

/// One user as the campaign drives them.
struct Actor {
    token: String,
    /// Subscriptions the model expects that have no id yet (learnt from GET /subscriptions).
    pending_subs: Vec<(String, Option<String>)>,
}

struct Campaign {
    server: TestServer,
    model: Model,
    actors: Vec<Actor>,
    rng: StdRng,
    requests: usize,
    /// Requests by outcome, for the report.
    allowed: usize,
    refused: usize,
    checked_items: usize,
    circle_seq: usize,
}

/// Whether a JSON object is a stored activity (has the digest every stored record carries).
fn is_activity(v: &serde_json::Map<String, Value>) -> bool {
    v.get("digest")
        .and_then(Value::as_str)
        .is_some_and(|d| d.starts_with("sha256:"))
        && v.get("id").is_some_and(Value::is_string)
        && v.get("actor").is_some()
}

fn collect_activities<'a>(v: &'a Value, out: &mut Vec<&'a serde_json::Map<String, Value>>) {
    match v {
        Value::Object(map) => {
            if is_activity(map) {
                out.push(map);
            }
            for child in map.values() {
                collect_activities(child, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|i| collect_activities(i, out)),
        _ => {}
    }
}

fn page_ids(body: &Value) -> Vec<String> {
    TestServer::ids(body)
}

impl Campaign {
    async fn send(&mut self, u: usize, method: Method, path: &str, body: Option<Value>) -> Resp {
        self.requests += 1;
        if std::env::var_os("TIDINGS_AUTHZ_TRACE").is_some() {
            eprintln!(
                "{} {} {method} {path} {body:?}",
                self.requests, self.model.names[u]
            );
        }
        let token = self.actors[u].token.clone();
        let resp = self
            .server
            .request(method.clone(), path, Some(&token), body, &[])
            .await;
        assert!(
            resp.status.as_u16() < 500,
            "{method} {path} as {}: server error {} {:?}",
            self.model.names[u],
            resp.status,
            resp.body
        );
        if resp.status.is_success() {
            self.allowed += 1;
            self.no_leak(u, &method, path, &resp.body);
        } else {
            self.refused += 1;
        }
        resp
    }

    /// Zero cross-user reads: every activity anywhere in an answer is readable by the caller.
    fn no_leak(&mut self, u: usize, method: &Method, path: &str, body: &Value) {
        let mut found = Vec::new();
        collect_activities(body, &mut found);
        for activity in found {
            self.checked_items += 1;
            let id = activity["id"].as_str().unwrap_or_default();
            match self.model.activities.get(id) {
                Some(a) => assert!(
                    self.model.readable(u, a),
                    "LEAK: {method} {path} showed {} activity {id} ({a:?}) they may not read; \
                     its circles: {:?}",
                    self.model.names[u],
                    a.circles
                        .iter()
                        .map(|c| (
                            c,
                            self.model
                                .circles
                                .get(c)
                                .map(|c| (c.public, c.members.get(&u)))
                        ))
                        .collect::<Vec<_>>()
                ),
                // One the model has not registered yet: the caller's own (the answer to
                // their write), or a Join, which is addressed to the circle's keepers.
                None => {
                    let me = format!("user:{}", self.model.names[u]);
                    let to_me = activity["to"]
                        .as_array()
                        .is_some_and(|to| to.iter().any(|t| t == &json!(me)));
                    let actor_is_me = activity["actor"] == json!(me);
                    assert!(
                        actor_is_me || (activity["type"] == "Join" && to_me),
                        "LEAK: {method} {path} showed {} an unknown activity {activity:?}",
                        self.model.names[u]
                    );
                }
            }
        }
    }

    fn expect(&self, u: usize, what: &str, resp: &Resp, expected: u16) {
        assert_eq!(
            resp.status.as_u16(),
            expected,
            "{what} as {}: expected {expected}, got {} {:?}",
            self.model.names[u],
            resp.status,
            resp.body
        );
    }

    fn pick_user(&mut self) -> usize {
        self.rng.random_range(0..self.model.names.len())
    }

    fn pick_circle(&mut self) -> String {
        let names: Vec<&String> = self.model.circles.keys().collect();
        if names.is_empty() || self.rng.random_ratio(1, 20) {
            return "no-such-circle".into();
        }
        (*names.choose(&mut self.rng).expect("circle")).clone()
    }

    /// Any activity id (mostly other people's), sometimes one that does not exist.
    fn pick_activity(&mut self, creates_only: bool) -> String {
        let ids: Vec<&String> = self
            .model
            .ids
            .iter()
            .filter(|id| !creates_only || self.model.activities[*id].create)
            .collect();
        if ids.is_empty() || self.rng.random_ratio(1, 25) {
            return uuid::Uuid::now_v7().to_string();
        }
        (*ids.choose(&mut self.rng).expect("id")).clone()
    }

    fn register(&mut self, id: &str, activity: Activity) {
        self.model.ids.push(id.to_owned());
        self.model.activities.insert(id.to_owned(), activity);
    }

    fn created_id(resp: &Resp) -> String {
        resp.body["id"].as_str().expect("created id").to_owned()
    }

    // ---- writes ------------------------------------------------------------------------

    async fn publish_note(&mut self, u: usize) {
        let mut to = Vec::new();
        let mut a = Activity {
            author: u,
            listed: true,
            create: true,
            ..Activity::default()
        };
        if self.rng.random_ratio(1, 3) {
            to.push("public".to_owned());
            a.public = true;
        }
        if self.rng.random_ratio(1, 3) {
            to.push("followers".to_owned());
            a.followers = true;
        }
        if self.rng.random_ratio(1, 2) {
            let c = self.pick_circle();
            to.push(format!("circle:{c}"));
            a.circles.insert(c);
        }
        if to.is_empty() || self.rng.random_ratio(1, 3) {
            let x = self.pick_user();
            to.push(format!("user:{}", self.model.names[x]));
            a.users.insert(x);
        }
        let word = *WORDS.choose(&mut self.rng).expect("word");
        a.word = Some(word);
        let expected = self.model.audience_refusal(u, &a.circles).unwrap_or(201);
        let resp = self
            .send(
                u,
                Method::POST,
                "/outbox",
                Some(json!({"object": {"type": "Note", "content": format!("note {word}")}, "to": to})),
            )
            .await;
        self.expect(u, &format!("publish to {to:?}"), &resp, expected);
        if expected == 201 {
            let id = Self::created_id(&resp);
            self.register(&id, a);
        }
    }

    async fn reply(&mut self, u: usize) {
        let parent_id = self.pick_activity(true);
        let expected_and_audience = match self.model.activities.get(&parent_id) {
            Some(p) if self.model.readable(u, p) && !p.retracted => {
                let mut a = Activity {
                    author: u,
                    listed: true,
                    create: true,
                    public: p.public,
                    followers: p.followers,
                    users: p.users.clone(),
                    circles: p.circles.clone(),
                    in_reply_to: Some(parent_id.clone()),
                    word: Some("reply"),
                    ..Activity::default()
                };
                if p.author != u {
                    a.users.insert(p.author);
                }
                let refusal = self.model.audience_refusal(u, &a.circles);
                (refusal.unwrap_or(201), Some(a))
            }
            _ => (422, None),
        };
        let resp = self
            .send(
                u,
                Method::POST,
                "/outbox",
                Some(
                    json!({"object": {"type": "Note", "content": "reply"}, "inReplyTo": parent_id}),
                ),
            )
            .await;
        self.expect(
            u,
            &format!("reply to {parent_id}"),
            &resp,
            expected_and_audience.0,
        );
        if let (201, Some(a)) = expected_and_audience {
            let id = Self::created_id(&resp);
            self.register(&id, a);
        }
    }

    async fn react(&mut self, u: usize, kind: &'static str) {
        let target = self.pick_activity(true);
        let path_kind = if kind == "Like" { "like" } else { "share" };
        let key = (u, target.clone(), kind);
        let undo = self.rng.random_ratio(1, 3);
        let path = format!("/activities/{target}/{path_kind}");
        if undo {
            let live = self.model.reactions.get(&key).cloned();
            let expected = if live.is_some() { 201 } else { 404 };
            let resp = self.send(u, Method::DELETE, &path, None).await;
            self.expect(u, &format!("un{path_kind} {target}"), &resp, expected);
            if let Some(reaction) = live {
                let id = Self::created_id(&resp);
                self.register(
                    &id,
                    Activity {
                        author: u,
                        ..Activity::default()
                    },
                );
                self.model.reactions.remove(&key);
                if let Some(r) = self.model.activities.get_mut(&reaction) {
                    r.retracted = true;
                }
            }
            return;
        }
        let (expected, audience) = match self.model.activities.get(&target) {
            Some(t) if self.model.readable(u, t) => {
                if t.retracted {
                    (410, None)
                } else if self.model.reactions.contains_key(&key) {
                    (409, None)
                } else {
                    let mut a = Activity {
                        author: u,
                        listed: true,
                        followers: t.public,
                        ..Activity::default()
                    };
                    if t.author != u {
                        a.users.insert(t.author);
                    }
                    (201, Some(a))
                }
            }
            _ => (404, None),
        };
        let resp = self.send(u, Method::POST, &path, None).await;
        self.expect(u, &format!("{path_kind} {target}"), &resp, expected);
        if let Some(a) = audience {
            let id = Self::created_id(&resp);
            self.register(&id, a);
            self.model.reactions.insert(key, id);
        }
    }

    async fn retract(&mut self, u: usize) {
        // Notes, replies, likes and shares (not follows: unfollowing takes those back).
        let ids: Vec<String> = self
            .model
            .ids
            .iter()
            .filter(|id| {
                let a = &self.model.activities[*id];
                a.listed && (a.create || !self.model.follow_ids.values().any(|f| f == *id))
            })
            .cloned()
            .collect();
        let target = if ids.is_empty() || self.rng.random_ratio(1, 25) {
            uuid::Uuid::now_v7().to_string()
        } else if self.rng.random_ratio(1, 2) {
            // Mostly one's own, so retractions happen.
            let own: Vec<&String> = ids
                .iter()
                .filter(|id| self.model.activities[*id].author == u)
                .collect();
            own.choose(&mut self.rng)
                .map(|s| (*s).clone())
                .unwrap_or_else(|| ids[0].clone())
        } else {
            ids.choose(&mut self.rng).expect("id").clone()
        };
        let expected = match self.model.activities.get(&target) {
            Some(t) if self.model.readable(u, t) => {
                if t.retracted {
                    410
                } else if t.author != u {
                    403
                } else {
                    201
                }
            }
            _ => 404,
        };
        let resp = self
            .send(
                u,
                Method::POST,
                &format!("/activities/{target}/retract"),
                None,
            )
            .await;
        self.expect(u, &format!("retract {target}"), &resp, expected);
        if expected == 201 {
            let id = Self::created_id(&resp);
            self.register(
                &id,
                Activity {
                    author: u,
                    ..Activity::default()
                },
            );
            if let Some(t) = self.model.activities.get_mut(&target) {
                t.retracted = true;
            }
            self.model.reactions.retain(|_, r| r != &target);
        }
    }

    async fn hide(&mut self, u: usize) {
        let target = self.pick_activity(false);
        let expected = if self.model.readable_id(u, &target) {
            204
        } else {
            404
        };
        let resp = self
            .send(u, Method::DELETE, &format!("/inbox/{target}"), None)
            .await;
        self.expect(u, &format!("hide {target}"), &resp, expected);
        if expected == 204 {
            self.model.hides.insert((u, target));
        }
    }

    async fn follow(&mut self, u: usize) {
        let x = self.pick_user();
        let name = self.model.names[x].clone();
        let path = format!("/users/{name}/follow");
        if self.rng.random_ratio(1, 3) {
            let follow_id = self.model.follow_ids.get(&(u, x)).cloned();
            let resp = self.send(u, Method::DELETE, &path, None).await;
            self.expect(
                u,
                &format!("unfollow {name}"),
                &resp,
                if follow_id.is_some() { 201 } else { 404 },
            );
            if let Some(follow_id) = follow_id {
                let id = Self::created_id(&resp);
                self.register(
                    &id,
                    Activity {
                        author: u,
                        ..Activity::default()
                    },
                );
                self.model.follows.remove(&(u, x));
                self.model.follow_ids.remove(&(u, x));
                if let Some(f) = self.model.activities.get_mut(&follow_id) {
                    f.retracted = true;
                }
            }
            return;
        }
        let expected = if x == u {
            422
        } else if self.model.follows.contains(&(u, x)) {
            409
        } else {
            201
        };
        let resp = self.send(u, Method::POST, &path, None).await;
        self.expect(u, &format!("follow {name}"), &resp, expected);
        if expected == 201 {
            let id = Self::created_id(&resp);
            self.register(
                &id,
                Activity {
                    author: u,
                    listed: true,
                    users: BTreeSet::from([x]),
                    ..Activity::default()
                },
            );
            self.model.follows.insert((u, x));
            self.model.follow_ids.insert((u, x), id);
        }
    }

    async fn create_circle(&mut self, u: usize) {
        self.circle_seq += 1;
        let taken = self.rng.random_ratio(1, 10) && !self.model.circles.is_empty();
        let name = if taken {
            self.pick_circle()
        } else {
            format!("c{}", self.circle_seq)
        };
        let public = self.rng.random_ratio(1, 2);
        let policy = *[Policy::Open, Policy::Approval, Policy::Invite]
            .choose(&mut self.rng)
            .expect("policy");
        let policy_text = match policy {
            Policy::Open => "open",
            Policy::Approval => "approval",
            Policy::Invite => "invite",
        };
        let expected = if self.model.circles.contains_key(&name) {
            409
        } else {
            201
        };
        let resp = self
            .send(
                u,
                Method::POST,
                "/circles",
                Some(json!({"name": name, "description": "a circle", "visibility": if public {"public"} else {"private"}, "join_policy": policy_text})),
            )
            .await;
        self.expect(u, &format!("create circle {name}"), &resp, expected);
        if expected == 201 {
            self.model.circles.insert(
                name.clone(),
                Circle {
                    public,
                    policy,
                    archived: false,
                    members: BTreeMap::from([(u, (Role::Owner, true))]),
                },
            );
            self.add_pending_sub(u, &name);
        }
    }

    fn add_pending_sub(&mut self, u: usize, circle: &str) {
        let expr = format!("*@{circle}");
        if self.model.open_sub(u, &expr).is_none() {
            self.actors[u]
                .pending_subs
                .push((expr, Some(circle.to_owned())));
        }
    }

    async fn put_member(&mut self, u: usize) {
        let c = self.pick_circle();
        // Mostly oneself (joins, requests), else someone else (adds, approvals, roles).
        let t = if self.rng.random_ratio(1, 2) {
            u
        } else {
            self.pick_user()
        };
        let role = match self.rng.random_range(0..6) {
            0 => Some(Role::Moderator),
            1 => Some(Role::Member),
            2 => Some(Role::Owner),
            _ => None,
        };
        let expected = self.expected_put(u, &c, t, role);
        let path = format!("/circles/{c}/members/{}", self.model.names[t]);
        let body = role.map(|r| json!({"role": r.as_str()}));
        let resp = self.send(u, Method::PUT, &path, body).await;
        self.expect(u, &format!("put {path} role {role:?}"), &resp, expected.0);
        if let Some(change) = expected.1 {
            match change {
                Change::Enroll(role) => {
                    if self.model.enroll(t, &c, role) {
                        self.add_pending_sub(t, &c);
                    }
                }
                Change::Request => {
                    self.model
                        .circles
                        .get_mut(&c)
                        .expect("circle")
                        .members
                        .insert(t, (Role::Member, false));
                }
                Change::Nothing => {}
            }
        }
    }

    fn expected_put(
        &self,
        u: usize,
        c: &str,
        t: usize,
        role: Option<Role>,
    ) -> (u16, Option<Change>) {
        let Some(circle) = self.model.circles.get(c) else {
            return (404, None);
        };
        let mine = circle.members.get(&u).copied();
        if !(circle.public || mine.is_some()) {
            return (404, None);
        }
        if circle.archived {
            return (422, None);
        }
        let existing = circle.members.get(&t).copied();
        let created = if existing.is_none() { 201 } else { 200 };
        let actor_role = self.model.manages(u, c);
        if actor_role.is_some() {
            let role = role.unwrap_or(existing.map_or(Role::Member, |m| m.0));
            let existing_owner = existing.is_some_and(|m| m.0 == Role::Owner);
            if role == Role::Owner || existing_owner {
                if role != Role::Owner || !existing_owner {
                    return (403, None);
                }
            } else if actor_role != Some(Role::Owner)
                && (role == Role::Moderator
                    || (existing.is_some_and(|m| m.0 == Role::Moderator) && t != u))
            {
                // Only the owner appoints moderators or changes another moderator's role.
                return (403, None);
            }
            return (created, Some(Change::Enroll(role)));
        }
        if t != u {
            return (403, None);
        }
        if let Some((have, true)) = existing {
            if role.is_some_and(|r| r != have) {
                return (403, None);
            }
            return (200, Some(Change::Nothing));
        }
        if role.is_some_and(|r| r != Role::Member) {
            return (403, None);
        }
        match circle.policy {
            Policy::Open => (created, Some(Change::Enroll(Role::Member))),
            Policy::Approval => (created, Some(Change::Request)),
            Policy::Invite => (403, None),
        }
    }

    async fn remove_member(&mut self, u: usize) {
        let c = self.pick_circle();
        let t = if self.rng.random_ratio(1, 2) {
            u
        } else {
            self.pick_user()
        };
        let expected = match self.model.circles.get(&c) {
            None => 404,
            Some(circle) if !circle.public && !circle.members.contains_key(&u) => 404,
            Some(circle) => match circle.members.get(&t) {
                None => 404,
                Some((Role::Owner, _)) => 409,
                Some((role, _)) => {
                    let actor_role = self.model.manages(u, &c);
                    let allowed = t == u
                        || actor_role == Some(Role::Owner)
                        || (actor_role == Some(Role::Moderator) && *role == Role::Member);
                    if allowed { 204 } else { 403 }
                }
            },
        };
        let path = format!("/circles/{c}/members/{}", self.model.names[t]);
        let resp = self.send(u, Method::DELETE, &path, None).await;
        self.expect(u, &format!("delete {path}"), &resp, expected);
        if expected == 204 {
            self.model
                .circles
                .get_mut(&c)
                .expect("circle")
                .members
                .remove(&t);
            for sub in self.model.subs.values_mut() {
                if sub.owner == t && sub.circle.as_deref() == Some(c.as_str()) {
                    sub.open = false;
                }
            }
            self.actors[t]
                .pending_subs
                .retain(|(_, circle)| circle.as_deref() != Some(c.as_str()));
        }
    }

    async fn archive(&mut self, u: usize) {
        let c = self.pick_circle();
        let expected = match self.model.circles.get(&c) {
            Some(circle) if self.model.can_read_circle(u, &c) => {
                if self.model.manages(u, &c) != Some(Role::Owner) {
                    403
                } else if circle.archived {
                    422
                } else {
                    200
                }
            }
            _ => 404,
        };
        let resp = self
            .send(u, Method::POST, &format!("/circles/{c}/archive"), None)
            .await;
        self.expect(u, &format!("archive {c}"), &resp, expected);
        if expected == 200 {
            self.model.circles.get_mut(&c).expect("circle").archived = true;
        }
    }

    async fn subscribe(&mut self, u: usize) {
        let (expr, circle) = match self.rng.random_range(0..3) {
            0 => ("urgent@*".to_owned(), None),
            1 => {
                let c = self.pick_circle();
                (format!("release@{c}"), Some(c))
            }
            _ => {
                let c = self.pick_circle();
                (format!("*@{c}"), Some(c))
            }
        };
        let readable = circle
            .as_deref()
            .is_none_or(|c| self.model.can_read_circle(u, c));
        let existing = self.model.open_sub(u, &expr);
        let pending = self.actors[u].pending_subs.iter().any(|(e, _)| e == &expr);
        let expected = match (readable, existing.is_some() || pending) {
            (false, _) => 404,
            (true, true) => 200,
            (true, false) => 201,
        };
        let resp = self
            .send(
                u,
                Method::POST,
                "/subscriptions",
                Some(json!({"expr": expr})),
            )
            .await;
        self.expect(u, &format!("subscribe {expr}"), &resp, expected);
        if resp.status.is_success() {
            let id = resp.body["id"].as_i64().expect("subscription id");
            if let Some(known) = existing {
                assert_eq!(known, id, "a second subscription to {expr}");
            }
            self.actors[u].pending_subs.retain(|(e, _)| e != &expr);
            self.model.subs.insert(
                id,
                Sub {
                    owner: u,
                    expr,
                    circle,
                    open: true,
                },
            );
        }
    }

    async fn unsubscribe(&mut self, u: usize) {
        let ids: Vec<i64> = self.model.subs.keys().copied().collect();
        let id = if ids.is_empty() || self.rng.random_ratio(1, 20) {
            self.rng.random_range(100_000..200_000)
        } else {
            *ids.choose(&mut self.rng).expect("id")
        };
        let expected = match self.model.subs.get(&id) {
            Some(s) if s.owner == u && s.open => 204,
            _ => 404,
        };
        let resp = self
            .send(u, Method::DELETE, &format!("/subscriptions/{id}"), None)
            .await;
        self.expect(u, &format!("unsubscribe {id}"), &resp, expected);
        if expected == 204 {
            self.model.subs.get_mut(&id).expect("sub").open = false;
        }
    }

    async fn mark(&mut self, u: usize) {
        let feed = *["home", "notifications", "aggregated", "no-such-feed"]
            .choose(&mut self.rng)
            .expect("feed");
        let what = if self.rng.random_ratio(1, 2) {
            "seen"
        } else {
            "read"
        };
        let resp = self
            .send(u, Method::POST, &format!("/feeds/{feed}/{what}"), None)
            .await;
        self.expect(
            u,
            &format!("mark {feed} {what}"),
            &resp,
            if feed == "no-such-feed" { 404 } else { 200 },
        );
    }

    /// Admin-only routes by an ordinary user: refused, and nobody is suspended or deleted.
    async fn admin_attempt(&mut self, u: usize) {
        // Someone else (deleting oneself may become a right of one's own).
        let x = self.model.names
            [(u + self.rng.random_range(1..self.model.names.len())) % self.model.names.len()]
        .clone();
        let (method, path, body) = match self.rng.random_range(0..4) {
            0 => (Method::POST, format!("/users/{x}/suspend"), None),
            1 => (Method::POST, format!("/users/{x}/unsuspend"), None),
            2 => (
                Method::POST,
                "/types".to_owned(),
                Some(json!({"name": "Poll", "kind": "object", "schema": {"type": "object"}})),
            ),
            _ => (Method::DELETE, format!("/users/{x}"), None),
        };
        let resp = self.send(u, method.clone(), &path, body).await;
        self.expect(u, &format!("{method} {path}"), &resp, 403);
    }

    /// Logs out, checks the old token is dead, logs in again.
    async fn relog(&mut self, u: usize) {
        let resp = self
            .send(u, Method::DELETE, "/sessions/current", None)
            .await;
        self.expect(u, "logout", &resp, 204);
        let resp = self.send(u, Method::GET, "/me", None).await;
        self.expect(u, "a request with a revoked token", &resp, 401);
        self.requests += 1;
        self.actors[u].token = self
            .server
            .login(&self.model.names[u], "correct horse")
            .await;
    }

    // ---- reads -------------------------------------------------------------------------

    async fn walk(&mut self, u: usize, path: &str) -> Result<Vec<String>, Resp> {
        let mut ids = Vec::new();
        let sep = if path.contains('?') { '&' } else { '?' };
        let mut page_path = format!("{path}{sep}limit=100");
        loop {
            let resp = self.send(u, Method::GET, &page_path, None).await;
            if !resp.status.is_success() {
                return Err(resp);
            }
            ids.extend(page_ids(&resp.body));
            match resp.body["next"].as_str() {
                Some(next) => page_path = format!("{path}{sep}limit=100&before={next}"),
                None => return Ok(ids),
            }
        }
    }

    fn assert_same(&self, u: usize, what: &str, got: Vec<String>, want: BTreeSet<String>) {
        let got_set: BTreeSet<String> = got.iter().cloned().collect();
        assert_eq!(
            got.len(),
            got_set.len(),
            "{what} as {}: duplicates",
            self.model.names[u]
        );
        assert_eq!(
            got_set, want,
            "{what} as {}: the listing differs from the model",
            self.model.names[u]
        );
    }

    async fn read_activity(&mut self, u: usize) {
        let id = self.pick_activity(false);
        let expected = match self.model.activities.get(&id) {
            Some(a) if self.model.readable(u, a) => {
                if a.retracted {
                    410
                } else {
                    200
                }
            }
            _ => 404,
        };
        let resp = self
            .send(u, Method::GET, &format!("/activities/{id}"), None)
            .await;
        self.expect(u, &format!("GET activity {id}"), &resp, expected);
        // Replies, versions and actions: hidden exactly when the activity is.
        let sub = *["replies", "versions", "actions/read"]
            .choose(&mut self.rng)
            .expect("sub");
        let method = if sub == "actions/read" {
            Method::POST
        } else {
            Method::GET
        };
        let resp = self
            .send(u, method, &format!("/activities/{id}/{sub}"), None)
            .await;
        if sub == "actions/read" {
            // Notes carry no actions: 404 whether readable or not, 410 once retracted.
            let expected = if expected == 410 { 410 } else { 404 };
            self.expect(u, &format!("action of {id}"), &resp, expected);
            return;
        }
        if expected == 404 {
            self.expect(u, &format!("GET {sub} of {id}"), &resp, 404);
        } else {
            assert_ne!(
                resp.status,
                StatusCode::NOT_FOUND,
                "{sub} of readable {id}: {:?}",
                resp.body
            );
            if sub == "replies" && resp.status == StatusCode::OK {
                let want: BTreeSet<String> = self
                    .model
                    .activities
                    .iter()
                    .filter(|(_, r)| {
                        r.in_reply_to.as_deref() == Some(id.as_str())
                            && !r.retracted
                            && self.model.readable(u, r)
                    })
                    .map(|(rid, _)| rid.clone())
                    .collect();
                self.assert_same(u, &format!("replies of {id}"), page_ids(&resp.body), want);
            }
        }
    }

    async fn read_outbox(&mut self, u: usize) {
        let x = self.pick_user();
        let name = self.model.names[x].clone();
        let got = self
            .walk(u, &format!("/users/{name}/outbox"))
            .await
            .unwrap_or_else(|r| panic!("outbox of {name}: {} {:?}", r.status, r.body));
        let want = self
            .model
            .activities
            .iter()
            .filter(|(_, a)| a.author == x && a.listed && !a.retracted && self.model.readable(u, a))
            .map(|(id, _)| id.clone())
            .collect();
        self.assert_same(u, &format!("outbox of {name}"), got, want);
    }

    async fn read_circle(&mut self, u: usize) {
        let c = self.pick_circle();
        let visible = self.model.can_read_circle(u, &c);
        let resp = self
            .send(u, Method::GET, &format!("/circles/{c}"), None)
            .await;
        self.expect(
            u,
            &format!("GET circle {c}"),
            &resp,
            if visible { 200 } else { 404 },
        );
        match self.rng.random_range(0..2) {
            0 => {
                let got = self.walk(u, &format!("/circles/{c}/stream")).await;
                match (visible, got) {
                    (true, Ok(got)) => {
                        let want = self
                            .model
                            .activities
                            .iter()
                            .filter(|(_, a)| a.circles.contains(&c) && a.listed && !a.retracted)
                            .map(|(id, _)| id.clone())
                            .collect();
                        self.assert_same(u, &format!("stream of {c}"), got, want);
                    }
                    (false, Err(r)) => self.expect(u, &format!("stream of {c}"), &r, 404),
                    (visible, other) => panic!(
                        "stream of {c} as {}: visible {visible}, got {:?}",
                        self.model.names[u],
                        other.map_err(|r| (r.status, r.body))
                    ),
                }
            }
            _ => {
                let resp = self
                    .send(u, Method::GET, &format!("/circles/{c}/members"), None)
                    .await;
                self.expect(
                    u,
                    &format!("members of {c}"),
                    &resp,
                    if visible { 200 } else { 404 },
                );
                if visible {
                    let manager = self.model.manages(u, &c).is_some();
                    let want: BTreeSet<String> = self.model.circles[&c]
                        .members
                        .iter()
                        .filter(|(_, m)| m.1 || manager)
                        .map(|(m, (role, active))| {
                            format!(
                                "{} {} {}",
                                self.model.names[*m],
                                role.as_str(),
                                if *active { "active" } else { "requested" }
                            )
                        })
                        .collect();
                    let got: Vec<String> = resp.body["items"]
                        .as_array()
                        .expect("items")
                        .iter()
                        .map(|m| {
                            format!(
                                "{} {} {}",
                                m["username"].as_str().unwrap_or_default(),
                                m["role"].as_str().unwrap_or_default(),
                                m["state"].as_str().unwrap_or_default()
                            )
                        })
                        .collect();
                    self.assert_same(u, &format!("members of {c}"), got, want);
                }
            }
        }
    }

    async fn read_user_circles(&mut self, u: usize) {
        let x = self.pick_user();
        let name = self.model.names[x].clone();
        let resp = self
            .send(u, Method::GET, &format!("/users/{name}/circles"), None)
            .await;
        self.expect(u, &format!("circles of {name}"), &resp, 200);
        let want: BTreeSet<String> = self
            .model
            .circles
            .iter()
            .filter_map(|(c, circle)| {
                let m = circle.members.get(&x)?;
                (u == x || (m.1 && (circle.public || self.model.active(u, c)))).then(|| c.clone())
            })
            .collect();
        let got = resp.body["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|m| m["circle"].as_str().unwrap_or_default().to_owned())
            .collect();
        self.assert_same(u, &format!("circles of {name}"), got, want);
    }

    async fn read_subscriptions(&mut self, u: usize) {
        let resp = self.send(u, Method::GET, "/subscriptions", None).await;
        self.expect(u, "subscriptions", &resp, 200);
        let mut pending = std::mem::take(&mut self.actors[u].pending_subs);
        let mut got = Vec::new();
        for item in resp.body["items"].as_array().expect("items") {
            let id = item["id"].as_i64().expect("id");
            let expr = item["expr"].as_str().expect("expr").to_owned();
            match self.model.subs.get(&id) {
                Some(sub) => assert!(
                    sub.owner == u && sub.open && sub.expr == expr,
                    "subscriptions as {}: {id} {expr} is {sub:?}",
                    self.model.names[u]
                ),
                None => {
                    // One the model expected from a join, learnt now.
                    let at = pending
                        .iter()
                        .position(|(e, _)| e == &expr)
                        .unwrap_or_else(|| {
                            panic!(
                                "subscriptions as {}: unexpected {id} {expr}",
                                self.model.names[u]
                            )
                        });
                    let (expr, circle) = pending.remove(at);
                    self.model.subs.insert(
                        id,
                        Sub {
                            owner: u,
                            expr,
                            circle,
                            open: true,
                        },
                    );
                }
            }
            got.push(id.to_string());
        }
        assert!(
            pending.is_empty(),
            "subscriptions as {}: missing {pending:?}",
            self.model.names[u]
        );
        let want = self
            .model
            .subs
            .iter()
            .filter(|(_, s)| s.owner == u && s.open)
            .map(|(id, _)| id.to_string())
            .collect();
        self.assert_same(u, "subscriptions", got, want);
    }

    async fn read_inbox(&mut self, u: usize) {
        // Sometimes filtered by someone else's (maybe private) circle.
        let path = if self.rng.random_ratio(1, 3) {
            format!("/inbox?circles={}", self.pick_circle())
        } else {
            "/inbox".to_owned()
        };
        let got = self
            .walk(u, &path)
            .await
            .unwrap_or_else(|r| panic!("inbox: {} {:?}", r.status, r.body));
        for id in got {
            let a = self.model.activities.get(&id);
            assert!(
                a.is_some_and(|a| !a.retracted),
                "inbox of {} holds {id}: {a:?}",
                self.model.names[u]
            );
            assert!(
                !self.model.hides.contains(&(u, id.clone())),
                "inbox of {} shows {id}, which they hid",
                self.model.names[u]
            );
        }
    }

    /// Circle search lists public circles and the caller's own, nothing else.
    async fn search_circles(&mut self, u: usize) {
        let resp = self
            .send(u, Method::GET, "/circles?q=c&limit=100", None)
            .await;
        self.expect(u, "circle search", &resp, 200);
        for circle in resp.body["items"].as_array().expect("items") {
            let name = circle["name"].as_str().expect("name");
            assert!(
                self.model.can_read_circle(u, name),
                "circle search as {} lists {name}",
                self.model.names[u]
            );
        }
    }

    /// Search finds exactly what the model says the caller may read, carrying the word: not
    /// retracted, not hidden by them (any sort, every page).
    async fn search(&mut self, u: usize) {
        let word = *WORDS
            .iter()
            .chain(&["reply"])
            .collect::<Vec<_>>()
            .choose(&mut self.rng)
            .expect("word");
        let sort = if self.rng.random_ratio(1, 3) {
            "best"
        } else {
            "newest"
        };
        let got = self
            .walk(u, &format!("/search?q={word}%20&sort={sort}"))
            .await
            .unwrap_or_else(|r| panic!("search: {} {:?}", r.status, r.body));
        let want = self
            .model
            .activities
            .iter()
            .filter(|(id, a)| {
                a.word == Some(word)
                    && a.listed
                    && !a.retracted
                    && self.model.readable(u, a)
                    && !self.model.hides.contains(&(u, (*id).clone()))
            })
            .map(|(id, _)| id.clone())
            .collect();
        self.assert_same(u, &format!("search for {word} ({sort})"), got, want);
    }

    /// `/me/reactions` about anyone's activities answers for the caller's reactions only.
    async fn my_reactions(&mut self, u: usize) {
        let ids: Vec<String> = (0..5).map(|_| self.pick_activity(true)).collect();
        let resp = self
            .send(
                u,
                Method::GET,
                &format!("/me/reactions?activities={}", ids.join(",")),
                None,
            )
            .await;
        self.expect(u, "my reactions", &resp, 200);
        for item in resp.body["items"].as_array().expect("items") {
            let id = item["activity"].as_str().expect("activity").to_owned();
            let liked = self.model.reactions.contains_key(&(u, id.clone(), "Like"));
            let shared = self
                .model
                .reactions
                .contains_key(&(u, id.clone(), "Announce"));
            assert_eq!(
                (item["liked"] == json!(true), item["shared"] == json!(true)),
                (liked, shared),
                "reactions of {} on {id}",
                self.model.names[u]
            );
        }
    }

    /// How the caller and another user stand: exactly the follow graph.
    async fn relationship(&mut self, u: usize) {
        let x = self.pick_user();
        let name = self.model.names[x].clone();
        let resp = self
            .send(u, Method::GET, &format!("/users/{name}/follow"), None)
            .await;
        self.expect(u, &format!("relationship with {name}"), &resp, 200);
        assert_eq!(
            (
                resp.body["following"] == json!(true),
                resp.body["followed_by"] == json!(true)
            ),
            (
                self.model.follows.contains(&(u, x)),
                self.model.follows.contains(&(x, u))
            ),
            "relationship of {} with {name}",
            self.model.names[u]
        );
    }

    async fn read_feed(&mut self, u: usize) {
        let feed = *["home", "notifications", "aggregated"]
            .choose(&mut self.rng)
            .expect("feed");
        let resp = self
            .send(u, Method::GET, &format!("/feeds/{feed}"), None)
            .await;
        self.expect(u, &format!("feed {feed}"), &resp, 200);
    }

    async fn step(&mut self, building: bool) {
        let u = self.pick_user();
        let roll = self.rng.random_range(0..100);
        // While the community is built, mostly writes; then mostly reads with other ids.
        let write = if building { roll < 80 } else { roll < 30 };
        if write {
            // Once the log is big enough, new activities give way to hides and retractions, so
            // a long run keeps probing permissions instead of paging through ever longer
            // listings.
            let full = self.model.ids.len() >= MAX_ACTIVITIES;
            match self.rng.random_range(0..100) {
                0..40 if full && self.rng.random_ratio(1, 2) => self.hide(u).await,
                0..40 if full => self.retract(u).await,
                0..18 => self.publish_note(u).await,
                18..28 => self.reply(u).await,
                28..36 => self.react(u, "Like").await,
                36..40 => self.react(u, "Announce").await,
                40..45 => self.retract(u).await,
                45..52 => self.hide(u).await,
                52..60 => self.follow(u).await,
                60..62 => self.create_circle(u).await,
                62..76 => self.put_member(u).await,
                76..81 => self.remove_member(u).await,
                81..83 => self.archive(u).await,
                83..89 => self.subscribe(u).await,
                89..93 => self.unsubscribe(u).await,
                93..97 => self.mark(u).await,
                97..99 => self.admin_attempt(u).await,
                _ => self.relog(u).await,
            }
        } else {
            match self.rng.random_range(0..100) {
                0..25 => self.read_activity(u).await,
                25..40 => self.read_outbox(u).await,
                40..58 => self.read_circle(u).await,
                58..66 => self.read_user_circles(u).await,
                66..74 => self.read_subscriptions(u).await,
                74..84 => self.read_inbox(u).await,
                84..86 => self.search_circles(u).await,
                86..91 if self.rng.random_ratio(1, 2) => self.my_reactions(u).await,
                86..91 => self.search(u).await,
                91..94 => self.relationship(u).await,
                _ => self.read_feed(u).await,
            }
        }
    }
}

/// Activities after which a run stops adding new ones (see [`Campaign::step`]).
const MAX_ACTIVITIES: usize = 1500;

/// Words notes and replies carry, so searches find a real share of the community.
const WORDS: [&str; 4] = ["alpha", "bravo", "charlie", "delta"];

#[derive(Debug, Clone, Copy)]
enum Change {
    Enroll(Role),
    Request,
    Nothing,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_users_never_read_or_write_what_the_model_forbids() {
    let total: usize = std::env::var("TIDINGS_AUTHZ_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000);
    let seed: u64 = std::env::var("TIDINGS_AUTHZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| rand::rng().random());
    eprintln!("authz fuzz: {total} requests, TIDINGS_AUTHZ_SEED={seed}");
    let server = TestServer::start_with(campaign_config(), StoreConfig::default()).await;
    let users = 10;
    let mut campaign = Campaign {
        model: Model::default(),
        actors: Vec::new(),
        rng: StdRng::seed_from_u64(seed),
        requests: 0,
        allowed: 0,
        refused: 0,
        checked_items: 0,
        circle_seq: 0,
        server,
    };
    for i in 0..users {
        let name = format!("u{i}");
        let token = campaign.server.user(&name).await;
        campaign.model.names.push(name);
        campaign.actors.push(Actor {
            token,
            pending_subs: Vec::new(),
        });
    }
    let started = std::time::Instant::now();
    let building = total / 5;
    let mut reported = 0;
    while campaign.requests < total {
        let in_build = campaign.requests < building;
        campaign.step(in_build).await;
        if campaign.requests >= reported + 10_000 {
            reported = campaign.requests;
            eprintln!(
                "authz fuzz: {reported} requests, {} activities, {:.0} s",
                campaign.model.activities.len(),
                started.elapsed().as_secs_f64()
            );
        }
    }
    // Every user's view once more at the end.
    for u in 0..users {
        campaign.read_subscriptions(u).await;
        campaign.read_inbox(u).await;
        campaign.search(u).await;
        for x in 0..users {
            let name = campaign.model.names[x].clone();
            let got = campaign
                .walk(u, &format!("/users/{name}/outbox"))
                .await
                .unwrap_or_else(|r| panic!("outbox: {:?}", r.body));
            let want = campaign
                .model
                .activities
                .iter()
                .filter(|(_, a)| {
                    a.author == x && a.listed && !a.retracted && campaign.model.readable(u, a)
                })
                .map(|(id, _)| id.clone())
                .collect();
            campaign.assert_same(u, &format!("final outbox of {name}"), got, want);
        }
    }
    campaign.server.assert_verified().await;
    eprintln!(
        "authz fuzz: {} requests in {:.1} s ({} allowed, {} refused as the model said), {} users, \
         {} circles, {} activities, {} activities in answers checked readable: 0 cross-user reads \
         or writes (seed {seed})",
        campaign.requests,
        started.elapsed().as_secs_f64(),
        campaign.allowed,
        campaign.refused,
        users,
        campaign.model.circles.len(),
        campaign.model.activities.len(),
        campaign.checked_items,
    );
}

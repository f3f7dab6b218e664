//! Follows (recorded as Follow / Undo activities), follower and following lists, and reactions
//! (like and share, recorded as Like / Announce, undone with Undo).

use crate::AppState;
use crate::api::activities::publish_value;
use crate::auth::AuthUser;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiPath, ApiQuery};
use crate::pagination::{PageArgs, page_cursors};
use crate::response::RawJson;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tidings_core::cursor;
use tidings_store::model::User;
use utoipa::{IntoParams, ToSchema};

/// Most activities one reactions lookup takes.
const MAX_REACTION_LOOKUP: usize = 100;

/// One entry of a followers or following list.
#[derive(Debug, Serialize, ToSchema)]
pub struct FollowItem {
    /// Cursor of this entry.
    pub cursor: String,
    /// The other user.
    pub user: User,
    /// When the follow was made.
    pub since: String,
}

/// A page of followers or followed users, newest follow first.
#[derive(Debug, Serialize, ToSchema)]
pub struct FollowPage {
    /// Entries.
    pub items: Vec<FollowItem>,
    /// Cursor for older entries.
    pub next: Option<String>,
    /// Cursor for newer entries.
    pub prev: Option<String>,
    /// How many in all.
    pub total: i64,
}

/// Follow a user: publishes a Follow addressed to them. Their recent activities addressed to
/// followers or the public are copied into the caller's home feed.
#[utoipa::path(post, path = "/api/v1/users/{username}/follow", tag = "follows", security(("bearer" = [])),
    params(("username" = String, Path)),
    responses((status = 201, description = "the Follow activity"), (status = 404), (status = 409), (status = 422)))]
pub async fn follow(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath(username): ApiPath<String>,
) -> ApiResult<(StatusCode, RawJson)> {
    let target = state.store.user(&username).await?;
    let published = publish_value(
        &state,
        auth.user,
        &json!({"type": "Follow", "object": format!("user:{}", target.username),
                "to": [format!("user:{}", target.username)]}),
        None,
    )
    .await?;
    Ok((StatusCode::CREATED, RawJson(published.activity)))
}

/// Unfollow a user: publishes an Undo of the Follow; their activities leave the home feed.
#[utoipa::path(delete, path = "/api/v1/users/{username}/follow", tag = "follows", security(("bearer" = [])),
    params(("username" = String, Path)),
    responses((status = 201, description = "the Undo activity"), (status = 404, description = "no such user, or not followed")))]
pub async fn unfollow(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath(username): ApiPath<String>,
) -> ApiResult<(StatusCode, RawJson)> {
    let follow_id = state
        .store
        .follow_activity(&auth.user, &username)
        .await?
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "not_following",
                format!("you do not follow {username:?}"),
            )
        })?;
    let published = publish_value(
        &state,
        auth.user,
        &json!({"type": "Undo", "object": follow_id}),
        None,
    )
    .await?;
    Ok((StatusCode::CREATED, RawJson(published.activity)))
}

/// How the caller and another user stand.
#[derive(Debug, Serialize, ToSchema)]
pub struct Relationship {
    /// The caller follows them.
    pub following: bool,
    /// They follow the caller.
    pub followed_by: bool,
}

/// Whether the caller follows a user, and whether that user follows the caller.
#[utoipa::path(get, path = "/api/v1/users/{username}/follow", tag = "follows", security(("bearer" = [])),
    params(("username" = String, Path)),
    responses((status = 200, body = Relationship), (status = 404)))]
pub async fn relationship(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath(username): ApiPath<String>,
) -> ApiResult<Json<Relationship>> {
    let (following, followed_by) = state.store.relationship(&auth.user, &username).await?;
    Ok(Json(Relationship {
        following: following.is_some(),
        followed_by: followed_by.is_some(),
    }))
}

/// Which activities to look up the caller's reactions on.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReactionsArgs {
    /// Comma-separated activity ids: 1 to 100 (blank entries are skipped).
    #[param(required = true, pattern = r"^(?=[\s\S]*[^,\s])(?:[^,]*,){0,99}[^,]*$")]
    pub activities: Option<String>,
}

/// The caller's reactions on one activity.
#[derive(Debug, Serialize, ToSchema)]
pub struct MyReaction {
    /// The activity id, as asked.
    pub activity: String,
    /// The caller has a live Like of it.
    pub liked: bool,
    /// The caller has a live Announce (share) of it.
    pub shared: bool,
}

/// The caller's reactions, in the order asked.
#[derive(Debug, Serialize, ToSchema)]
pub struct MyReactions {
    /// One per activity asked about.
    pub items: Vec<MyReaction>,
}

/// Whether the caller liked and shared each of up to 100 activities (one lookup for a page of
/// cards, rather than one request per card).
#[utoipa::path(get, path = "/api/v1/me/reactions", tag = "reactions", security(("bearer" = [])),
    params(ReactionsArgs),
    responses((status = 200, body = MyReactions), (status = 400)))]
pub async fn my_reactions(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiQuery(args): ApiQuery<ReactionsArgs>,
) -> ApiResult<Json<MyReactions>> {
    let ids: Vec<String> = args
        .activities
        .as_deref()
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|id| !id.is_empty())
        .map(str::to_owned)
        .collect();
    if ids.is_empty() || ids.len() > MAX_REACTION_LOOKUP {
        return Err(ApiError::bad_request(
            "invalid_query",
            format!("activities: give 1 to {MAX_REACTION_LOOKUP} comma-separated activity ids"),
        ));
    }
    let found = state.store.my_reactions(&auth.user, ids.clone()).await?;
    Ok(Json(MyReactions {
        items: ids
            .into_iter()
            .zip(found)
            .map(|(activity, (liked, shared))| MyReaction {
                activity,
                liked,
                shared,
            })
            .collect(),
    }))
}

async fn follow_page(
    state: &AppState,
    username: &str,
    followers: bool,
    args: &PageArgs,
) -> ApiResult<Json<FollowPage>> {
    let (from, limit) = args.resolve()?;
    let (entries, more) = state
        .store
        .follow_list(username, followers, from, limit)
        .await?;
    let (follower_count, following_count) = state.store.follow_counts(username).await?;
    let (next, prev) = page_cursors(
        entries.first().map(|e| e.follow_seq),
        entries.last().map(|e| e.follow_seq),
        more,
        from,
    );
    Ok(Json(FollowPage {
        items: entries
            .into_iter()
            .map(|e| FollowItem {
                cursor: cursor::encode(e.follow_seq),
                user: e.user,
                since: e.since,
            })
            .collect(),
        next,
        prev,
        total: if followers {
            follower_count
        } else {
            following_count
        },
    }))
}

/// Who follows a user, newest first.
#[utoipa::path(get, path = "/api/v1/users/{username}/followers", tag = "follows", security(("bearer" = [])),
    params(("username" = String, Path), PageArgs), responses((status = 200, body = FollowPage), (status = 404)))]
pub async fn followers(
    State(state): State<AppState>,
    _auth: AuthUser,
    ApiPath(username): ApiPath<String>,
    ApiQuery(args): ApiQuery<PageArgs>,
) -> ApiResult<Json<FollowPage>> {
    follow_page(&state, &username, true, &args).await
}

/// Whom a user follows, newest first.
#[utoipa::path(get, path = "/api/v1/users/{username}/following", tag = "follows", security(("bearer" = [])),
    params(("username" = String, Path), PageArgs), responses((status = 200, body = FollowPage), (status = 404)))]
pub async fn following(
    State(state): State<AppState>,
    _auth: AuthUser,
    ApiPath(username): ApiPath<String>,
    ApiQuery(args): ApiQuery<PageArgs>,
) -> ApiResult<Json<FollowPage>> {
    follow_page(&state, &username, false, &args).await
}

/// Which reaction a route is about.
#[derive(Debug, Clone, Copy)]
enum Reaction {
    Like,
    Share,
}

impl Reaction {
    fn activity_type(self) -> &'static str {
        match self {
            Reaction::Like => "Like",
            Reaction::Share => "Announce",
        }
    }
}

async fn react(state: &AppState, actor: User, id: &str, reaction: Reaction) -> ApiResult<RawJson> {
    // Readable, not retracted (404 / 410 otherwise).
    let (_, target) = state.store.activity(id, actor.clone()).await?;
    let author = target
        .pointer("/tidings/actor/username")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let public = target
        .get("to")
        .and_then(Value::as_array)
        .is_some_and(|to| to.iter().any(|a| a == "public"));
    // The author hears of it; the actor's followers see it only when anyone may read the target.
    let mut to = Vec::new();
    if !author.is_empty() && author != actor.username {
        to.push(format!("user:{author}"));
    }
    if public {
        to.push("followers".to_owned());
    }
    let published = publish_value(
        state,
        actor,
        &json!({"type": reaction.activity_type(), "object": id, "to": to}),
        None,
    )
    .await?;
    Ok(RawJson(published.activity))
}

async fn unreact(
    state: &AppState,
    actor: User,
    id: &str,
    reaction: Reaction,
) -> ApiResult<RawJson> {
    let reaction_id = state
        .store
        .live_reaction(&actor, reaction.activity_type(), id)
        .await?
        .ok_or_else(|| {
            let (code, what) = match reaction {
                Reaction::Like => ("not_liked", "liked"),
                Reaction::Share => ("not_shared", "shared"),
            };
            ApiError::new(
                StatusCode::NOT_FOUND,
                code,
                format!("you have not {what} this activity"),
            )
        })?;
    let published = publish_value(
        state,
        actor,
        &json!({"type": "Undo", "object": reaction_id}),
        None,
    )
    .await?;
    Ok(RawJson(published.activity))
}

/// Like an activity (once per user): publishes a Like addressed to its author.
#[utoipa::path(post, path = "/api/v1/activities/{id}/like", tag = "reactions", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 201, description = "the Like activity"), (status = 404), (status = 409), (status = 410)))]
pub async fn like(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<(StatusCode, RawJson)> {
    Ok((
        StatusCode::CREATED,
        react(&state, auth.user, &id, Reaction::Like).await?,
    ))
}

/// Take one's like back: publishes an Undo of it.
#[utoipa::path(delete, path = "/api/v1/activities/{id}/like", tag = "reactions", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 201, description = "the Undo activity"), (status = 404)))]
pub async fn unlike(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<(StatusCode, RawJson)> {
    Ok((
        StatusCode::CREATED,
        unreact(&state, auth.user, &id, Reaction::Like).await?,
    ))
}

/// Share an activity with one's followers (once per user): publishes an Announce.
#[utoipa::path(post, path = "/api/v1/activities/{id}/share", tag = "reactions", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 201, description = "the Announce activity"), (status = 404), (status = 409), (status = 410)))]
pub async fn share(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<(StatusCode, RawJson)> {
    Ok((
        StatusCode::CREATED,
        react(&state, auth.user, &id, Reaction::Share).await?,
    ))
}

/// Take one's share back: publishes an Undo of it.
#[utoipa::path(delete, path = "/api/v1/activities/{id}/share", tag = "reactions", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 201, description = "the Undo activity"), (status = 404)))]
pub async fn unshare(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<(StatusCode, RawJson)> {
    Ok((
        StatusCode::CREATED,
        unreact(&state, auth.user, &id, Reaction::Share).await?,
    ))
}

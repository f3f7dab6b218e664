//! User groups (decision 0027): named sets of people owned by a person, or by a circle (made
//! and changed by its owner and moderators, used by its members). A group is named in paths
//! as `NAME` (the caller's own) or `NAME@CIRCLE`, and in audiences as `group:NAME` or
//! `group:NAME@CIRCLE`.

use crate::AppState;
use crate::auth::AuthUser;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiPath};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use tidings_core::conversations::GroupRef;
use tidings_store::model::{Membership, UserGroup};
use utoipa::ToSchema;

/// Most members one request names.
const MAX_MEMBERS: usize = 256;

/// A new group.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateGroupBody {
    /// Name: a slug, unique among the owner's groups.
    #[schema(pattern = r"^\s*[A-Za-z0-9][A-Za-z0-9_-]{0,62}\s*$")]
    pub name: String,
    /// Usernames of its first members.
    #[serde(default)]
    #[schema(max_items = 256)]
    pub members: Vec<String>,
    /// Make it a circle's group (you must be the circle's owner or a moderator).
    #[serde(default)]
    #[schema(pattern = r"^\s*[A-Za-z0-9][A-Za-z0-9_-]{0,62}\s*$")]
    pub circle: Option<String>,
}

/// People to add to or remove from a group.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GroupMembersBody {
    /// Usernames.
    #[schema(min_items = 1, max_items = 256)]
    pub members: Vec<String>,
}

/// The groups the caller may use.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserGroupList {
    /// The caller's own groups, then those of their circles, by circle and name.
    pub items: Vec<UserGroup>,
}

/// A circle's new members, added from a group.
#[derive(Debug, Serialize, ToSchema)]
pub struct GroupMembershipList {
    /// One membership per member of the group.
    pub items: Vec<Membership>,
}

/// A whole group added to a circle.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddGroupBody {
    /// The group: `NAME` (yours) or `NAME@CIRCLE`.
    #[schema(
        pattern = r"^\s*(group:)?[A-Za-z0-9][A-Za-z0-9_-]{0,62}(@[A-Za-z0-9][A-Za-z0-9_-]{0,62})?\s*$"
    )]
    pub group: String,
}

/// A group named in a path: one that cannot be spelled cannot exist (404, like one the caller
/// may not see).
fn path_ref(raw: &str) -> ApiResult<GroupRef> {
    parse_ref(raw).map_err(|_| ApiError::not_found("group"))
}

/// Parses a group reference (`NAME`, `NAME@CIRCLE`, optionally with `group:` in front).
pub fn parse_ref(raw: &str) -> ApiResult<GroupRef> {
    let raw = raw.trim();
    let raw = raw.strip_prefix("group:").unwrap_or(raw);
    GroupRef::parse(raw).ok_or_else(|| {
        ApiError::bad_request(
            "invalid_group",
            format!("{raw:?} is not a group: use NAME or NAME@CIRCLE"),
        )
    })
}

fn check_members(members: &[String]) -> ApiResult<()> {
    if members.len() > MAX_MEMBERS {
        return Err(ApiError::bad_request(
            "invalid_members",
            format!("at most {MAX_MEMBERS} members per request"),
        ));
    }
    Ok(())
}

/// Create a group (yours, or with `circle` a circle's) with its first members. Each member
/// added is an `Add` activity in your outbox, unlisted.
#[utoipa::path(post, path = "/api/v1/groups", operation_id = "create_group", tag = "groups",
    security(("bearer" = [])), request_body = CreateGroupBody,
    responses((status = 201, body = UserGroup), (status = 400), (status = 401), (status = 403), (status = 404), (status = 409), (status = 422)))]
pub async fn create(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiJson(body): ApiJson<CreateGroupBody>,
) -> ApiResult<(StatusCode, Json<UserGroup>)> {
    check_members(&body.members)?;
    let name = tidings_core::expr::normalize_slug(&body.name)
        .map_err(|e| ApiError::bad_request("invalid_group_name", format!("name: {}", e.message)))?;
    let circle = match body.circle.as_deref() {
        None => None,
        Some(c) => Some(tidings_core::expr::normalize_slug(c).map_err(|e| {
            ApiError::bad_request("invalid_circle", format!("circle: {}", e.message))
        })?),
    };
    let members = body
        .members
        .iter()
        .map(|m| m.trim().to_lowercase())
        .collect();
    let group = state
        .store
        .create_group(auth.user, name, circle, members)
        .await?;
    Ok((StatusCode::CREATED, Json(group)))
}

/// The groups you may use: your own, and those of the circles you are a member of.
#[utoipa::path(get, path = "/api/v1/groups", operation_id = "list_groups", tag = "groups",
    security(("bearer" = [])), responses((status = 200, body = UserGroupList), (status = 401)))]
pub async fn list(State(state): State<AppState>, auth: AuthUser) -> ApiResult<Json<UserGroupList>> {
    let items = state.store.user_groups(auth.user).await?;
    Ok(Json(UserGroupList { items }))
}

/// One group, with its members.
#[utoipa::path(get, path = "/api/v1/groups/{group}", operation_id = "get_group", tag = "groups",
    security(("bearer" = [])), params(("group" = String, Path, description = "NAME or NAME@CIRCLE")),
    responses((status = 200, body = UserGroup), (status = 400), (status = 401), (status = 404)))]
pub async fn get_one(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath(group): ApiPath<String>,
) -> ApiResult<Json<UserGroup>> {
    Ok(Json(state.store.group(auth.user, path_ref(&group)?).await?))
}

/// Delete a group. Posts that went to it keep their audience.
#[utoipa::path(delete, path = "/api/v1/groups/{group}", operation_id = "delete_group", tag = "groups",
    security(("bearer" = [])), params(("group" = String, Path, description = "NAME or NAME@CIRCLE")),
    responses((status = 204), (status = 400), (status = 401), (status = 403), (status = 404)))]
pub async fn delete(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath(group): ApiPath<String>,
) -> ApiResult<StatusCode> {
    state
        .store
        .delete_group(auth.user, path_ref(&group)?)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Add people to a group (each an `Add` activity; people already in it are skipped).
#[utoipa::path(post, path = "/api/v1/groups/{group}/members", operation_id = "add_group_members", tag = "groups",
    security(("bearer" = [])), params(("group" = String, Path, description = "NAME or NAME@CIRCLE")),
    request_body = GroupMembersBody,
    responses((status = 200, body = UserGroup), (status = 400), (status = 401), (status = 403), (status = 404), (status = 422)))]
pub async fn add_members(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath(group): ApiPath<String>,
    ApiJson(body): ApiJson<GroupMembersBody>,
) -> ApiResult<Json<UserGroup>> {
    check_members(&body.members)?;
    let reference = path_ref(&group)?;
    let names = body
        .members
        .iter()
        .map(|m| m.trim().to_lowercase())
        .collect();
    Ok(Json(
        state
            .store
            .add_group_members(auth.user, reference, names)
            .await?,
    ))
}

/// Remove one person from a group (a `Remove` activity): posts to the group from then on do
/// not reach them.
#[utoipa::path(delete, path = "/api/v1/groups/{group}/members/{username}", operation_id = "remove_group_member", tag = "groups",
    security(("bearer" = [])), params(("group" = String, Path, description = "NAME or NAME@CIRCLE"), ("username" = String, Path)),
    responses((status = 200, body = UserGroup), (status = 400), (status = 401), (status = 403), (status = 404)))]
pub async fn remove_member(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath((group, username)): ApiPath<(String, String)>,
) -> ApiResult<Json<UserGroup>> {
    let reference = path_ref(&group)?;
    Ok(Json(
        state
            .store
            .remove_group_members(auth.user, reference, vec![username.trim().to_lowercase()])
            .await?,
    ))
}

/// Add every member of a group to a circle in one step (as a moderator adding them one by
/// one would; all or nothing).
#[utoipa::path(post, path = "/api/v1/circles/{name}/members", operation_id = "add_group_to_circle", tag = "circles",
    security(("bearer" = [])), params(("name" = String, Path)), request_body = AddGroupBody,
    responses((status = 200, body = GroupMembershipList), (status = 400), (status = 401), (status = 403), (status = 404), (status = 422)))]
pub async fn add_to_circle(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath(circle): ApiPath<String>,
    ApiJson(body): ApiJson<AddGroupBody>,
) -> ApiResult<Json<GroupMembershipList>> {
    let reference = parse_ref(&body.group)?;
    let changes = state
        .store
        .add_group_to_circle(&circle, auth.user, reference)
        .await?;
    Ok(Json(GroupMembershipList {
        items: changes.into_iter().map(|c| c.membership).collect(),
    }))
}

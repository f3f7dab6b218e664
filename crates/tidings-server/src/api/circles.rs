//! Circles: create, find, archive, enrolments and members, streams.

use crate::AppState;
use crate::auth::AuthUser;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::pagination::{PageArgs, PageBody};
use crate::response::RawJson;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use tidings_core::activity::{Draft, normalize};
use tidings_core::expr::normalize_slug;
use tidings_store::model::NewCircle;
use tidings_store::model::{Circle, JoinPolicy, Membership, Role, Visibility};
use utoipa::{IntoParams, ToSchema};

/// Create-circle request.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateCircleBody {
    /// Lowercase slug, 1–63 characters, unique.
    #[schema(pattern = "^[a-z0-9][a-z0-9_-]{0,62}$")]
    pub name: String,
    /// Shown name, at most 100 printable characters (defaults to the slug when blank).
    #[schema(max_length = 100, pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*$")]
    pub display_name: Option<String>,
    /// What the circle is for (≤ 2000 characters).
    #[serde(default)]
    #[schema(max_length = 2000)]
    pub description: String,
    /// public (default) or private.
    pub visibility: Option<Visibility>,
    /// open (default), approval or invite.
    pub join_policy: Option<JoinPolicy>,
}

/// Circle search arguments.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SearchArgs {
    /// Text matched against name, display name and description (at most 200 characters).
    #[serde(default)]
    #[param(max_length = 200)]
    pub q: String,
    /// At most this many (1–100, default 50).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<i64>,
}

/// Circles found.
#[derive(Debug, Serialize, ToSchema)]
pub struct CircleList {
    /// Matching circles, biggest first.
    pub items: Vec<Circle>,
}

/// Memberships.
#[derive(Debug, Serialize, ToSchema)]
pub struct MembershipList {
    /// Enrolments.
    pub items: Vec<Membership>,
}

/// PUT member body (optional).
#[derive(Debug, Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutMemberBody {
    /// Role to give (owner/moderator only): member or moderator.
    pub role: Option<Role>,
}

fn check_circle_name(raw: &str) -> ApiResult<String> {
    let name = normalize_slug(raw).map_err(|e| {
        ApiError::bad_request("invalid_circle_name", format!("name: {}", e.message))
    })?;
    if name != raw {
        return Err(ApiError::bad_request(
            "invalid_circle_name",
            "name must be lowercase letters, digits, '-' or '_' (1–63 characters)",
        ));
    }
    Ok(name)
}

/// Create a circle; the creator becomes its owner and subscribes to `*@name`.
#[utoipa::path(post, path = "/api/v1/circles", request_body = CreateCircleBody, tag = "circles", security(("bearer" = [])),
    responses((status = 201, body = Circle), (status = 400), (status = 409)))]
pub async fn create(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiJson(body): ApiJson<CreateCircleBody>,
) -> ApiResult<(StatusCode, Json<Circle>)> {
    let name = check_circle_name(&body.name)?;
    let display_name = super::users::check_display_name(body.display_name.as_deref(), &name)
        .map_err(|_| {
            ApiError::bad_request(
                "invalid_display_name",
                "display_name must be at most 100 printable characters",
            )
        })?;
    if body.description.chars().count() > 2000 {
        return Err(ApiError::bad_request(
            "invalid_description",
            "description must be at most 2000 characters",
        ));
    }
    let circle = state
        .store
        .create_circle(
            auth.user,
            NewCircle {
                name,
                display_name,
                description: body.description.trim().to_owned(),
                visibility: body.visibility.unwrap_or(Visibility::Public),
                join_policy: body.join_policy.unwrap_or(JoinPolicy::Open),
            },
        )
        .await?;
    Ok((StatusCode::CREATED, Json(circle)))
}

/// Find circles: public ones and the caller's own.
#[utoipa::path(get, path = "/api/v1/circles", params(SearchArgs), tag = "circles", security(("bearer" = [])),
    responses((status = 200, body = CircleList)))]
pub async fn search(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiQuery(args): ApiQuery<SearchArgs>,
) -> ApiResult<Json<CircleList>> {
    let limit = args.limit.unwrap_or(50);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::bad_request(
            "invalid_limit",
            "limit must be between 1 and 100",
        ));
    }
    if args.q.chars().count() > 200 {
        return Err(ApiError::bad_request(
            "invalid_query",
            "q must be at most 200 characters",
        ));
    }
    let items = state
        .store
        .search_circles(args.q, Some(auth.user), limit)
        .await?;
    Ok(Json(CircleList { items }))
}

/// One circle (private circles are 404 to non-members).
#[utoipa::path(get, path = "/api/v1/circles/{name}", tag = "circles", security(("bearer" = [])),
    params(("name" = String, Path)), responses((status = 200, body = Circle), (status = 404)))]
pub async fn get_circle(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<Json<Circle>> {
    Ok(Json(state.store.circle(&name, Some(auth.user)).await?))
}

/// Archive a circle (owner or admin): read-only afterwards.
#[utoipa::path(post, path = "/api/v1/circles/{name}/archive", tag = "circles", security(("bearer" = [])),
    params(("name" = String, Path)), responses((status = 200, body = Circle), (status = 403), (status = 404), (status = 422)))]
pub async fn archive(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<Json<Circle>> {
    Ok(Json(state.store.archive_circle(&name, auth.user).await?))
}

/// Members of a circle (moderators also see pending requests).
#[utoipa::path(get, path = "/api/v1/circles/{name}/members", tag = "circles", security(("bearer" = [])),
    params(("name" = String, Path)), responses((status = 200, body = MembershipList), (status = 404)))]
pub async fn members(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<Json<MembershipList>> {
    let items = state.store.circle_members(&name, auth.user).await?;
    Ok(Json(MembershipList { items }))
}

/// A user's enrolments (only circles the caller may see).
#[utoipa::path(get, path = "/api/v1/users/{username}/circles", tag = "circles", security(("bearer" = [])),
    params(("username" = String, Path)), responses((status = 200, body = MembershipList), (status = 404)))]
pub async fn user_circles(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath(username): ApiPath<String>,
) -> ApiResult<Json<MembershipList>> {
    let items = state.store.user_circles(&username, auth.user).await?;
    Ok(Json(MembershipList { items }))
}

/// Add a member, join, request to join, approve a request, or set a role.
#[utoipa::path(put, path = "/api/v1/circles/{name}/members/{username}", tag = "circles", security(("bearer" = [])),
    request_body(content = Option<PutMemberBody>),
    params(("name" = String, Path), ("username" = String, Path)),
    responses((status = 201, body = Membership, description = "created"), (status = 200, body = Membership), (status = 403), (status = 404), (status = 422)))]
pub async fn put_member(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath((name, username)): ApiPath<(String, String)>,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> ApiResult<(StatusCode, Json<Membership>)> {
    // The body is optional: an empty PUT joins or adds as a plain member.
    let body = body.map_err(|rejection| {
        let status = rejection.status();
        let code = if status == StatusCode::PAYLOAD_TOO_LARGE {
            "body_too_large"
        } else {
            "invalid_body"
        };
        ApiError::new(status, code, rejection.body_text())
    })?;
    let role = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        // JSON `null` is no body too, as the document's optional body allows.
        serde_json::from_slice::<Option<PutMemberBody>>(&body)
            .map_err(|e| ApiError::bad_request("invalid_json", e.to_string()))?
            .and_then(|b| b.role)
    };
    // Only a self-join publishes it; the store decides whether this call is one.
    let join = (username == auth.user.username)
        .then(|| join_draft(&state, &name))
        .transpose()?;
    let change = state
        .store
        .put_member(&name, &username, auth.user, role, join)
        .await?;
    let status = if change.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(change.membership)))
}

/// The Join a self-join publishes; the store addresses it to the circle's owner and
/// moderators, who are notified.
fn join_draft(state: &AppState, circle: &str) -> ApiResult<Draft> {
    let body = serde_json::json!({
        "type": "Join",
        "object": format!("circle:{circle}"),
        "to": [format!("circle:{circle}")],
    });
    let types = state.types.clone();
    Ok(normalize(&body, &state.config.limits, &|name| {
        types.status(name)
    })?)
}

/// Leave, remove a member, or reject a request.
#[utoipa::path(delete, path = "/api/v1/circles/{name}/members/{username}", tag = "circles", security(("bearer" = [])),
    params(("name" = String, Path), ("username" = String, Path)),
    responses((status = 204), (status = 403), (status = 404), (status = 409)))]
pub async fn remove_member(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath((name, username)): ApiPath<(String, String)>,
) -> ApiResult<StatusCode> {
    state
        .store
        .remove_member(&name, &username, auth.user)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A circle's stream, newest first.
#[utoipa::path(get, path = "/api/v1/circles/{name}/stream", operation_id = "circle_stream", tag = "circles", security(("bearer" = [])),
    params(("name" = String, Path), PageArgs), responses((status = 200, body = PageBody), (status = 404)))]
pub async fn stream(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath(name): ApiPath<String>,
    ApiQuery(args): ApiQuery<PageArgs>,
) -> ApiResult<RawJson> {
    let (from, limit) = args.resolve()?;
    let page = state
        .store
        .circle_stream(&name, auth.user, from, limit)
        .await?;
    Ok(PageBody::render(page, from))
}

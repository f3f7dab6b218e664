//! Moderation (decision 0029): reporting an activity, a circle's report queue and its
//! resolution, circle bans, and the public moderation log.

use crate::AppState;
use crate::auth::AuthUser;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use tidings_core::moderation::{Decision, MAX_NOTE_CHARS, ReportReason};
use tidings_store::model::{CircleBan, ModerationLogEntry, Report, ReportItem, Resolution};
use tidings_store::{DecisionInput, SilenceKind};
use utoipa::{IntoParams, ToSchema};

/// Why an activity is reported.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReasonName {
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
    /// Anything else (say what in the comment).
    Other,
}

impl From<ReasonName> for ReportReason {
    fn from(r: ReasonName) -> Self {
        match r {
            ReasonName::Spam => ReportReason::Spam,
            ReasonName::Harassment => ReportReason::Harassment,
            ReasonName::Hate => ReportReason::Hate,
            ReasonName::Violence => ReportReason::Violence,
            ReasonName::Sexual => ReportReason::Sexual,
            ReasonName::Misinformation => ReportReason::Misinformation,
            ReasonName::OffTopic => ReportReason::OffTopic,
            ReasonName::Other => ReportReason::Other,
        }
    }
}

/// What a moderator decides.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DecisionName {
    /// The reports are unfounded; the item stays.
    Dismiss,
    /// Take the item down.
    Hide,
    /// Take the item down and remove its author from the circle.
    Remove,
    /// Take the item down and ban its author from the circle (until `until`, or for good).
    Ban,
}

impl From<DecisionName> for Decision {
    fn from(d: DecisionName) -> Self {
        match d {
            DecisionName::Dismiss => Decision::Dismiss,
            DecisionName::Hide => Decision::Hide,
            DecisionName::Remove => Decision::Remove,
            DecisionName::Ban => Decision::Ban,
        }
    }
}

/// A report.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReportBody {
    /// One of the fixed reasons.
    pub reason: ReasonName,
    /// What is wrong, for the moderators only (at most 1000 characters).
    #[serde(default)]
    #[schema(max_length = 1000)]
    pub comment: Option<String>,
}

/// A moderator's decision on a reported item.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResolutionBody {
    /// dismiss, hide, remove or ban.
    pub decision: DecisionName,
    /// Why, shown to the author and in the public log (at most 1000 characters).
    #[serde(default)]
    #[schema(max_length = 1000)]
    pub reason: Option<String>,
    /// A ban's end (RFC 3339, in the future); absent: for good. Only with `ban`.
    #[serde(default)]
    #[schema(format = DateTime)]
    pub until: Option<String>,
}

/// Queue arguments.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct QueueArgs {
    /// `open` (default): items with an unresolved report; `resolved`: the rest.
    #[param(pattern = "^(open|resolved)$")]
    pub state: Option<String>,
    /// At most this many items (1–100, default 50).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<i64>,
}

/// Log arguments.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LogArgs {
    /// Entries before this position (the last `pos` of the previous page).
    #[param(minimum = 1)]
    pub before: Option<i64>,
    /// At most this many entries (1–100, default 50).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<i64>,
}

/// A circle's report queue.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReportQueue {
    /// Reported items, oldest report first.
    pub items: Vec<ReportItem>,
}

/// A circle's bans.
#[derive(Debug, Serialize, ToSchema)]
pub struct BanList {
    /// Bans that hold now.
    pub items: Vec<CircleBan>,
}

/// A circle's moderation log.
#[derive(Debug, Serialize, ToSchema)]
pub struct ModerationLog {
    /// Entries, newest first.
    pub items: Vec<ModerationLogEntry>,
}

/// A comment or reason: at most [`MAX_NOTE_CHARS`] (400, as the schema says), and no control
/// characters but newlines (422: the schema allows any string, the log keeps only text).
fn note(text: Option<String>, field: &str) -> ApiResult<String> {
    let text = text.unwrap_or_default().trim().to_owned();
    if text.chars().count() > MAX_NOTE_CHARS {
        return Err(ApiError::bad_request(
            "invalid_note",
            format!("{field} must be at most {MAX_NOTE_CHARS} characters"),
        ));
    }
    if text.chars().any(|c| c.is_control() && c != '\n') {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_note",
            format!("{field} must not contain control characters other than newlines"),
        ));
    }
    Ok(text)
}

fn limit(raw: Option<i64>) -> ApiResult<i64> {
    let limit = raw.unwrap_or(50);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::bad_request(
            "invalid_limit",
            "limit must be between 1 and 100",
        ));
    }
    Ok(limit)
}

/// Report an activity you can read to the moderators of its circles.
#[utoipa::path(post, path = "/api/v1/activities/{id}/reports", tag = "moderation", security(("bearer" = [])),
    params(("id" = String, Path)), request_body = ReportBody,
    responses((status = 201, body = Report), (status = 400), (status = 404), (status = 409, description = "already reported"),
        (status = 410, description = "retracted"), (status = 422, description = "your own activity, or control characters in the comment")))]
pub async fn report(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<ReportBody>,
) -> ApiResult<(StatusCode, Json<Report>)> {
    let comment = note(body.comment, "comment")?;
    let report = state
        .store
        .report(auth.user, &id, body.reason.into(), comment)
        .await?;
    Ok((StatusCode::CREATED, Json(report)))
}

/// A circle's report queue: each reported item with its reports and its author's record
/// (owner, moderators and site admins only).
#[utoipa::path(get, path = "/api/v1/circles/{name}/reports", tag = "moderation", security(("bearer" = [])),
    params(("name" = String, Path), QueueArgs),
    responses((status = 200, body = ReportQueue), (status = 400), (status = 403), (status = 404)))]
pub async fn queue(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath(name): ApiPath<String>,
    ApiQuery(args): ApiQuery<QueueArgs>,
) -> ApiResult<Json<ReportQueue>> {
    let open = match args.state.as_deref() {
        None | Some("open") => true,
        Some("resolved") => false,
        Some(_) => {
            return Err(ApiError::bad_request(
                "invalid_state",
                "state must be open or resolved",
            ));
        }
    };
    let limit = limit(args.limit)?;
    let items = state
        .store
        .report_queue(&name, auth.user, open, limit)
        .await?;
    Ok(Json(ReportQueue { items }))
}

/// Resolve every open report on an item in the circle with one decision (recorded as an
/// activity in the circle's moderation log and sent to the author).
#[utoipa::path(post, path = "/api/v1/circles/{name}/reports/{id}/resolution", tag = "moderation", security(("bearer" = [])),
    params(("name" = String, Path), ("id" = String, Path, description = "the reported activity")),
    request_body = ResolutionBody,
    responses((status = 200, body = Resolution), (status = 400), (status = 403), (status = 404),
        (status = 409, description = "already resolved, or the owner"),
        (status = 422, description = "until in the past or without a ban; control characters in the reason")))]
pub async fn resolve(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath((name, id)): ApiPath<(String, String)>,
    ApiJson(body): ApiJson<ResolutionBody>,
) -> ApiResult<Json<Resolution>> {
    let decision: Decision = body.decision.into();
    let reason = note(body.reason, "reason")?;
    let until = match body.until {
        None => None,
        // Well-formed but meaningless here: 422, not 400 (the schema cannot say it).
        Some(_) if decision != Decision::Ban => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_until",
                "until is for bans only",
            ));
        }
        Some(raw) => {
            let until = tidings_store::canonical_time(&raw).ok_or_else(|| {
                ApiError::bad_request("invalid_until", "until must be an RFC 3339 time")
            })?;
            if until <= tidings_store::now_rfc3339() {
                return Err(ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid_until",
                    "until must be in the future",
                ));
            }
            Some(until)
        }
    };
    let resolution = state
        .store
        .resolve_reports(
            &name,
            &id,
            auth.user,
            DecisionInput {
                decision,
                reason,
                until,
            },
        )
        .await?;
    Ok(Json(resolution))
}

/// Bans that hold now in a circle (owner, moderators and site admins only).
#[utoipa::path(get, path = "/api/v1/circles/{name}/bans", tag = "moderation", security(("bearer" = [])),
    params(("name" = String, Path)),
    responses((status = 200, body = BanList), (status = 403), (status = 404)))]
pub async fn bans(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<Json<BanList>> {
    let items = state.store.circle_bans(&name, auth.user).await?;
    Ok(Json(BanList { items }))
}

/// A circle's public moderation log, for anyone who can read the circle: who decided what,
/// when and why. Reporters are named to the circle's moderators only.
#[utoipa::path(get, path = "/api/v1/circles/{name}/moderation-log", tag = "moderation", security(("bearer" = [])),
    params(("name" = String, Path), LogArgs),
    responses((status = 200, body = ModerationLog), (status = 400), (status = 404)))]
pub async fn log(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath(name): ApiPath<String>,
    ApiQuery(args): ApiQuery<LogArgs>,
) -> ApiResult<Json<ModerationLog>> {
    let limit = limit(args.limit)?;
    if args.before.is_some_and(|b| b < 1) {
        return Err(ApiError::bad_request(
            "invalid_before",
            "before must be a position of at least 1",
        ));
    }
    let items = state
        .store
        .moderation_log(&name, auth.user, args.before, limit)
        .await?;
    Ok(Json(ModerationLog { items }))
}

/// People the caller blocks or mutes.
#[derive(Debug, Serialize, ToSchema)]
pub struct PeopleList {
    /// Usernames, in order.
    pub items: Vec<String>,
}

/// Whom the caller blocks or mutes.
#[derive(Debug, Serialize, ToSchema)]
pub struct Silenced {
    /// The person.
    pub username: String,
    /// block or mute.
    pub kind: String,
}

async fn put_silence(
    state: AppState,
    auth: AuthUser,
    username: String,
    kind: SilenceKind,
) -> ApiResult<(StatusCode, Json<Silenced>)> {
    let created = state.store.silence(auth.user, &username, kind).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let kind = match kind {
        SilenceKind::Block => "block",
        SilenceKind::Mute => "mute",
    };
    Ok((
        status,
        Json(Silenced {
            username,
            kind: kind.into(),
        }),
    ))
}

/// Block a person: they cannot address, follow or reply to you, any follow between you ends,
/// and you never see their activities.
#[utoipa::path(put, path = "/api/v1/me/blocks/{username}", tag = "moderation", security(("bearer" = [])),
    params(("username" = String, Path)),
    responses((status = 201, body = Silenced, description = "blocked"), (status = 200, body = Silenced, description = "already blocked, or a mute made a block"),
        (status = 404), (status = 422, description = "yourself")))]
pub async fn block(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath(username): ApiPath<String>,
) -> ApiResult<(StatusCode, Json<Silenced>)> {
    put_silence(state, auth, username, SilenceKind::Block).await
}

/// Mute a person: you stop seeing their activities (they are not told, and may still reach you).
#[utoipa::path(put, path = "/api/v1/me/mutes/{username}", tag = "moderation", security(("bearer" = [])),
    params(("username" = String, Path)),
    responses((status = 201, body = Silenced, description = "muted"), (status = 200, body = Silenced, description = "already muted, or a block made a mute"),
        (status = 404), (status = 422, description = "yourself")))]
pub async fn mute(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath(username): ApiPath<String>,
) -> ApiResult<(StatusCode, Json<Silenced>)> {
    put_silence(state, auth, username, SilenceKind::Mute).await
}

/// Lift a block.
#[utoipa::path(delete, path = "/api/v1/me/blocks/{username}", tag = "moderation", security(("bearer" = [])),
    params(("username" = String, Path)), responses((status = 204), (status = 404)))]
pub async fn unblock(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath(username): ApiPath<String>,
) -> ApiResult<StatusCode> {
    state
        .store
        .unsilence(auth.user, &username, SilenceKind::Block)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Lift a mute.
#[utoipa::path(delete, path = "/api/v1/me/mutes/{username}", tag = "moderation", security(("bearer" = [])),
    params(("username" = String, Path)), responses((status = 204), (status = 404)))]
pub async fn unmute(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath(username): ApiPath<String>,
) -> ApiResult<StatusCode> {
    state
        .store
        .unsilence(auth.user, &username, SilenceKind::Mute)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// People you block.
#[utoipa::path(get, path = "/api/v1/me/blocks", tag = "moderation", security(("bearer" = [])),
    responses((status = 200, body = PeopleList)))]
pub async fn blocks(State(state): State<AppState>, auth: AuthUser) -> ApiResult<Json<PeopleList>> {
    let items = state.store.silenced(auth.user, SilenceKind::Block).await?;
    Ok(Json(PeopleList { items }))
}

/// People you mute.
#[utoipa::path(get, path = "/api/v1/me/mutes", tag = "moderation", security(("bearer" = [])),
    responses((status = 200, body = PeopleList)))]
pub async fn mutes(State(state): State<AppState>, auth: AuthUser) -> ApiResult<Json<PeopleList>> {
    let items = state.store.silenced(auth.user, SilenceKind::Mute).await?;
    Ok(Json(PeopleList { items }))
}

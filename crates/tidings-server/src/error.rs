//! The one place where failures become HTTP: every error has a stable code, a status and a
//! message, and renders as `{"error": {"code", "message", "details"}}`.

use axum::extract::path::ErrorKind;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tidings_store::StoreError;

/// An API failure.
#[derive(Debug, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable machine-readable code.
    pub code: &'static str,
    /// Human-readable message.
    pub message: String,
    /// Extra structured context (field, position, tombstone…).
    pub details: Option<Value>,
}

impl ApiError {
    /// An error with no details.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            details: None,
        }
    }

    /// A 429's wait in seconds (what `Retry-After` says), from its details.
    pub fn retry_after(&self) -> Option<u64> {
        (self.status == StatusCode::TOO_MANY_REQUESTS)
            .then(|| self.details.as_ref()?.get("retry_after")?.as_u64())
            .flatten()
    }

    /// Adds details.
    pub fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    /// 400 with a machine-readable code.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 401.
    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthenticated", message)
    }

    /// 403.
    pub fn forbidden(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, code, message)
    }

    /// 404.
    pub fn not_found(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{what} not found"),
        )
    }

    /// 500 whose cause is logged, never returned.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "something went wrong on our side; it has been logged",
        )
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound { what } => ApiError::not_found(what),
            StoreError::Conflict { code, message } => {
                ApiError::new(StatusCode::CONFLICT, code, message)
            }
            StoreError::Forbidden { code, message } => ApiError::forbidden(code, message),
            StoreError::Unprocessable { code, message } => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
            }
            StoreError::Gone { tombstone } => ApiError::new(
                StatusCode::GONE,
                "activity_retracted",
                "this activity was retracted by its author",
            )
            .with_details(json!({ "tombstone": tombstone })),
            StoreError::Closed => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "shutting_down",
                "the server is shutting down; retry shortly",
            ),
            StoreError::Unavailable(cause) => {
                tracing::warn!(error = %cause, "store unavailable");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "store_unavailable",
                    "the database cannot be reached right now; retry shortly",
                )
            }
            other => ApiError::internal(other),
        }
    }
}

impl From<crate::integration::error::BusError> for ApiError {
    fn from(e: crate::integration::error::BusError) -> Self {
        use crate::integration::error::BusError as E;
        let message = e.to_string();
        match e {
            E::InvalidFilter(f) => ApiError::bad_request("invalid_filter", message)
                .with_details(json!({ "position": f.position })),
            E::InvalidScope(_) => ApiError::bad_request("invalid_scope", message),
            E::InvalidName => ApiError::bad_request("invalid_name", message),
            E::InvalidUrl(_) => ApiError::bad_request("invalid_url", message),
            E::UrlNotAllowed(_) => ApiError::bad_request("url_not_allowed", message),
            E::InvalidTime(_) => ApiError::bad_request("invalid_time", message),
            E::InvalidState => ApiError::bad_request("invalid_state", message),
            E::InvalidPosition(_) => ApiError::bad_request("invalid_position", message),
            E::OutOfRange { field, .. } => ApiError::bad_request("invalid_argument", message)
                .with_details(json!({ "field": field })),
            E::WrongMode { .. } => ApiError::new(StatusCode::CONFLICT, "wrong_mode", message),
            E::Paused => ApiError::new(StatusCode::CONFLICT, "subscription_paused", message),
            E::UnknownQueue(_) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "unknown_queue", message)
            }
            E::MissingScope(_) => ApiError::forbidden("missing_scope", message),
            E::ServiceKeyNotAllowed => ApiError::forbidden("service_key_not_allowed", message),
            E::InvalidSchedule(e) => {
                use tidings_core::schedule::ScheduleError as S;
                let code = match e {
                    S::Cron(_) => "invalid_cron",
                    S::TimeZone(_) => "invalid_timezone",
                    S::Instant(_) => "invalid_time",
                };
                ApiError::bad_request(code, message)
            }
            E::ScheduleNotAllowed => ApiError::forbidden("schedule_not_allowed", message),
            E::NoResponder(id) => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "no_responder", message)
                    .with_details(json!({ "id": id }))
            }
            E::ReplyTimeout(id) => {
                ApiError::new(StatusCode::GATEWAY_TIMEOUT, "reply_timeout", message)
                    .with_details(json!({ "id": id }))
            }
        }
    }
}

impl From<tidings_core::activity::ActivityError> for ApiError {
    fn from(e: tidings_core::activity::ActivityError) -> Self {
        let status = if e.code == "unknown_type" {
            StatusCode::UNPROCESSABLE_ENTITY
        } else {
            StatusCode::BAD_REQUEST
        };
        ApiError::new(status, e.code, e.message).with_details(json!({ "field": e.field }))
    }
}

impl From<tidings_core::search::QueryError> for ApiError {
    fn from(e: tidings_core::search::QueryError) -> Self {
        ApiError::bad_request(e.code(), e.to_string()).with_details(json!({ "field": "q" }))
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        // axum splits body errors into 400 (syntax) and 422 (well-formed but the wrong shape);
        // to a client both mean "fix your body", so both are the one documented 400. Only size
        // and content type keep their own statuses, since the fix for those is different.
        match rejection.status() {
            StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                rejection.body_text(),
            ),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                rejection.body_text(),
            ),
            _ => ApiError::bad_request("invalid_json", rejection.body_text()),
        }
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        // axum answers 5xx when the route and the extractor disagree (wrong arity, unsupported
        // type, no params at all): that is our bug, not the client's, so it is logged as one.
        if rejection.status().is_server_error() {
            return ApiError::internal(rejection.body_text());
        }
        let error = ApiError::bad_request("invalid_path", rejection.body_text());
        match path_param_name(&rejection) {
            Some(param) => error.with_details(json!({ "param": param })),
            None => error,
        }
    }
}

/// The name of the path parameter a rejection is about, when axum says which one.
fn path_param_name(rejection: &PathRejection) -> Option<&str> {
    let PathRejection::FailedToDeserializePathParams(failed) = rejection else {
        return None;
    };
    match failed.kind() {
        ErrorKind::InvalidUtf8InPathParam { key }
        | ErrorKind::ParseErrorAtKey { key, .. }
        | ErrorKind::DeserializeError { key, .. } => Some(key.as_str()),
        _ => None,
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        ApiError::bad_request("invalid_query", rejection.body_text())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        // A rate-limited request says when to come back in the header as well as the body.
        let retry_after = self.retry_after();
        let mut error = json!({ "code": self.code, "message": self.message });
        if let Some(details) = self.details {
            error["details"] = details;
        }
        let mut response = (self.status, axum::Json(json!({ "error": error }))).into_response();
        with_retry_after(&mut response, retry_after);
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            // Every 503 here is transient (shutdown, database away): say when to come back.
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("1"),
            );
        }
        response
    }
}

/// Adds `Retry-After` when there is a wait to tell (the compat profiles' errors use it too).
pub fn with_retry_after(response: &mut Response, retry_after: Option<u64>) {
    if let Some(secs) = retry_after {
        response.headers_mut().insert(
            axum::http::header::RETRY_AFTER,
            axum::http::HeaderValue::from(secs),
        );
    }
}

/// The body of every error response, as the OpenAPI document describes it.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// An error's code, message and optional details.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code, such as `session_expired`.
    pub code: String,
    /// Human-readable explanation.
    pub message: String,
    /// Extra structured context, when there is some.
    #[schema(value_type = Option<Object>)]
    pub details: Option<Value>,
}

/// Result alias for handlers.
pub type ApiResult<T> = Result<T, ApiError>;

//! Responses assembled from stored JSON text, so activities are served as stored instead of
//! being parsed and re-encoded.

use axum::http::header;
use axum::response::{IntoResponse, Response};

/// A body that is already JSON text.
#[derive(Debug)]
pub struct RawJson(pub String);

impl IntoResponse for RawJson {
    fn into_response(self) -> Response {
        ([(header::CONTENT_TYPE, "application/json")], self.0).into_response()
    }
}

//! Extractors whose rejections speak the API's error shape.

use crate::error::ApiError;
use axum::extract::{FromRequest, FromRequestParts};

/// JSON body; malformed or oversized bodies become clear 4xx errors.
#[derive(Debug, FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct ApiJson<T>(pub T);

/// Query string; malformed arguments become clear 400 errors.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct ApiQuery<T>(pub T);

/// Path parameters; undecodable or mistyped segments become clear 400 errors.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct ApiPath<T>(pub T);

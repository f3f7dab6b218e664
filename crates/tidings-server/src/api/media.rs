//! Media (decision 0026): `POST /media` uploads an image (raw body or multipart), `GET
//! /media/{id}` describes it, `GET /media/{id}/{size}` serves its bytes with `ETag` and
//! long-lived caching; avatars of people and circles point at media.
//!
//! Who may read a media object is the store's decision (its uploader; readers of a live
//! activity that attaches it; everyone for avatars and attachments of public activities);
//! anyone else gets the same 404 as for a media id that does not exist.

use crate::AppState;
use crate::auth::AuthUser;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::media::{Media, MediaError};
use axum::Json;
use axum::body::Body;
use axum::extract::{FromRequest, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tidings_core::media::normalize_alt;
use tidings_store::media::{AvatarOf, MediaAccess, NewMedia, StoredMedia};
use utoipa::{IntoParams, ToSchema};

/// Where media bytes are served (`{id}` and a size appended).
pub const MEDIA_PATH: &str = "/api/v1/media";

/// The caller if the request names one (a bad token is still a 401), or nobody.
pub struct MaybeAuth(pub Option<AuthUser>);

impl FromRequestParts<AppState> for MaybeAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if parts.headers.contains_key(header::AUTHORIZATION) {
            Ok(MaybeAuth(Some(
                AuthUser::from_request_parts(parts, state).await?,
            )))
        } else {
            Ok(MaybeAuth(None))
        }
    }
}

/// One stored size of a media object.
#[derive(Debug, Serialize, ToSchema)]
pub struct MediaSize {
    /// `original`, `medium` (≤ 1280 px on its long side) or `small` (≤ 400 px).
    pub name: String,
    /// Where its bytes are served.
    pub url: String,
    /// Its media type.
    #[serde(rename = "mediaType")]
    pub media_type: String,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Size in bytes.
    pub bytes: u64,
}

/// A media object: reference it from an activity's `attachment` (its `attachment` field is
/// ready to be put there).
#[derive(Debug, Serialize, ToSchema)]
pub struct MediaObject {
    /// Its id.
    pub id: String,
    /// Always `Image` (the only kind accepted so far).
    #[serde(rename = "type")]
    pub kind: String,
    /// The original's media type (as read from the bytes and re-encoded: `image/jpeg` or
    /// `image/png`).
    #[serde(rename = "mediaType")]
    pub media_type: String,
    /// Where the original is served.
    pub url: String,
    /// Width in pixels, orientation applied.
    pub width: u32,
    /// Height in pixels, orientation applied.
    pub height: u32,
    /// A blurhash placeholder to paint while the image loads.
    pub blurhash: String,
    /// Alt text.
    pub alt: Option<String>,
    /// The uploader's user name.
    pub owner: String,
    /// When it was uploaded.
    pub created_at: String,
    /// `ready`: processing happens before the upload is answered, so every size exists.
    pub state: String,
    /// The stored sizes: original, medium, small.
    pub variants: Vec<MediaSize>,
    /// The ActivityStreams attachment that references it (`type`, `mediaType`, `url`,
    /// `name` (the alt text), `width`, `height`, `blurhash`).
    #[schema(value_type = Object)]
    pub attachment: Value,
}

fn size_url(id: &str, size: &str) -> String {
    format!("{MEDIA_PATH}/{id}/{size}")
}

/// The API's view of a stored media object.
pub fn media_object(media: &StoredMedia) -> MediaObject {
    let url = size_url(&media.id, "original");
    let attachment = json!({
        "type": "Image",
        "mediaType": media.media_type,
        "url": url,
        "name": media.alt,
        "width": media.width,
        "height": media.height,
        "blurhash": media.blurhash,
    });
    MediaObject {
        id: media.id.clone(),
        kind: "Image".into(),
        media_type: media.media_type.clone(),
        url,
        width: media.width,
        height: media.height,
        blurhash: media.blurhash.clone(),
        alt: media.alt.clone(),
        owner: media.owner.clone(),
        created_at: media.created_at.clone(),
        state: "ready".into(),
        variants: media
            .variants
            .iter()
            .map(|v| MediaSize {
                name: v.name.clone(),
                url: size_url(&media.id, &v.name),
                media_type: v.media_type.clone(),
                width: v.width,
                height: v.height,
                bytes: v.bytes,
            })
            .collect(),
        attachment,
    }
}

fn service(state: &AppState) -> Result<&Media, ApiError> {
    state
        .media
        .as_ref()
        .ok_or_else(|| MediaError::Unconfigured.into())
}

/// Upload arguments.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UploadArgs {
    /// Alt text (≤ 1500 characters); a multipart `alt` field wins over it.
    #[param(max_length = 1500)]
    pub alt: Option<String>,
}

/// Upload an image (JPEG, PNG, GIF or WebP, told apart by its bytes): the raw file as the
/// body, or `multipart/form-data` with a `file` part and an optional `alt` part. It is
/// re-encoded without metadata (EXIF and GPS never leave the server), oriented, and given a
/// medium and a small size and a blurhash before the answer.
#[utoipa::path(
    post,
    path = "/api/v1/media",
    tag = "media",
    params(UploadArgs),
    request_body(
        description = "The image: raw bytes, or multipart/form-data with `file` and `alt`.",
        content(
            (ImageBytes = "application/octet-stream"),
            (ImageBytes = "image/jpeg"),
            (ImageBytes = "image/png"),
            (UploadForm = "multipart/form-data"),
        ),
    ),
    responses(
        (status = 201, description = "Stored and processed", body = MediaObject),
        (status = 400, description = "Alt text too long, malformed multipart", body = crate::openapi::ErrorBody),
        (status = 401, description = "Not signed in", body = crate::openapi::ErrorBody),
        (status = 413, description = "Larger than `[media] max_bytes`", body = crate::openapi::ErrorBody),
        (status = 415, description = "Not a JPEG, PNG, GIF or WebP image", body = crate::openapi::ErrorBody),
        (status = 422, description = "Empty, undecodable (truncated, corrupt) or more pixels than `[media] max_pixels`", body = crate::openapi::ErrorBody),
        (status = 503, description = "Every image worker busy (`media_busy`, retry), or no media store", body = crate::openapi::ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn upload(
    State(state): State<AppState>,
    caller: AuthUser,
    ApiQuery(args): ApiQuery<UploadArgs>,
    request: Request,
) -> ApiResult<(StatusCode, HeaderMap, Json<MediaObject>)> {
    let media = service(&state)?.clone();
    let max_bytes = media.config().max_bytes;
    let is_form = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().starts_with("multipart/form-data"));
    let (bytes, alt) = if is_form {
        read_form(request, &state, max_bytes, args.alt).await?
    } else {
        let limit = usize::try_from(max_bytes).unwrap_or(usize::MAX);
        let bytes = axum::body::to_bytes(request.into_body(), limit.saturating_add(1))
            .await
            .map_err(|_| too_large(max_bytes))?;
        (bytes, args.alt)
    };
    let alt = normalize_alt(alt.as_deref()).map_err(MediaError::from)?;
    let processed = media.ingest(bytes).await?;
    let original = processed
        .sizes
        .first()
        .ok_or_else(|| ApiError::internal("processing produced no sizes"))?;
    let new = NewMedia {
        media_type: original.media_type.to_owned(),
        width: original.width,
        height: original.height,
        blurhash: processed.blurhash.clone(),
        alt,
        variants: processed
            .sizes
            .iter()
            .map(|s| tidings_store::media::MediaVariant {
                name: s.name.to_owned(),
                key: s.key.clone(),
                media_type: s.media_type.to_owned(),
                width: s.width,
                height: s.height,
                bytes: s.bytes.len() as u64,
            })
            .collect(),
    };
    let stored = state.store.create_media(&caller.user, new).await?;
    let object = media_object(&stored);
    let mut headers = HeaderMap::new();
    if let Ok(location) = HeaderValue::from_str(&format!("{MEDIA_PATH}/{}", stored.id)) {
        headers.insert(header::LOCATION, location);
    }
    tracing::info!(media = %stored.id, owner = %caller.user.username, "media uploaded");
    Ok((StatusCode::CREATED, headers, Json(object)))
}

/// Raw image bytes (a body or a response).
#[derive(Debug, ToSchema)]
#[schema(value_type = String, format = Binary)]
pub struct ImageBytes(#[allow(dead_code)] Vec<u8>);

/// The multipart form of an upload (only these two parts).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct UploadForm {
    /// The image file.
    #[schema(value_type = String, format = Binary, min_length = 1)]
    file: Vec<u8>,
    /// Alt text.
    #[schema(max_length = 1500)]
    alt: Option<String>,
}

fn too_large(limit: u64) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "media_too_large",
        format!("the upload is larger than {limit} bytes"),
    )
    .with_details(json!({ "limit": limit }))
}

/// Reads a multipart upload: its one `file` part and an optional `alt`; any other part is a
/// 400 (the documented form has exactly these two).
async fn read_form(
    request: Request,
    state: &AppState,
    max_bytes: u64,
    alt: Option<String>,
) -> ApiResult<(bytes::Bytes, Option<String>)> {
    let mut form = axum::extract::Multipart::from_request(request, state)
        .await
        .map_err(|e| MediaError::BadForm(e.body_text()))?;
    let mut file = None;
    let mut alt = alt;
    loop {
        let field = match form.next_field().await {
            Ok(Some(field)) => field,
            Ok(None) => break,
            Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                return Err(too_large(max_bytes));
            }
            Err(e) => return Err(MediaError::BadForm(e.body_text()).into()),
        };
        let name = field.name().unwrap_or("").to_owned();
        if name == "file" && file.is_none() {
            let bytes = field.bytes().await.map_err(|e| {
                if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    too_large(max_bytes)
                } else {
                    MediaError::BadForm(e.body_text()).into()
                }
            })?;
            if bytes.len() as u64 > max_bytes {
                return Err(too_large(max_bytes));
            }
            file = Some(bytes);
        } else if name == "alt" {
            let text = field
                .text()
                .await
                .map_err(|e| MediaError::BadForm(e.body_text()))?;
            alt = Some(text);
        } else {
            return Err(MediaError::BadForm(format!(
                "unexpected part {name:?}: a form holds one `file` and an optional `alt`"
            ))
            .into());
        }
    }
    let file = file.ok_or_else(|| MediaError::BadForm("the form has no `file` part".into()))?;
    Ok((file, alt))
}

/// A media id in a path.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct MediaId {
    /// The media id.
    pub id: String,
}

/// A media id and a size in a path.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct MediaSizePath {
    /// The media id.
    pub id: String,
    /// `original`, `medium` or `small`.
    #[param(pattern = "^(original|medium|small)$")]
    pub size: String,
}

async fn readable(
    state: &AppState,
    id: &str,
    viewer: Option<&AuthUser>,
) -> ApiResult<(StoredMedia, MediaAccess)> {
    if !tidings_core::media::is_media_id(id) {
        return Err(ApiError::not_found("media"));
    }
    state
        .store
        .readable_media(id, viewer.map(|c| &c.user))
        .await?
        .ok_or_else(|| ApiError::not_found("media"))
}

/// Describe a media object (sizes, blurhash, alt text). Its uploader, readers of an activity
/// that attaches it, and for avatars and public attachments anyone, may read it.
#[utoipa::path(
    get,
    path = "/api/v1/media/{id}",
    tag = "media",
    params(MediaId),
    responses(
        (status = 200, description = "The media object", body = MediaObject),
        (status = 401, description = "A bad token", body = crate::openapi::ErrorBody),
        (status = 404, description = "No such media, or not readable by the caller", body = crate::openapi::ErrorBody),
    ),
    security((), ("bearer" = []))
)]
pub async fn get_media(
    State(state): State<AppState>,
    MaybeAuth(caller): MaybeAuth,
    ApiPath(MediaId { id }): ApiPath<MediaId>,
) -> ApiResult<Json<MediaObject>> {
    let (media, _) = readable(&state, &id, caller.as_ref()).await?;
    Ok(Json(media_object(&media)))
}

/// A size's bytes. `ETag` is the blob's content hash; `If-None-Match` answers 304. Media that
/// everyone may read are cacheable for a year by anyone (`public, immutable`: the bytes under
/// a URL never change); the others only by the caller, revalidated on each use, so that a
/// retraction or a left circle takes effect.
#[utoipa::path(
    get,
    path = "/api/v1/media/{id}/{size}",
    tag = "media",
    params(MediaSizePath),
    responses(
        (status = 200, description = "The image", content(
            (ImageBytes = "image/jpeg"), (ImageBytes = "image/png"))),
        (status = 304, description = "Not modified (`If-None-Match` matched)"),
        (status = 401, description = "A bad token", body = crate::openapi::ErrorBody),
        (status = 404, description = "No such media or size, or not readable by the caller", body = crate::openapi::ErrorBody),
        (status = 503, description = "The blob store cannot be reached", body = crate::openapi::ErrorBody),
    ),
    security((), ("bearer" = []))
)]
pub async fn get_bytes(
    State(state): State<AppState>,
    MaybeAuth(caller): MaybeAuth,
    ApiPath(MediaSizePath { id, size }): ApiPath<MediaSizePath>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let (media, access) = readable(&state, &id, caller.as_ref()).await?;
    serve_size(&state, &media, access, &size, &headers).await
}

/// Answers a size of `media` (shared with the avatar routes).
async fn serve_size(
    state: &AppState,
    media: &StoredMedia,
    access: MediaAccess,
    size: &str,
    headers: &HeaderMap,
) -> ApiResult<Response> {
    let variant = media
        .variant(size)
        .ok_or_else(|| ApiError::not_found("media size"))?;
    let digest = variant.key.rsplit('/').next().unwrap_or(&variant.key);
    let etag = format!("\"{digest}\"");
    let cache = match access {
        MediaAccess::Public => "public, max-age=31536000, immutable",
        MediaAccess::Private => "private, no-cache",
    };
    let mut builder = Response::builder()
        .header(header::ETAG, &etag)
        .header(header::CACHE_CONTROL, cache)
        .header(header::VARY, "Authorization")
        .header("x-content-type-options", "nosniff");
    let matched = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .map(|t| t.trim().trim_start_matches("W/"))
                .any(|t| t == etag || t == "*")
        });
    if matched {
        builder = builder.status(StatusCode::NOT_MODIFIED);
        return builder.body(Body::empty()).map_err(ApiError::internal);
    }
    let bytes = service(state)?
        .blobs()
        .get(&variant.key)
        .await?
        .ok_or_else(|| {
            tracing::error!(media = %media.id, key = %variant.key, "a stored media blob is missing");
            ApiError::not_found("media blob")
        })?;
    builder
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, &variant.media_type)
        .header(header::CONTENT_LENGTH, bytes.len())
        .body(Body::from(bytes))
        .map_err(ApiError::internal)
}

/// An avatar to set.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AvatarBody {
    /// A media id you uploaded; null removes the avatar.
    pub media: Option<String>,
}

/// The avatar now in place.
#[derive(Debug, Serialize, ToSchema)]
pub struct AvatarView {
    /// The media object, or null when there is none.
    pub avatar: Option<MediaObject>,
}

/// Set (or, with `media: null`, remove) your avatar: a media id you uploaded. Avatars are
/// readable by everyone.
#[utoipa::path(
    put,
    path = "/api/v1/me/avatar",
    tag = "media",
    request_body = AvatarBody,
    responses(
        (status = 200, description = "The avatar now in place", body = AvatarView),
        (status = 400, description = "Malformed body", body = crate::openapi::ErrorBody),
        (status = 401, description = "Not signed in", body = crate::openapi::ErrorBody),
        (status = 422, description = "Not a media object you uploaded", body = crate::openapi::ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn put_my_avatar(
    State(state): State<AppState>,
    caller: AuthUser,
    ApiJson(body): ApiJson<AvatarBody>,
) -> ApiResult<Json<AvatarView>> {
    let of = AvatarOf::User(caller.user.username.clone());
    set_avatar(&state, of, body, &caller).await
}

/// A circle name in a path.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct CircleName {
    /// The circle.
    pub name: String,
}

/// Set (or remove) a circle's avatar; its owner and moderators may.
#[utoipa::path(
    put,
    path = "/api/v1/circles/{name}/avatar",
    tag = "media",
    params(CircleName),
    request_body = AvatarBody,
    responses(
        (status = 200, description = "The avatar now in place", body = AvatarView),
        (status = 400, description = "Malformed body", body = crate::openapi::ErrorBody),
        (status = 401, description = "Not signed in", body = crate::openapi::ErrorBody),
        (status = 403, description = "Not the circle's owner or a moderator", body = crate::openapi::ErrorBody),
        (status = 404, description = "No such circle", body = crate::openapi::ErrorBody),
        (status = 422, description = "Not a media object you uploaded", body = crate::openapi::ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn put_circle_avatar(
    State(state): State<AppState>,
    caller: AuthUser,
    ApiPath(CircleName { name }): ApiPath<CircleName>,
    ApiJson(body): ApiJson<AvatarBody>,
) -> ApiResult<Json<AvatarView>> {
    set_avatar(&state, AvatarOf::Circle(name), body, &caller).await
}

async fn set_avatar(
    state: &AppState,
    of: AvatarOf,
    body: AvatarBody,
    caller: &AuthUser,
) -> ApiResult<Json<AvatarView>> {
    if let Some(id) = &body.media
        && !tidings_core::media::is_media_id(id)
    {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_media",
            format!("{id:?} is not a media id"),
        ));
    }
    let set = state.store.set_avatar(of, body.media, &caller.user).await?;
    Ok(Json(AvatarView {
        avatar: set.as_ref().map(media_object),
    }))
}

/// Which size of an avatar.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AvatarArgs {
    /// `small` (default), `medium` or `original`.
    #[param(pattern = "^(original|medium|small)$")]
    pub size: Option<String>,
}

/// A user name in a path.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct Username {
    /// The person.
    pub username: String,
}

/// A person's avatar image (no token needed: avatars are public). 404 when they have none.
#[utoipa::path(
    get,
    path = "/api/v1/users/{username}/avatar",
    tag = "media",
    params(Username, AvatarArgs),
    responses(
        (status = 200, description = "The image", content(
            (ImageBytes = "image/jpeg"), (ImageBytes = "image/png"))),
        (status = 304, description = "Not modified"),
        (status = 400, description = "Bad size", body = crate::openapi::ErrorBody),
        (status = 404, description = "No such person, or no avatar", body = crate::openapi::ErrorBody),
    ),
)]
pub async fn user_avatar(
    State(state): State<AppState>,
    ApiPath(Username { username }): ApiPath<Username>,
    ApiQuery(args): ApiQuery<AvatarArgs>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    avatar_bytes(&state, AvatarOf::User(username), args, &headers).await
}

/// A circle's avatar image (public, like the circle's name). 404 when it has none.
#[utoipa::path(
    get,
    path = "/api/v1/circles/{name}/avatar",
    tag = "media",
    params(CircleName, AvatarArgs),
    responses(
        (status = 200, description = "The image", content(
            (ImageBytes = "image/jpeg"), (ImageBytes = "image/png"))),
        (status = 304, description = "Not modified"),
        (status = 400, description = "Bad size", body = crate::openapi::ErrorBody),
        (status = 404, description = "No such circle, or no avatar", body = crate::openapi::ErrorBody),
    ),
)]
pub async fn circle_avatar(
    State(state): State<AppState>,
    ApiPath(CircleName { name }): ApiPath<CircleName>,
    ApiQuery(args): ApiQuery<AvatarArgs>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    avatar_bytes(&state, AvatarOf::Circle(name), args, &headers).await
}

async fn avatar_bytes(
    state: &AppState,
    of: AvatarOf,
    args: AvatarArgs,
    headers: &HeaderMap,
) -> ApiResult<Response> {
    let size = args.size.unwrap_or_else(|| "small".into());
    if !matches!(size.as_str(), "original" | "medium" | "small") {
        return Err(ApiError::bad_request(
            "bad_size",
            "size is original, medium or small",
        ));
    }
    let media = state
        .store
        .avatar(of)
        .await?
        .ok_or_else(|| ApiError::not_found("avatar"))?;
    let mut response = serve_size(state, &media, MediaAccess::Public, &size, headers).await?;
    // The avatar behind this URL changes when a new one is set: revalidate (cheap, by ETag).
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, no-cache"),
    );
    Ok(response.into_response())
}

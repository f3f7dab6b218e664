//! The integration bus's own failures; `crate::error` maps each to its status and code, once.

/// Why a bus request was refused.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// A topic filter does not parse (400 `invalid_filter`, with the position).
    #[error("the filter is invalid {0}")]
    InvalidFilter(#[from] tidings_core::filter::FilterError),
    /// A scope that does not exist (400 `invalid_scope`).
    #[error("unknown scope {0:?}: use publish or subscribe")]
    InvalidScope(String),
    /// A service or topic name that is not a slug (400 `invalid_name`).
    #[error(
        "a name is 1 to 63 lowercase letters, digits, '-' or '_', starting with a letter or digit"
    )]
    InvalidName,
    /// A webhook URL that is not an absolute http(s) URL (400 `invalid_url`).
    #[error("{0}")]
    InvalidUrl(String),
    /// A webhook URL whose address is refused (400 `url_not_allowed`): loopback, private,
    /// link-local or metadata ranges, unless the config allows them.
    #[error("{0}")]
    UrlNotAllowed(String),
    /// A time in the past or unparsable (400 `invalid_time`).
    #[error("{0}")]
    InvalidTime(String),
    /// The service lacks a scope (403 `missing_scope`).
    #[error("this service lacks the {0:?} scope")]
    MissingScope(&'static str),
    /// A service key used where a user's session is needed (403 `service_key_not_allowed`).
    #[error("a service key cannot act as a user here; use a session token")]
    ServiceKeyNotAllowed,
    /// An invalid state filter on a listing (400 `invalid_state`).
    #[error("state is pending, delivered or dead")]
    InvalidState,
    /// A replay or start point that is not `beginning`, `now`, a log position or an RFC 3339
    /// time (400 `invalid_position`).
    #[error("{0}")]
    InvalidPosition(String),
    /// A number out of its range (400 `invalid_argument`, with the field).
    #[error("{field} must be between {min} and {max}")]
    OutOfRange {
        /// The field.
        field: &'static str,
        /// Smallest allowed.
        min: i64,
        /// Largest allowed.
        max: i64,
    },
    /// The operation belongs to another mode (409 `wrong_mode`): pulling from a webhook…
    #[error("this is a {actual} subscription; {operation} needs a {wanted} one")]
    WrongMode {
        /// What the operation was.
        operation: &'static str,
        /// The mode it needs.
        wanted: &'static str,
        /// The subscription's mode.
        actual: String,
    },
    /// The subscription is paused (409 `subscription_paused`).
    #[error("the subscription is paused; resume it first")]
    Paused,
    /// A queue subscription's queue does not exist (422 `unknown_queue`).
    #[error("no queue is named {0:?}")]
    UnknownQueue(String),
    /// A cron expression, time zone or `publish_at` refused (400 `invalid_cron`,
    /// `invalid_timezone`, `invalid_time`).
    #[error("{0}")]
    InvalidSchedule(#[from] tidings_core::schedule::ScheduleError),
    /// Only admins and services with `publish` schedule activities (403
    /// `schedule_not_allowed`).
    #[error("only admins and services with the publish scope schedule activities")]
    ScheduleNotAllowed,
    /// A sync publish that no active subscription is owed (503 `no_responder`); the activity
    /// is stored, its id in `details.id`.
    #[error("no subscription will reply to this activity (it is stored: details.id)")]
    NoResponder(String),
    /// A sync publish's deadline passed (504 `reply_timeout`); the activity is stored and
    /// delivered on, its id in `details.id`.
    #[error("no reply came in time; the activity is stored and its delivery goes on (details.id)")]
    ReplyTimeout(String),
}

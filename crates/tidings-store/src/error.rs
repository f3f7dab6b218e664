//! Typed store failures. The HTTP edge maps each variant to one status, once.

use serde_json::Value;

/// Everything a store operation can refuse or fail with.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The named thing does not exist (or the caller may not know that it does).
    #[error("{what} not found")]
    NotFound {
        /// What was looked for: "user", "circle", "activity", …
        what: &'static str,
    },
    /// The request conflicts with existing state (a taken name, a duplicate).
    #[error("{message}")]
    Conflict {
        /// Machine-readable code.
        code: &'static str,
        /// Human-readable explanation.
        message: String,
    },
    /// The caller is not allowed to do this.
    #[error("{message}")]
    Forbidden {
        /// Machine-readable code.
        code: &'static str,
        /// Human-readable explanation.
        message: String,
    },
    /// The request is well-formed but cannot be applied (unknown addressee, archived circle…).
    #[error("{message}")]
    Unprocessable {
        /// Machine-readable code.
        code: &'static str,
        /// Human-readable explanation.
        message: String,
    },
    /// The activity was retracted; the tombstone says by what and when.
    #[error("activity was retracted")]
    Gone {
        /// The AS2 Tombstone shown instead.
        tombstone: Value,
    },
    /// The database failed (SQLite or PostgreSQL).
    #[error("{0}")]
    Sql(crate::sql::SqlError),
    /// The database cannot be reached right now (PostgreSQL down or restarting); retry later.
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    /// Stored data could not be decoded.
    #[error("corrupt stored data: {0}")]
    Corrupt(String),
    /// Another process holds the data directory.
    #[error("another Tidings process (serve or seed) is using {dir}; stop it first")]
    Locked {
        /// The data directory.
        dir: String,
    },
    /// The writer thread is gone (shutting down).
    #[error("store is shutting down")]
    Closed,
}

impl StoreError {
    /// Shorthand for [`StoreError::Conflict`].
    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        StoreError::Conflict {
            code,
            message: message.into(),
        }
    }
    /// Shorthand for [`StoreError::Forbidden`].
    pub fn forbidden(code: &'static str, message: impl Into<String>) -> Self {
        StoreError::Forbidden {
            code,
            message: message.into(),
        }
    }
    /// Shorthand for [`StoreError::Unprocessable`].
    pub fn unprocessable(code: &'static str, message: impl Into<String>) -> Self {
        StoreError::Unprocessable {
            code,
            message: message.into(),
        }
    }
    /// Shorthand for [`StoreError::NotFound`].
    pub fn not_found(what: &'static str) -> Self {
        StoreError::NotFound { what }
    }
}

impl From<crate::sql::SqlError> for StoreError {
    fn from(e: crate::sql::SqlError) -> Self {
        // A lost connection is the database being away, not a fault of the request.
        if e.is_connection_lost() {
            StoreError::Unavailable(e.to_string())
        } else {
            StoreError::Sql(e)
        }
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Sql(e.into())
    }
}

impl From<serde_json::Error> for StoreError {
    fn from(e: serde_json::Error) -> Self {
        StoreError::Corrupt(e.to_string())
    }
}

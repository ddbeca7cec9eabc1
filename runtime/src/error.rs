//! The runtime layer's error type. Callers above (the API, the CLI) map each variant to a status
//! code or an exit code; nothing here knows about HTTP.

/// Errors raised by the runtime layer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The thing asked for does not exist (or belongs to another tenant, which is the same).
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The input is well formed but not acceptable.
    #[error("{0}")]
    Invalid(String),
    /// The change conflicts with existing state (a unique key, an illegal state transition).
    #[error("{0}")]
    Conflict(String),
    /// Configuration is missing or wrong; the message says which variable and how to fix it.
    #[error("configuration: {0}")]
    Config(String),
    /// A dependency (database, embedded cluster) is not available.
    #[error("unavailable: {0}")]
    Unavailable(String),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// True when the database rejected a write because of a UNIQUE constraint.
    pub fn is_unique_violation(&self) -> bool {
        matches!(self, Error::Database(sqlx::Error::Database(e)) if e.is_unique_violation())
    }
}

//! Errors of the sequence search.

use std::path::PathBuf;

/// What went wrong, naming the file or record concerned.
#[derive(Debug, thiserror::Error)]
pub enum MsaError {
    // The cause is in the message and not a `#[source]`: printed with `{:#}`, the chain
    // would say it twice.
    #[error("{}: {error}", path.display())]
    File {
        path: PathBuf,
        error: std::io::Error,
    },
    /// A database file that is not ours, from another format version, truncated or corrupt.
    #[error("database {path}: {message}")]
    Database { path: PathBuf, message: String },
    /// A record that cannot be used, e.g. an empty or non-protein query.
    #[error("{origin}: record {record:?}: {message}")]
    Record {
        origin: String,
        record: String,
        message: String,
    },
    #[error(transparent)]
    Io(#[from] ferrofold_io::IoError),
    #[error("{0}")]
    Invalid(String),
}

impl MsaError {
    /// Wraps an I/O error with the path it concerns.
    pub fn file(path: impl Into<PathBuf>, source: std::io::Error) -> MsaError {
        MsaError::File {
            path: path.into(),
            error: source,
        }
    }
}

pub type Result<T> = std::result::Result<T, MsaError>;

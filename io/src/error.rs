//! The crate's error type.

use std::path::PathBuf;

use crate::weights::PickleError;

/// Result alias for this crate.
pub type Result<T, E = IoError> = std::result::Result<T, E>;

/// Everything that can go wrong reading or writing ferrofold files.
#[derive(Debug, thiserror::Error)]
pub enum IoError {
    /// An operating-system error on `path`.
    // The cause is part of the message and deliberately not a `source`: error chains
    // printed with `{:#}` would say it twice.
    #[error("{}: {error}", path.display())]
    File {
        path: PathBuf,
        error: std::io::Error,
    },
    /// Malformed FASTA input; `message` names the line and record.
    #[error("{origin}: {message}")]
    Fasta { origin: String, message: String },
    /// A record name that cannot be used as an output file name.
    #[error("record {name:?} cannot be used as an output file name: {reason}")]
    OutputName { name: String, reason: String },
    /// A structure that the chosen output format cannot represent.
    #[error("cannot write structure: {0}")]
    Structure(String),
    /// A structure file (mmCIF/PDB) that cannot be read; `message` says why.
    #[error("{}: {message}", path.display())]
    StructureFile { path: PathBuf, message: String },
    /// A malformed or unsupported weights file.
    #[error("{origin}: {message}")]
    Weights { origin: String, message: String },
    /// A pickle (PyTorch checkpoint) that is malformed or asks for forbidden code.
    #[error("{origin}: {error}")]
    Pickle { origin: String, error: PickleError },
    /// A tensor the model needs is absent.
    #[error("tensor `{name}` not found in {origin}")]
    MissingTensor { name: String, origin: String },
    /// A tensor exists but has the wrong shape.
    #[error("tensor `{name}` in {origin} has shape {found:?}, expected {expected:?}")]
    ShapeMismatch {
        name: String,
        origin: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
}

impl IoError {
    /// Wraps an OS error with the path it concerns.
    pub(crate) fn file(path: impl Into<PathBuf>, error: std::io::Error) -> Self {
        Self::File {
            path: path.into(),
            error,
        }
    }

    pub(crate) fn format(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Self::StructureFile {
            path: path.into(),
            message: message.into(),
        }
    }

    pub(crate) fn weights(origin: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Weights {
            origin: origin.into(),
            message: message.into(),
        }
    }
}

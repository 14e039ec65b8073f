//! Errors of the forest: bad inputs or parameters ([`ForestError`]) and unreadable model files
//! ([`ModelFileError`]).

use std::path::PathBuf;

/// Why a matrix, a parameter set or a fit was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ForestError {
    /// A matrix needs at least one column.
    #[error("a matrix needs at least one column")]
    NoColumns,
    /// More columns than a forest can address ([`crate::forest::MAX_COLUMNS`]).
    #[error("{n_cols} columns are more than a forest can read")]
    TooManyColumns { n_cols: usize },
    /// The row-major data does not split into whole rows.
    #[error("{len} values do not split into rows of {n_cols} columns")]
    Ragged { len: usize, n_cols: usize },
    /// NaN or ±inf in the data; positions are 0-based.
    #[error("row {row}, column {column}: {value} is not a finite number")]
    NonFinite {
        row: usize,
        column: usize,
        value: f64,
    },
    /// Fitting needs at least one row.
    #[error("cannot fit a forest on an empty matrix (no rows)")]
    Empty,
    /// A parameter is out of range; `name` is the parameter as scikit-learn spells it.
    #[error("invalid {name} = {value}: expected {expected}")]
    InvalidParam {
        name: &'static str,
        value: String,
        expected: &'static str,
    },
}

/// Why a model file could not be written or read. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum ModelFileError {
    /// The file system refused.
    #[error("{path}: {action}: {source}", path = path.display())]
    Io {
        path: PathBuf,
        action: &'static str,
        source: std::io::Error,
    },
    /// The file does not start with the model file magic bytes.
    #[error("{path}: not an isolation forest model file (bad magic bytes)", path = path.display())]
    NotAModel { path: PathBuf },
    /// The file was written by a newer version of this program.
    #[error(
        "{path}: model format version {found} is newer than the supported version {supported}",
        path = path.display()
    )]
    NewerVersion {
        path: PathBuf,
        found: u32,
        supported: u32,
    },
    /// The file ends before the length its header announces.
    #[error("{path}: truncated: expected {expected} bytes, found {found}", path = path.display())]
    Truncated {
        path: PathBuf,
        expected: u64,
        found: u64,
    },
    /// The payload does not match its checksum.
    #[error(
        "{path}: corrupt: checksum mismatch (stored {stored:08x}, computed {computed:08x})",
        path = path.display()
    )]
    Checksum {
        path: PathBuf,
        stored: u32,
        computed: u32,
    },
    /// The checksum matched but the content is inconsistent.
    #[error("{path}: malformed model: {reason}", path = path.display())]
    Malformed { path: PathBuf, reason: String },
}

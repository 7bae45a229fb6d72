//! What can be wrong with the pipeline's inputs; every message names the record.

/// An input the feature pipeline cannot use.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("the query sequence is empty")]
    EmptyQuery,
    #[error(
        "query residue {position} is {residue:?}: expected one of the 20 amino acids \
         ARNDCQEGHILKMFPSTWYV or X"
    )]
    QueryResidue { position: usize, residue: char },
    #[error("{origin}: the MSA has no sequences")]
    EmptyMsa { origin: String },
    #[error(
        "{origin}: record `{record}` (line {line}) has {found} aligned columns, but the \
         query has {expected} residues"
    )]
    MsaLength {
        origin: String,
        record: String,
        line: usize,
        found: usize,
        expected: usize,
    },
    #[error(
        "{origin}: the first record `{record}` (line {line}) must be the query, but its \
         column {column} is {found:?} where the query has {expected:?}"
    )]
    QueryMismatch {
        origin: String,
        record: String,
        line: usize,
        column: usize,
        found: char,
        expected: char,
    },
    #[error(
        "{origin}: record `{record}` (line {line}), column {column}: {residue:?} is not an \
         MSA residue (an upper-case letter or '-')"
    )]
    MsaResidue {
        origin: String,
        record: String,
        line: usize,
        column: usize,
        residue: char,
    },
    #[error("invalid feature-pipeline configuration: {0}")]
    Config(String),
}

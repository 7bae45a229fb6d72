//! The sequence database: protein sequences and their headers in one memory-mapped
//! file, built once from FASTA ([`build_database`]) and opened by every search
//! ([`Database::open`]). The layout is described in `format.rs`.

mod build;
mod format;
mod kmer_index;
mod open;
#[cfg(test)]
mod tests;

pub use build::{
    build_database, BuildReport, SkipReason, Skipped, MAX_TARGET_LENGTH, SKIP_EXAMPLES,
};
pub use format::{FORMAT_VERSION, MAGIC};
pub use kmer_index::KmerIndex;
pub use open::Database;

//! File formats for ferrofold.
//!
//! - [`fasta`]: reading FASTA input.
//! - [`atomic`]: crash-safe writes and safe output file names.
//! - [`structure`], [`pdb`], [`mmcif`], [`cif`]: writing predicted structures.
//! - [`weights`]: loading model weights from safetensors files and PyTorch checkpoints
//!   (without executing pickle code).
//!
//! Every fallible function returns [`IoError`], whose message names the file, record
//! or tensor involved.

pub mod a3m;
pub mod atomic;
pub mod cif;
mod error;
pub mod fasta;
pub mod mmcif;
pub mod pdb;
pub mod pickle_arrays;
pub mod structure;
pub mod structure_read;
pub mod weights;

pub use error::{IoError, Result};

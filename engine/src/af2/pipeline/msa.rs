//! The raw MSA features (`pipeline.make_msa_features`, then `correct_msa_restypes`):
//! rows in AF classes, the deletion matrix, duplicates removed, and the profile over all
//! rows that BERT masking samples from (`make_hhblits_profile`).

use std::collections::HashSet;

use ferrofold_io::a3m::A3m;

use super::alphabet::{msa_class, AF_RESTYPES_WITH_X_AND_GAP};
use super::PipelineError;

/// Classes of the profile: 20 aa, X, gap.
pub const PROFILE_CLASSES: usize = 22;

/// Deduplicated MSA, row 0 = the query; `[rows, width]` row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct RawMsa {
    pub rows: usize,
    pub width: usize,
    /// AF classes 0..=21 (20 = X, 21 = gap).
    pub msa: Vec<u8>,
    /// `deletion_matrix`: insertions to the left of each column.
    pub deletions: Vec<f32>,
}

impl RawMsa {
    /// The MSA of a query without alignment: the query alone, no deletions (what AF2
    /// builds when no alignment is given).
    pub fn single(aatype: &[u8]) -> Self {
        Self {
            rows: 1,
            width: aatype.len(),
            msa: aatype.to_vec(),
            deletions: vec![0.0; aatype.len()],
        }
    }

    /// The rows of `a3m` for `query` (upper case, already checked), keeping the first of
    /// identical aligned rows as AF2 does (`if sequence in seen_sequences: continue`).
    /// The first record must be the query.
    pub fn from_a3m(query: &str, a3m: &A3m) -> Result<Self, PipelineError> {
        let width = query.len();
        let first = a3m.records.first().ok_or_else(|| PipelineError::EmptyMsa {
            origin: a3m.origin.clone(),
        })?;
        for r in &a3m.records {
            let found = r.sequence.chars().count();
            if found != width || r.deletions.len() != width {
                return Err(PipelineError::MsaLength {
                    origin: a3m.origin.clone(),
                    record: r.description.clone(),
                    line: r.line,
                    found,
                    expected: width,
                });
            }
        }
        if let Some((column, (f, e))) = first
            .sequence
            .chars()
            .zip(query.chars())
            .enumerate()
            .find(|(_, (f, e))| f != e)
        {
            return Err(PipelineError::QueryMismatch {
                origin: a3m.origin.clone(),
                record: first.description.clone(),
                line: first.line,
                column: column + 1,
                found: f,
                expected: e,
            });
        }
        let mut seen = HashSet::new();
        let mut out = Self {
            rows: 0,
            width,
            msa: Vec::new(),
            deletions: Vec::new(),
        };
        for r in &a3m.records {
            if !seen.insert(r.sequence.as_str()) {
                continue;
            }
            for (column, c) in r.sequence.chars().enumerate() {
                let class = u8::try_from(c).ok().and_then(msa_class).ok_or_else(|| {
                    PipelineError::MsaResidue {
                        origin: a3m.origin.clone(),
                        record: r.description.clone(),
                        line: r.line,
                        column: column + 1,
                        residue: c,
                    }
                })?;
                out.msa.push(class);
            }
            out.deletions.extend(r.deletions.iter().map(|&d| d as f32));
            out.rows += 1;
        }
        Ok(out)
    }

    pub fn row(&self, i: usize) -> &[u8] {
        &self.msa[i * self.width..(i + 1) * self.width]
    }

    pub fn deletion_row(&self, i: usize) -> &[f32] {
        &self.deletions[i * self.width..(i + 1) * self.width]
    }

    /// `hhblits_profile` `[width, 22]`: the mean over all rows of `one_hot(msa, 22)`.
    pub fn profile(&self) -> Vec<f32> {
        let mut counts = vec![0u32; self.width * PROFILE_CLASSES];
        for i in 0..self.rows {
            for (l, &c) in self.row(i).iter().enumerate() {
                counts[l * PROFILE_CLASSES + c as usize] += 1;
            }
        }
        counts
            .into_iter()
            .map(|c| c as f32 / self.rows as f32)
            .collect()
    }

    /// Row `i` as letters (for messages and tests).
    pub fn row_letters(&self, i: usize) -> String {
        self.row(i)
            .iter()
            .map(|&c| AF_RESTYPES_WITH_X_AND_GAP[c as usize] as char)
            .collect()
    }
}

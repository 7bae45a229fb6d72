//! The database's k-mer index (format.rs): for every k-mer code, the residue offset of
//! each window holding it. Built once by `db build`; a prefilter pass whose seeds are few
//! reads their codes' postings instead of every window of the database.

use rayon::prelude::*;

use crate::kmer::{prefetch, window_codes, CODES, NO_CODE};

/// Bytes of the starts section: one u32 per code and one past the last.
pub(crate) const STARTS_LEN: u64 = (CODES as u64 + 1) * 4;

/// Windows per code (those holding an `X` have no code) of the sequences at `offsets`
/// (n + 1, into `residues`).
pub(crate) fn count_codes(residues: &[u8], offsets: &[u64]) -> Vec<u32> {
    let sequences = offsets.len().saturating_sub(1);
    // A 12.8 MB count table per share: at most eight of them.
    let chunk = sequences
        .div_ceil(rayon::current_num_threads().min(8))
        .max(1);
    (0..sequences)
        .into_par_iter()
        .chunks(chunk)
        .map(|chunk| {
            let mut counts = vec![0u32; CODES];
            let mut codes = Vec::new();
            for i in chunk {
                codes.clear();
                window_codes(sequence(residues, offsets, i), &mut codes);
                for &code in codes.iter().filter(|&&c| c != NO_CODE) {
                    counts[code as usize] += 1;
                }
            }
            counts
        })
        .reduce(
            || vec![0u32; CODES],
            |mut a, b| {
                a.iter_mut().zip(b).for_each(|(a, b)| *a += b);
                a
            },
        )
}

/// Writes the starts (from `counts`) and the postings, both little-endian u32, in windows'
/// order within each code. The postings are written in shares of codes with about equal
/// postings, one share per thread: each walks every sequence and writes its own codes'
/// windows into its own part (the writes are random, the walk is cheap).
pub(crate) fn fill(
    residues: &[u8],
    offsets: &[u64],
    counts: &[u32],
    starts: &mut [u8],
    postings: &mut [u8],
) {
    let mut first = Vec::with_capacity(CODES + 1);
    let mut total = 0u32;
    for &count in counts {
        first.push(total);
        total += count;
    }
    first.push(total);
    for (k, &at) in first.iter().enumerate() {
        starts[4 * k..4 * k + 4].copy_from_slice(&at.to_le_bytes());
    }
    // Share boundaries: the first code at or past each equal part of the postings.
    let shares = rayon::current_num_threads().clamp(1, 8);
    let mut bounds: Vec<usize> = (0..shares)
        .map(|k| {
            first.partition_point(|&at| (at as u64) * (shares as u64) < (k as u64) * total as u64)
        })
        .collect();
    bounds.push(CODES);
    let mut parts = Vec::with_capacity(shares);
    let mut rest = postings;
    for pair in bounds.windows(2) {
        let len = 4 * (first[pair[1]] - first[pair[0]]) as usize;
        let (part, tail) = rest.split_at_mut(len);
        parts.push((pair[0]..pair[1], part));
        rest = tail;
    }
    parts.into_par_iter().for_each(|(share, part)| {
        let base = first[share.start];
        let mut next: Vec<u32> = first[share.clone()].iter().map(|&at| at - base).collect();
        let mut codes = Vec::new();
        for i in 0..offsets.len().saturating_sub(1) {
            codes.clear();
            window_codes(sequence(residues, offsets, i), &mut codes);
            let start = offsets[i] as u32;
            for (w, &code) in codes.iter().enumerate() {
                let Some(k) = (code as usize).checked_sub(share.start) else {
                    continue;
                };
                if let Some(slot) = next.get_mut(k) {
                    let at = 4 * *slot as usize;
                    *slot += 1;
                    part[at..at + 4].copy_from_slice(&(start + w as u32).to_le_bytes());
                }
            }
        }
    });
}

fn sequence<'a>(residues: &'a [u8], offsets: &[u64], i: usize) -> &'a [u8] {
    &residues[offsets[i] as usize..offsets[i + 1] as usize]
}

/// The index of an open database: the postings of each k-mer code.
#[derive(Debug, Clone, Copy)]
pub struct KmerIndex<'a> {
    starts: &'a [u32],
    postings: &'a [u32],
    /// Residues of the database: postings from here on are corrupt.
    residues: u32,
}

impl<'a> KmerIndex<'a> {
    /// The index in its two sections' bytes, its starts checked: from 0, never decreasing,
    /// ending at the number of postings (the postings themselves are checked as they are
    /// read: [`KmerIndex::postings`]). `None` when the sections are empty (a database beyond
    /// u32 offsets), or on a big-endian host, where the little-endian words cannot be read
    /// in place.
    pub(crate) fn checked(
        starts: &'a [u8],
        postings: &'a [u8],
        residues: u64,
    ) -> std::result::Result<Option<KmerIndex<'a>>, String> {
        if starts.is_empty() && postings.is_empty() {
            return Ok(None);
        }
        let index = KmerIndex::view(starts, postings, residues)
            .ok_or("the k-mer sections are not whole u32 words: corrupt")?;
        let starts = index.starts;
        if starts.len() != CODES + 1
            || starts[0] != 0
            || starts.windows(2).any(|w| w[0] > w[1])
            || starts[CODES] as usize != index.postings.len()
        {
            return Err("the k-mer starts section is inconsistent: corrupt".into());
        }
        Ok((!cfg!(target_endian = "big")).then_some(index))
    }

    /// The sections' bytes as words, unchecked beyond their alignment (for sections
    /// [`KmerIndex::checked`] accepted).
    pub(crate) fn view(
        starts: &'a [u8],
        postings: &'a [u8],
        residues: u64,
    ) -> Option<KmerIndex<'a>> {
        let words = |bytes: &'a [u8]| {
            // SAFETY: any 4 bytes are a valid u32; the sections are 64-byte aligned in a
            // page-aligned map, so the middle part is the whole slice (checked).
            let (head, words, tail) = unsafe { bytes.align_to::<u32>() };
            (head.is_empty() && tail.is_empty()).then_some(words)
        };
        Some(KmerIndex {
            starts: words(starts)?,
            postings: words(postings)?,
            residues: u32::try_from(residues).ok()?,
        })
    }

    /// Asks the cache for `code`'s start.
    #[inline]
    pub fn prefetch_start(&self, code: u32) {
        prefetch(self.starts.as_ptr().wrapping_add(code as usize));
    }

    /// Asks the cache for the first of `code`'s postings (its start read first).
    #[inline]
    pub fn prefetch_postings(&self, code: u32) {
        prefetch(
            self.postings
                .as_ptr()
                .wrapping_add(self.starts[code as usize] as usize),
        );
    }

    /// Residue offsets of the windows with k-mer `code`, increasing; any beyond the
    /// residues (a corrupt file: the postings are not checksummed at open) are left out.
    #[inline]
    pub fn postings(&self, code: u32) -> impl Iterator<Item = u32> + 'a {
        let code = code as usize;
        let residues = self.residues;
        self.postings[self.starts[code] as usize..self.starts[code + 1] as usize]
            .iter()
            .copied()
            .filter(move |&at| at < residues)
    }

    /// Number of postings of k-mer `code`.
    #[inline]
    pub fn count(&self, code: u32) -> usize {
        let code = code as usize;
        (self.starts[code + 1] - self.starts[code]) as usize
    }
}

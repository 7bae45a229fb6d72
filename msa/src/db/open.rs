//! Opening a database: memory-mapped, and checked whole before use (header, bounds,
//! checksums, offsets, residue codes), so accessors never read out of bounds and a
//! truncated, foreign or corrupt file is an error rather than a panic or wrong hits.

use std::fs::File;
use std::io::Read;
use std::ops::Range;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use super::build::MAX_TARGET_LENGTH;
use super::format::{
    parallel_crc, u64_at, FileHeader, Section, ALIGN, HEADER_LEN, MAGIC, NOT_OURS,
};
use super::kmer_index::KmerIndex;
use crate::alphabet::X;
use crate::{MsaError, Result};

/// An open sequence database (see [`super::build_database`]). Sequences are numbered
/// `0..len()` in FASTA order; indexing past the end panics, like a slice.
///
/// The file is mapped, not read: opening costs one checksum pass, and pages are shared
/// between processes. As with any memory map, the file must not be modified while open
/// (the builder replaces files by rename, which is safe).
#[derive(Debug)]
pub struct Database {
    path: PathBuf,
    map: Mmap,
    len: usize,
    total_residues: u64,
    max_length: usize,
    residues: Range<usize>,
    sequence_offsets: usize,
    headers: Range<usize>,
    header_offsets: usize,
    /// The k-mer index's two sections, when it has one (checked at open).
    kmer_index: Option<(Range<usize>, Range<usize>)>,
}

impl Database {
    /// Opens and verifies the database at `path`.
    pub fn open(path: &Path) -> Result<Database> {
        let err = |message: String| MsaError::Database {
            path: path.to_path_buf(),
            message,
        };
        // Checked before opening: a FIFO would block the open, a directory fail the map.
        let kind = std::fs::metadata(path).map_err(|e| MsaError::file(path, e))?;
        if !kind.is_file() {
            return Err(err(
                "not a regular file (a directory or a device?): give the database file".into(),
            ));
        }
        let mut file = File::open(path).map_err(|e| MsaError::file(path, e))?;
        let size = file.metadata().map_err(|e| MsaError::file(path, e))?.len();
        if size == 0 {
            return Err(err(
                "the file is empty (0 bytes): not a ferrofold sequence database".into(),
            ));
        }
        if size < HEADER_LEN as u64 {
            let mut start = Vec::new();
            file.read_to_end(&mut start)
                .map_err(|e| MsaError::file(path, e))?;
            let n = start.len().min(MAGIC.len());
            return Err(err(if start[..n] == MAGIC[..n] {
                format!("truncated: {size} bytes, shorter than the {HEADER_LEN}-byte header")
            } else {
                NOT_OURS.to_string()
            }));
        }
        // SAFETY: the map is read-only and private to this value; see the type's
        // documentation for the usual caveat about files modified while mapped.
        let map = unsafe { Mmap::map(&file) }.map_err(|e| MsaError::file(path, e))?;
        let header_bytes: &[u8; HEADER_LEN] = map[..HEADER_LEN]
            .try_into()
            .map_err(|_| err("truncated header".into()))?;
        let header = FileHeader::decode(header_bytes).map_err(err)?;
        if header.file_len > size {
            return Err(err(format!(
                "truncated: the file has {size} bytes, its header says {} \
                 (an interrupted copy?): rebuild or copy it again",
                header.file_len
            )));
        }
        if header.file_len < size {
            return Err(err(format!(
                "the file has {size} bytes, its header says {}: corrupt",
                header.file_len
            )));
        }
        let layout = check_layout(&header, &map).map_err(err)?;
        if layout.max_length > MAX_TARGET_LENGTH {
            return Err(err(format!(
                "holds a sequence of {} residues; a search takes at most {MAX_TARGET_LENGTH}: \
                 rebuild it with `ferrofold db build`, which leaves such records out",
                layout.max_length
            )));
        }
        let db = Database {
            path: path.to_path_buf(),
            map,
            len: layout.len,
            total_residues: header.residues,
            max_length: layout.max_length,
            residues: layout.ranges[Section::Residues as usize].clone(),
            sequence_offsets: layout.ranges[Section::SequenceOffsets as usize].start,
            headers: layout.ranges[Section::Headers as usize].clone(),
            header_offsets: layout.ranges[Section::HeaderOffsets as usize].start,
            kmer_index: layout.kmer_index,
        };
        Ok(db)
    }

    /// Number of sequences.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Residue codes (see [`crate::alphabet`]) of sequence `i`.
    pub fn sequence(&self, i: usize) -> &[u8] {
        let (start, end) = self.bounds(self.sequence_offsets, i);
        &self.map[self.residues.clone()][start..end]
    }

    /// The full header line of sequence `i`, without `>`.
    pub fn header(&self, i: usize) -> &str {
        let (start, end) = self.bounds(self.header_offsets, i);
        // Checked to be UTF-8 on char boundaries at open; only a file changed under the
        // map could fail here.
        std::str::from_utf8(&self.map[self.headers.clone()][start..end]).unwrap_or_default()
    }

    /// The first whitespace-separated word of the header: the sequence's identifier.
    pub fn name(&self, i: usize) -> &str {
        self.header(i).split_whitespace().next().unwrap_or_default()
    }

    /// All residue codes, sequences concatenated in order (for building indexes).
    pub fn residues(&self) -> &[u8] {
        &self.map[self.residues.clone()]
    }

    /// Where sequence `i` starts in [`Database::residues`] (`len()` gives the end).
    pub fn sequence_start(&self, i: usize) -> usize {
        if i == self.len {
            return self.residues.len();
        }
        self.bounds(self.sequence_offsets, i).0
    }

    /// The k-mer index, if the database has one (one of at most `u32::MAX` residues, on a
    /// little-endian host).
    pub fn kmer_index(&self) -> Option<KmerIndex<'_>> {
        let (starts, postings) = self.kmer_index.clone()?;
        KmerIndex::view(&self.map[starts], &self.map[postings], self.total_residues)
    }

    pub fn total_residues(&self) -> u64 {
        self.total_residues
    }

    /// Length of the longest sequence.
    pub fn max_length(&self) -> usize {
        self.max_length
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Offsets `i` and `i + 1` of the offset array at byte `table`.
    fn bounds(&self, table: usize, i: usize) -> (usize, usize) {
        assert!(i < self.len, "sequence {i} of a database of {}", self.len);
        let at = table + 8 * i;
        (
            u64_at(&self.map, at) as usize,
            u64_at(&self.map, at + 8) as usize,
        )
    }
}

/// Mapped pages to release per parallel task at close (page-aligned).
const RELEASE_CHUNK: usize = 32 << 20;

impl Drop for Database {
    /// Releases the mapped pages on all threads before the unmap: the kernel's teardown of a
    /// search's mapped database (800 MB with the k-mer index) takes tens of milliseconds on
    /// one thread, and `MADV_DONTNEED` on disjoint ranges runs side by side (`munmap` holds
    /// the map's lock).
    fn drop(&mut self) {
        use rayon::prelude::*;
        let len = self.map.len();
        (0..len.div_ceil(RELEASE_CHUNK))
            .into_par_iter()
            .for_each(|k| {
                let offset = k * RELEASE_CHUNK;
                // SAFETY: the map is read-only and backed by an unmodified file, so a page read
                // again after the advice holds the same bytes; nothing reads it after the drop.
                let _ = unsafe {
                    self.map.unchecked_advise_range(
                        memmap2::UncheckedAdvice::DontNeed,
                        offset,
                        RELEASE_CHUNK.min(len - offset),
                    )
                };
            });
    }
}

/// What [`check_layout`] established.
struct Layout {
    len: usize,
    max_length: usize,
    /// Byte ranges of the sections, indexed like [`Section::ALL`].
    ranges: [Range<usize>; 6],
    kmer_index: Option<(Range<usize>, Range<usize>)>,
}

/// Checks everything the accessors rely on; the error is the message.
fn check_layout(header: &FileHeader, map: &[u8]) -> std::result::Result<Layout, String> {
    let mut ranges: [Range<usize>; 6] = Default::default();
    let mut previous_end = HEADER_LEN as u64;
    for section in Section::ALL {
        let entry = header.section(section);
        let name = section.name();
        let end = entry.offset.checked_add(entry.len);
        match end {
            Some(end)
                if entry.offset >= previous_end
                    && entry.offset.is_multiple_of(ALIGN)
                    && end <= header.file_len =>
            {
                previous_end = end;
            }
            _ => {
                return Err(format!(
                    "the {name} section lies outside the file or overlaps another: corrupt"
                ))
            }
        }
        // Within the mapped file, hence within usize.
        let range = entry.offset as usize..(entry.offset + entry.len) as usize;
        // The k-mer postings (4 bytes a residue) are not read whole at open: they only
        // propose candidates, each aligned against the checksummed residues, and one beyond
        // the residues is passed over where it is read.
        if section != Section::KmerPostings && parallel_crc(&map[range.clone()]) != entry.crc {
            return Err(format!(
                "checksum mismatch in the {name} section: the file is corrupt (rebuild it)"
            ));
        }
        ranges[section as usize] = range;
    }

    let len = usize::try_from(header.sequences)
        .map_err(|_| format!("{} sequences do not fit in memory", header.sequences))?;
    let residues = &map[ranges[Section::Residues as usize].clone()];
    if residues.len() as u64 != header.residues {
        return Err(format!(
            "the header counts {} residues, the residues section holds {}: corrupt",
            header.residues,
            residues.len()
        ));
    }
    // Chunked so the maximum vectorises: this runs over every residue at open.
    if residues
        .chunks(1 << 16)
        .any(|c| c.iter().copied().max() > Some(X))
    {
        return Err("a residue code is out of range: corrupt".into());
    }
    let max_length = check_offsets(
        &map[ranges[Section::SequenceOffsets as usize].clone()],
        len,
        residues.len(),
        Section::SequenceOffsets,
        |_| true,
    )?;
    if max_length as u64 != header.max_length {
        return Err(format!(
            "the header gives the longest sequence as {}, the offsets {max_length}: corrupt",
            header.max_length
        ));
    }
    let headers = std::str::from_utf8(&map[ranges[Section::Headers as usize].clone()])
        .map_err(|_| "the headers section is not UTF-8: corrupt".to_string())?;
    check_offsets(
        &map[ranges[Section::HeaderOffsets as usize].clone()],
        len,
        headers.len(),
        Section::HeaderOffsets,
        |at| headers.is_char_boundary(at),
    )?;
    let starts = ranges[Section::KmerStarts as usize].clone();
    let postings = ranges[Section::KmerPostings as usize].clone();
    let kmer_index = KmerIndex::checked(
        &map[starts.clone()],
        &map[postings.clone()],
        header.residues,
    )?
    .map(|_| (starts, postings));
    Ok(Layout {
        len,
        max_length,
        ranges,
        kmer_index,
    })
}

/// Checks an offset array: `len + 1` entries from 0 to `end`, never decreasing, each one
/// accepted by `boundary`. Returns the largest difference (the longest item).
fn check_offsets(
    bytes: &[u8],
    len: usize,
    end: usize,
    section: Section,
    boundary: impl Fn(usize) -> bool,
) -> std::result::Result<usize, String> {
    let name = section.name();
    let corrupt = |what: &str| format!("{name} section {what}: corrupt");
    if Some(bytes.len()) != len.checked_add(1).and_then(|n| n.checked_mul(8)) {
        return Err(corrupt("does not hold one entry per sequence plus one"));
    }
    let mut previous = 0usize;
    let mut longest = 0usize;
    for (k, chunk) in bytes.chunks_exact(8).enumerate() {
        let value = u64_at(chunk, 0);
        let at = usize::try_from(value).unwrap_or(usize::MAX);
        if (k == 0 && at != 0) || at < previous || at > end || !boundary(at) {
            return Err(corrupt(&format!("has an invalid offset at entry {k}")));
        }
        longest = longest.max(at - previous);
        previous = at;
    }
    if previous != end {
        return Err(corrupt("does not end at the end of its data"));
    }
    Ok(longest)
}

//! Building a database from FASTA, streaming: memory holds one record, 16 bytes per
//! sequence (its two offsets) and two 12.8 MB tables of the k-mer index, whatever the size
//! of the input; the index is written through a map of the file.

use std::fs::File;
use std::io::{self, BufWriter, Seek, SeekFrom, Write};
use std::path::Path;

use ferrofold_io::fasta::FastaReader;

use memmap2::{Mmap, MmapMut};

use super::format::{align_up, parallel_crc, FileHeader, Section, SectionEntry, HEADER_LEN};
use super::kmer_index;
use crate::alphabet::{self, SequenceProblem};
use crate::{MsaError, Result};

/// How many record names a [`Skipped`] group keeps as examples.
pub const SKIP_EXAMPLES: usize = 3;

/// Why a FASTA record was left out of a database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SkipReason {
    /// No residue.
    Empty,
    /// A character that is not a residue letter (see [`crate::alphabet`]).
    InvalidCharacter,
    /// A DNA/RNA record.
    Nucleotide,
    /// Longer than [`MAX_TARGET_LENGTH`].
    TooLong,
}

impl SkipReason {
    fn of(problem: &SequenceProblem) -> SkipReason {
        match problem {
            SequenceProblem::Empty => SkipReason::Empty,
            SequenceProblem::InvalidCharacter { .. } => SkipReason::InvalidCharacter,
            SequenceProblem::Nucleotide => SkipReason::Nucleotide,
        }
    }

    /// Words for a summary: "2 empty", "1 with invalid characters".
    pub fn describe(self) -> &'static str {
        match self {
            SkipReason::Empty => "empty",
            SkipReason::InvalidCharacter => "with invalid characters",
            SkipReason::Nucleotide => "nucleotide",
            SkipReason::TooLong => "too long",
        }
    }
}

/// The records skipped for one reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub reason: SkipReason,
    pub count: u64,
    /// Names of the first [`SKIP_EXAMPLES`] records skipped.
    pub first_records: Vec<String>,
    /// What was wrong with the first one (e.g. the character and its position).
    pub first_problem: String,
}

/// What [`build_database`] wrote and left out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildReport {
    /// FASTA records read.
    pub records: u64,
    /// Sequences in the database.
    pub sequences: u64,
    pub residues: u64,
    pub max_length: usize,
    /// Size of the database file.
    pub file_bytes: u64,
    /// One entry per reason that occurred, in [`SkipReason`] order.
    pub skipped: Vec<Skipped>,
}

impl BuildReport {
    /// Records left out, all reasons together.
    pub fn skipped_count(&self) -> u64 {
        self.skipped.iter().map(|s| s.count).sum()
    }

    /// "skipped 3 records: 2 empty (first: sp|X), 1 nucleotide (first: n1)", or `None`
    /// when every record went in.
    pub fn skip_summary(&self) -> Option<String> {
        let total = self.skipped_count();
        if total == 0 {
            return None;
        }
        let parts: Vec<String> = self
            .skipped
            .iter()
            .map(|s| {
                let first = s.first_records.first().map_or("", String::as_str);
                let detail = match s.reason {
                    SkipReason::InvalidCharacter | SkipReason::TooLong => {
                        format!("{first}: {}", s.first_problem)
                    }
                    _ => first.to_string(),
                };
                format!("{} {} (first: {detail})", s.count, s.reason.describe())
            })
            .collect();
        let plural = if total == 1 { "" } else { "s" };
        Some(format!(
            "skipped {total} record{plural}: {}",
            parts.join(", ")
        ))
    }

    fn skip(&mut self, name: &str, reason: SkipReason, problem: String) {
        let at = match self.skipped.binary_search_by_key(&reason, |s| s.reason) {
            Ok(at) => at,
            Err(at) => {
                self.skipped.insert(
                    at,
                    Skipped {
                        reason,
                        count: 0,
                        first_records: Vec::new(),
                        first_problem: problem,
                    },
                );
                at
            }
        };
        let group = &mut self.skipped[at];
        group.count += 1;
        if group.first_records.len() < SKIP_EXAMPLES {
            group.first_records.push(name.to_string());
        }
    }
}

/// Longest sequence a database takes: every search thread keeps diagonal slots for the
/// longest target, so one huge record would cost each thread memory and every batch a
/// pass of its own. Titin, the longest known protein, has about 35 000 residues.
pub const MAX_TARGET_LENGTH: usize = 100_000;

/// Call the progress callback after about this many input bytes.
const PROGRESS_STEP: u64 = 1 << 20;

/// Builds the database `out` from the protein FASTA file `fasta`.
///
/// Records are encoded with [`alphabet::encode`]. Empty, non-protein (invalid characters),
/// nucleotide and over-long ([`MAX_TARGET_LENGTH`]) records are skipped rather than failing
/// the build, since large public sequence sets hold a few of them; they are counted per reason in the report. Duplicate
/// names are kept as separate sequences. Malformed FASTA (no header, a header without a
/// name, over the reader's limits) is an error, and so is input where no record is usable.
///
/// `progress` gets the FASTA bytes read so far, about every MiB and at the end (the k-mer
/// index is built after that last call). The file is written beside `out` under a
/// temporary name and renamed into place when complete, so a failed or interrupted build
/// never leaves a partial database at `out` (nor replaces an existing one).
pub fn build_database(
    fasta: &Path,
    out: &Path,
    progress: &mut dyn FnMut(u64),
) -> Result<BuildReport> {
    if same_file(fasta, out) {
        return Err(MsaError::Invalid(format!(
            "{}: the database would overwrite its own FASTA input; name another output",
            out.display()
        )));
    }
    let mut reader = FastaReader::open(fasta)?.allow_empty(true);
    let dir = match out.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let out_err = |e: io::Error| MsaError::file(out, e);
    let mut builder = tempfile::Builder::new();
    builder.prefix(".ferrofold-db-").suffix(".tmp");
    // Readable by others like any file the user creates: `open` narrows 0666 by the umask
    // (tempfile's own default is 0600).
    #[cfg(unix)]
    builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666));
    let mut tmp = builder
        .tempfile_in(dir)
        .map_err(|e| MsaError::file(dir, e))?;
    // Residues go straight into the final file; headers, streamed at the same time, into
    // an anonymous temporary file, appended afterwards.
    let headers_file = tempfile::tempfile_in(dir).map_err(|e| MsaError::file(dir, e))?;
    let mut headers = Checksummed::new(BufWriter::with_capacity(1 << 20, headers_file));
    let mut file = BufWriter::with_capacity(1 << 20, tmp.as_file_mut());
    file.write_all(&[0; HEADER_LEN]).map_err(out_err)?;
    let mut residues = Checksummed::new(&mut file);

    let mut report = BuildReport {
        records: 0,
        sequences: 0,
        residues: 0,
        max_length: 0,
        file_bytes: 0,
        skipped: Vec::new(),
    };
    let mut sequence_offsets = vec![0u64];
    let mut header_offsets = vec![0u64];
    let mut reported = 0;
    while let Some(record) = reader.next() {
        let record = record?;
        report.records += 1;
        match alphabet::encode(record.sequence.as_bytes()) {
            Ok(codes) if codes.len() > MAX_TARGET_LENGTH => report.skip(
                &record.name,
                SkipReason::TooLong,
                format!("{} residues, over {MAX_TARGET_LENGTH}", codes.len()),
            ),
            Ok(codes) => {
                residues.write_all(&codes).map_err(out_err)?;
                headers
                    .write_all(record.description.as_bytes())
                    .map_err(out_err)?;
                sequence_offsets.push(residues.len);
                header_offsets.push(headers.len);
                report.max_length = report.max_length.max(codes.len());
            }
            Err(problem) => {
                report.skip(&record.name, SkipReason::of(&problem), problem.to_string())
            }
        }
        if reader.bytes_read() - reported >= PROGRESS_STEP {
            reported = reader.bytes_read();
            progress(reported);
        }
    }
    progress(reader.bytes_read());
    report.sequences = sequence_offsets.len() as u64 - 1;
    report.residues = residues.len;
    if report.sequences == 0 {
        let why = report
            .skip_summary()
            .unwrap_or_else(|| "no records".to_string());
        return Err(MsaError::Invalid(format!(
            "{}: no protein record to put in a database ({why}); nothing written",
            fasta.display()
        )));
    }

    let mut sections = [SectionEntry::default(); 6];
    let mut at = HEADER_LEN as u64;
    at += residues.len;
    sections[Section::Residues as usize] = residues.entry(HEADER_LEN as u64);

    at = pad(&mut file, at).map_err(out_err)?;
    let mut offsets = Checksummed::new(&mut file);
    write_u64s(&mut offsets, &sequence_offsets).map_err(out_err)?;
    let len = offsets.len;
    sections[Section::SequenceOffsets as usize] = offsets.entry(at);
    at += len;

    at = pad(&mut file, at).map_err(out_err)?;
    let (header_crc, header_len) = (headers.hasher.clone().finalize(), headers.len);
    let mut headers_file = headers
        .inner
        .into_inner()
        .map_err(|e| out_err(e.into_error()))?;
    headers_file.seek(SeekFrom::Start(0)).map_err(out_err)?;
    let copied = io::copy(&mut headers_file, &mut file).map_err(out_err)?;
    if copied != header_len {
        return Err(out_err(io::Error::other(
            "the temporary header file changed while building",
        )));
    }
    sections[Section::Headers as usize] = SectionEntry {
        offset: at,
        len: header_len,
        crc: header_crc,
    };
    at += header_len;

    at = pad(&mut file, at).map_err(out_err)?;
    let mut offsets = Checksummed::new(&mut file);
    write_u64s(&mut offsets, &header_offsets).map_err(out_err)?;
    let len = offsets.len;
    sections[Section::HeaderOffsets as usize] = offsets.entry(at);
    at += len;
    at = pad(&mut file, at).map_err(out_err)?;
    file.flush().map_err(out_err)?;
    drop(file);

    // The k-mer index, counted on a map of the residues written, then filled through a map
    // of the grown file. Its postings are u32 residue offsets: a larger database has none.
    let residues_at = HEADER_LEN..HEADER_LEN + report.residues as usize;
    let counts = (report.residues <= u64::from(u32::MAX)).then(|| {
        // SAFETY: the temporary file is ours alone, and no longer written while mapped.
        let map = unsafe { Mmap::map(tmp.as_file()) }.map_err(out_err)?;
        Ok::<_, MsaError>(kmer_index::count_codes(
            &map[residues_at.clone()],
            &sequence_offsets,
        ))
    });
    let counts = counts.transpose()?;
    let starts_len = if counts.is_some() {
        kmer_index::STARTS_LEN
    } else {
        0
    };
    let postings_len = counts
        .as_ref()
        .map_or(0, |c| 4 * c.iter().map(|&n| u64::from(n)).sum::<u64>());
    let starts_at = at;
    let postings_at = align_up(starts_at + starts_len);
    let file_len = postings_at + postings_len;
    tmp.as_file().set_len(file_len).map_err(out_err)?;
    // SAFETY: as above; the file has its final length and nothing else writes it.
    let mut map = unsafe { MmapMut::map_mut(tmp.as_file()) }.map_err(out_err)?;
    let (written, index) = map.split_at_mut(starts_at as usize);
    let (starts, postings) = index.split_at_mut((postings_at - starts_at) as usize);
    let (starts, postings) = (&mut starts[..starts_len as usize], &mut postings[..]);
    if let Some(counts) = &counts {
        let residues = &written[residues_at];
        kmer_index::fill(residues, &sequence_offsets, counts, starts, postings);
    }
    for (section, offset, bytes) in [
        (Section::KmerStarts, starts_at, &*starts),
        (Section::KmerPostings, postings_at, &*postings),
    ] {
        sections[section as usize] = SectionEntry {
            offset,
            len: bytes.len() as u64,
            crc: parallel_crc(bytes),
        };
    }

    let header = FileHeader {
        sequences: report.sequences,
        residues: report.residues,
        max_length: report.max_length as u64,
        file_len,
        sections,
    };
    map[..HEADER_LEN].copy_from_slice(&header.encode());
    map.flush().map_err(out_err)?;
    drop(map);
    tmp.as_file().sync_all().map_err(out_err)?;
    tmp.persist(out).map_err(|e| out_err(e.error))?;
    if let Ok(d) = File::open(dir) {
        // Persists the rename where the file system allows it.
        let _ = d.sync_all();
    }
    report.file_bytes = file_len;
    Ok(report)
}

/// Whether `a` and `b` name one existing file (by canonical path).
fn same_file(a: &Path, b: &Path) -> bool {
    matches!((a.canonicalize(), b.canonicalize()), (Ok(a), Ok(b)) if a == b)
}

/// Writes zeros up to the next section boundary; returns the new position.
fn pad(w: &mut impl Write, at: u64) -> io::Result<u64> {
    let next = align_up(at);
    w.write_all(&[0; 64][..(next - at) as usize])?;
    Ok(next)
}

fn write_u64s(w: &mut impl Write, values: &[u64]) -> io::Result<()> {
    for chunk in values.chunks(8192) {
        let bytes: Vec<u8> = chunk.iter().flat_map(|v| v.to_le_bytes()).collect();
        w.write_all(&bytes)?;
    }
    Ok(())
}

/// A writer that counts and checksums what passes through it: one section.
struct Checksummed<W> {
    inner: W,
    hasher: crc32fast::Hasher,
    len: u64,
}

impl<W: Write> Checksummed<W> {
    fn new(inner: W) -> Self {
        Checksummed {
            inner,
            hasher: crc32fast::Hasher::new(),
            len: 0,
        }
    }

    /// The table entry of this section, written at `offset`.
    fn entry(self, offset: u64) -> SectionEntry {
        SectionEntry {
            offset,
            len: self.len,
            crc: self.hasher.finalize(),
        }
    }
}

impl<W: Write> Write for Checksummed<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

//! The on-disk layout of a sequence database, shared by the builder and the reader.
//!
//! One file: a fixed [`HEADER_LEN`]-byte header, then six sections, each starting at a
//! multiple of [`ALIGN`] bytes (zero padding between them). All integers little-endian.
//!
//! | bytes   | field                                                          |
//! |---------|----------------------------------------------------------------|
//! | 0..8    | [`MAGIC`]                                                      |
//! | 8..12   | format version (u32, [`FORMAT_VERSION`])                       |
//! | 12..16  | number of sections (u32, 6)                                    |
//! | 16..24  | sequences (u64)                                                |
//! | 24..32  | total residues (u64)                                           |
//! | 32..40  | longest sequence (u64)                                         |
//! | 40..48  | file length (u64): tells a truncated file from a corrupt one   |
//! | 48..192 | section table: per [`Section`], offset u64, length u64, CRC32 u32, 0 u32 |
//! | 192..252| zero                                                           |
//! | 252..256| CRC32 of bytes 0..252                                          |
//!
//! Sections: residue codes (u8, sequences concatenated), sequence offsets (u64, n + 1,
//! into the residues), header bytes (UTF-8, each full header line without `>`), header
//! offsets (u64, n + 1), then the k-mer index: per k-mer code ([`crate::kmer`]) the start
//! of its run of postings (u32, codes + 1), and the postings (u32: the residue offset of
//! each window with that code, in increasing order; windows holding an `X` have none). The
//! index's two sections are empty in a database of more than `u32::MAX` residues, which
//! the prefilter then only scans. Every section's CRC32 is checked at open but the
//! postings' (4 bytes per residue, read only where a search needs them). Magic and version
//! sit before anything else and never move, so any later version can still be recognised
//! and refused with a clear message.

/// First bytes of every database file.
pub const MAGIC: [u8; 8] = *b"FFSEQDB\0";
/// Version of the layout written by this build; any other version is refused.
pub const FORMAT_VERSION: u32 = 2;
/// Bytes of the fixed header.
pub(crate) const HEADER_LEN: usize = 256;
/// Alignment of every section, so the u64 arrays are aligned in the memory map.
pub(crate) const ALIGN: u64 = 64;

const TABLE_START: usize = 48;
const ENTRY_LEN: usize = 24;
const CRC_AT: usize = HEADER_LEN - 4;

/// The sections of a database file, in table order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Section {
    Residues,
    SequenceOffsets,
    Headers,
    HeaderOffsets,
    KmerStarts,
    KmerPostings,
}

impl Section {
    pub(crate) const ALL: [Section; 6] = [
        Section::Residues,
        Section::SequenceOffsets,
        Section::Headers,
        Section::HeaderOffsets,
        Section::KmerStarts,
        Section::KmerPostings,
    ];

    /// Name used in error messages.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Section::Residues => "residues",
            Section::SequenceOffsets => "sequence offsets",
            Section::Headers => "headers",
            Section::HeaderOffsets => "header offsets",
            Section::KmerStarts => "k-mer starts",
            Section::KmerPostings => "k-mer postings",
        }
    }
}

/// Where one section lies and its checksum.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct SectionEntry {
    pub offset: u64,
    pub len: u64,
    pub crc: u32,
}

/// The decoded fixed header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FileHeader {
    pub sequences: u64,
    pub residues: u64,
    pub max_length: u64,
    pub file_len: u64,
    /// Indexed like [`Section::ALL`].
    pub sections: [SectionEntry; 6],
}

impl FileHeader {
    pub(crate) fn section(&self, section: Section) -> SectionEntry {
        self.sections[section as usize]
    }

    pub(crate) fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..8].copy_from_slice(&MAGIC);
        b[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        b[12..16].copy_from_slice(&(Section::ALL.len() as u32).to_le_bytes());
        b[16..24].copy_from_slice(&self.sequences.to_le_bytes());
        b[24..32].copy_from_slice(&self.residues.to_le_bytes());
        b[32..40].copy_from_slice(&self.max_length.to_le_bytes());
        b[40..48].copy_from_slice(&self.file_len.to_le_bytes());
        for (k, entry) in self.sections.iter().enumerate() {
            let at = TABLE_START + k * ENTRY_LEN;
            b[at..at + 8].copy_from_slice(&entry.offset.to_le_bytes());
            b[at + 8..at + 16].copy_from_slice(&entry.len.to_le_bytes());
            b[at + 16..at + 20].copy_from_slice(&entry.crc.to_le_bytes());
        }
        let crc = crc32fast::hash(&b[..CRC_AT]);
        b[CRC_AT..].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Decodes a header, checking magic, version and checksum in that order (so a file
    /// of another version is named as such whatever its header holds).
    pub(crate) fn decode(b: &[u8; HEADER_LEN]) -> Result<FileHeader, String> {
        if b[0..8] != MAGIC {
            return Err(NOT_OURS.to_string());
        }
        let version = u32_at(b, 8);
        if version != FORMAT_VERSION {
            return Err(format!(
                "built by format version {version}, this ferrofold reads version \
                 {FORMAT_VERSION}: rebuild it with `ferrofold db build`"
            ));
        }
        if crc32fast::hash(&b[..CRC_AT]) != u32_at(b, CRC_AT) {
            return Err("header checksum mismatch: the file is corrupt (rebuild it)".into());
        }
        let count = u32_at(b, 12);
        if count as usize != Section::ALL.len() {
            return Err(format!(
                "the header lists {count} sections, version {FORMAT_VERSION} has 6: corrupt"
            ));
        }
        let mut sections = [SectionEntry::default(); 6];
        for (k, entry) in sections.iter_mut().enumerate() {
            let at = TABLE_START + k * ENTRY_LEN;
            *entry = SectionEntry {
                offset: u64_at(b, at),
                len: u64_at(b, at + 8),
                crc: u32_at(b, at + 16),
            };
        }
        Ok(FileHeader {
            sequences: u64_at(b, 16),
            residues: u64_at(b, 24),
            max_length: u64_at(b, 32),
            file_len: u64_at(b, 40),
            sections,
        })
    }
}

/// The message for a file that does not start with [`MAGIC`].
pub(crate) const NOT_OURS: &str = "not a ferrofold sequence database (wrong magic bytes)";

/// The little-endian u64 at byte `at` of `bytes`, which must hold it.
pub(crate) fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut v = [0u8; 8];
    v.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(v)
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    let mut v = [0u8; 4];
    v.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(v)
}

/// CRC32 of `bytes`, in chunks on all threads (a database's k-mer postings are 4 bytes
/// per residue, checked at every open).
pub(crate) fn parallel_crc(bytes: &[u8]) -> u32 {
    use rayon::prelude::*;
    bytes
        .par_chunks(8 << 20)
        .map(|chunk| {
            let mut hasher = crc32fast::Hasher::new();
            hasher.update(chunk);
            hasher
        })
        .reduce(crc32fast::Hasher::new, |mut a, b| {
            a.combine(&b);
            a
        })
        .finalize()
}

/// `n` rounded up to a multiple of [`ALIGN`].
pub(crate) fn align_up(n: u64) -> u64 {
    n.div_ceil(ALIGN) * ALIGN
}

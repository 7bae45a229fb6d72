//! The template library: one entry per protein chain of a folder of mmCIF/PDB files
//! (`ferrofold db build-templates`), stored in one checksummed file.
//!
//! File format (version 1, little endian):
//!
//! ```text
//! b"FFTPLDB\0" | u32 version = 1 | u32 entry count | u64 index length | u64 data length
//! | index (JSON array of EntryInfo) | data | u32 crc32(index) | u32 crc32(data) | b"FFTPLEND"
//! ```
//!
//! Each entry's data, at `EntryInfo::offset`: the atom37 masks as N·37 bytes (0/1), then the
//! positions of the present atoms only (f32 x, y, z each, in residue then atom37 order).
//! A file that does not start with the magic is refused as foreign; one whose lengths do not
//! add up is refused as truncated; checksum mismatches as corrupt.

use anyhow::{bail, Context, Result};
use ferrofold_io::structure_read::{self, ProteinChain};
use serde::{Deserialize, Serialize};
use std::path::Path;

const MAGIC: &[u8; 8] = b"FFTPLDB\0";
const END_MAGIC: &[u8; 8] = b"FFTPLEND";
const VERSION: u32 = 1;
const HEADER_LEN: usize = 8 + 4 + 4 + 8 + 8;
const FOOTER_LEN: usize = 4 + 4 + 8;

/// Index record of one entry (everything but the coordinates).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EntryInfo {
    /// `<pdb id>_<chain>`, e.g. `1abc_A` (AF2's `template_domain_names`).
    pub id: String,
    /// Entry id, lower case.
    pub pdb_id: String,
    /// Author chain id.
    pub chain_id: String,
    /// One-letter sequence: mmCIF SEQRES (`_entity_poly_seq`) as AF2 reads it, or the
    /// modelled residues of a PDB-format file.
    pub sequence: String,
    /// First release date `YYYY-MM-DD`, where the file has one.
    pub release_date: Option<String>,
    /// The file it came from (name only).
    pub source: String,
    /// Byte offset of the coordinates in the data section.
    pub offset: u64,
    /// Present atoms (positions stored).
    pub atoms: u64,
}

/// One chain with its coordinates.
#[derive(Clone, Debug, PartialEq)]
pub struct TemplateEntry {
    pub info: EntryInfo,
    /// Atom37 positions [N, 37, 3], Å (0 where absent).
    pub positions: Vec<f32>,
    /// Atom37 masks [N, 37].
    pub masks: Vec<f32>,
}

impl TemplateEntry {
    /// An entry from a parsed chain.
    pub fn from_chain(
        pdb_id: &str,
        release_date: Option<&str>,
        source: &str,
        c: ProteinChain,
    ) -> Self {
        let atoms = c.masks.iter().filter(|&&m| m > 0.0).count() as u64;
        Self {
            info: EntryInfo {
                id: format!("{pdb_id}_{}", c.chain_id),
                pdb_id: pdb_id.to_string(),
                chain_id: c.chain_id,
                sequence: c.sequence,
                release_date: release_date.map(str::to_string),
                source: source.to_string(),
                offset: 0,
                atoms,
            },
            positions: c.positions,
            masks: c.masks,
        }
    }

    pub fn len(&self) -> usize {
        self.info.sequence.len()
    }

    pub fn is_empty(&self) -> bool {
        self.info.sequence.is_empty()
    }
}

/// What a folder build read and skipped.
#[derive(Debug, Default)]
pub struct BuildReport {
    pub entries: Vec<TemplateEntry>,
    /// Structure files read (parsed or not).
    pub files_seen: usize,
    /// Files or chains left out: (file or `file:chain`, reason).
    pub skipped: Vec<(String, String)>,
    /// Chains kept with a remark: (`file:chain`, remark), e.g. SEQRES disagreeing with the
    /// atoms (read as AF2 reads it; see `structure_read`).
    pub notes: Vec<(String, String)>,
}

/// Reads every structure file (`.cif`, `.mmcif`, `.pdb`, `.ent`, each optionally `.gz`) of
/// `dir` (not recursive), in name order. Files that cannot be read, have no protein chain or
/// repeat an entry id are recorded in `skipped`; so are chains with a duplicate chain id or no
/// modelled CA. Chains kept with a remark (SEQRES disagreeing with the atoms) are in `notes`.
/// Never fails for bad files, only when `dir` cannot be listed.
pub fn build_from_dir(dir: &Path) -> Result<BuildReport> {
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot list {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && structure_read::structure_format(p).is_some())
        .collect();
    paths.sort();
    let mut report = BuildReport::default();
    let mut seen_ids = std::collections::HashSet::new();
    let mut seen_pdb: std::collections::HashMap<String, String> = Default::default();
    for path in paths {
        report.files_seen += 1;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let parsed = match structure_read::read_structure(&path) {
            Ok(p) => p,
            Err(e) => {
                let msg = e.to_string();
                let reason = msg
                    .strip_prefix(&format!("{}: ", path.display()))
                    .unwrap_or(&msg)
                    .to_string();
                report.skipped.push((name, reason));
                continue;
            }
        };
        if let Some(first) = seen_pdb.get(&parsed.id) {
            report.skipped.push((
                name,
                format!("entry {} already read from {first}", parsed.id),
            ));
            continue;
        }
        seen_pdb.insert(parsed.id.clone(), name.clone());
        for (chain, reason) in &parsed.skipped_chains {
            report
                .skipped
                .push((format!("{name}:{chain}"), reason.clone()));
        }
        for (chain, note) in &parsed.notes {
            report.notes.push((format!("{name}:{chain}"), note.clone()));
        }
        for c in parsed.chains {
            let e = TemplateEntry::from_chain(&parsed.id, parsed.release_date.as_deref(), &name, c);
            if !seen_ids.insert(e.info.id.clone()) {
                report.skipped.push((
                    format!("{name}:{}", e.info.chain_id),
                    format!("duplicate entry id {}", e.info.id),
                ));
                continue;
            }
            report.entries.push(e);
        }
    }
    Ok(report)
}

/// Serializes entries into the library format.
pub fn encode(entries: &[TemplateEntry]) -> Result<Vec<u8>> {
    let mut data = Vec::new();
    let mut infos = Vec::with_capacity(entries.len());
    for e in entries {
        let n = e.len();
        if e.masks.len() != n * 37 || e.positions.len() != n * 111 {
            bail!(
                "entry {}: atom arrays do not match its {n} residues",
                e.info.id
            );
        }
        let mut info = e.info.clone();
        info.offset = data.len() as u64;
        data.extend(e.masks.iter().map(|&m| u8::from(m > 0.0)));
        let mut atoms = 0u64;
        for (a, &m) in e.masks.iter().enumerate() {
            if m > 0.0 {
                for k in 0..3 {
                    data.extend_from_slice(&e.positions[a * 3 + k].to_le_bytes());
                }
                atoms += 1;
            }
        }
        info.atoms = atoms;
        infos.push(info);
    }
    let index = serde_json::to_vec(&infos)?;
    let mut out = Vec::with_capacity(HEADER_LEN + index.len() + data.len() + FOOTER_LEN);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(
        &(u32::try_from(entries.len()).context("too many entries")?).to_le_bytes(),
    );
    out.extend_from_slice(&(index.len() as u64).to_le_bytes());
    out.extend_from_slice(&(data.len() as u64).to_le_bytes());
    out.extend_from_slice(&index);
    out.extend_from_slice(&data);
    out.extend_from_slice(&crc32(&index).to_le_bytes());
    out.extend_from_slice(&crc32(&data).to_le_bytes());
    out.extend_from_slice(END_MAGIC);
    Ok(out)
}

/// Writes a library file atomically (a crash leaves the old file or none).
pub fn write_library(path: &Path, entries: &[TemplateEntry]) -> Result<()> {
    let bytes = encode(entries)?;
    ferrofold_io::atomic::write_atomic(path, &bytes)
        .with_context(|| format!("cannot write template library {}", path.display()))
}

fn crc32(bytes: &[u8]) -> u32 {
    crc32fast::hash(bytes)
}

/// A template library loaded into memory (index parsed, coordinates decoded per entry).
#[derive(Debug)]
pub struct TemplateLibrary {
    entries: Vec<EntryInfo>,
    data: Vec<u8>,
}

impl TemplateLibrary {
    /// Opens a library file: refuses foreign, truncated, corrupt or newer-version files.
    pub fn open(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path)
            .with_context(|| format!("cannot read template library {}", path.display()))?;
        Self::decode(bytes).with_context(|| format!("template library {}", path.display()))
    }

    /// Decodes library bytes (see [`TemplateLibrary::open`]).
    pub fn decode(bytes: Vec<u8>) -> Result<Self> {
        if bytes.len() < 8 || &bytes[..8] != MAGIC {
            bail!("not a ferrofold template library (bad magic; build one with `ferrofold db build-templates`)");
        }
        if bytes.len() < HEADER_LEN + FOOTER_LEN {
            bail!("truncated: {} bytes", bytes.len());
        }
        let u32_at = |o: usize| u32::from_le_bytes(bytes[o..o + 4].try_into().expect("4 bytes"));
        let u64_at = |o: usize| u64::from_le_bytes(bytes[o..o + 8].try_into().expect("8 bytes"));
        let version = u32_at(8);
        if version != VERSION {
            bail!("format version {version}, this build reads version {VERSION}");
        }
        let count = u32_at(12) as usize;
        let (ilen, dlen) = (u64_at(16), u64_at(24));
        let expected = (HEADER_LEN as u64)
            .checked_add(ilen)
            .and_then(|x| x.checked_add(dlen))
            .and_then(|x| x.checked_add(FOOTER_LEN as u64));
        if expected != Some(bytes.len() as u64) {
            bail!(
                "truncated or corrupt: {} bytes, the header announces {}",
                bytes.len(),
                expected.map_or("an impossible size".into(), |e| e.to_string())
            );
        }
        let (ilen, dlen) = (ilen as usize, dlen as usize);
        let index = &bytes[HEADER_LEN..HEADER_LEN + ilen];
        let data_start = HEADER_LEN + ilen;
        let footer = data_start + dlen;
        if &bytes[footer + 8..] != END_MAGIC {
            bail!("truncated or corrupt: end marker missing");
        }
        if crc32(index) != u32_at(footer) {
            bail!("corrupt: index checksum mismatch");
        }
        if crc32(&bytes[data_start..footer]) != u32_at(footer + 4) {
            bail!("corrupt: coordinate checksum mismatch");
        }
        let entries: Vec<EntryInfo> =
            serde_json::from_slice(index).context("corrupt: unreadable index")?;
        if entries.len() != count {
            bail!(
                "corrupt: {} index records, header says {count}",
                entries.len()
            );
        }
        for e in &entries {
            let n = e.sequence.len() as u64;
            let end = e
                .offset
                .checked_add(n * 37)
                .and_then(|x| x.checked_add(e.atoms.checked_mul(12)?));
            if end.is_none_or(|end| end > dlen as u64) || e.atoms > n * 37 {
                bail!("corrupt: entry {} points outside the data", e.id);
            }
        }
        let mut data = bytes;
        data.truncate(footer);
        data.drain(..data_start);
        Ok(Self { entries, data })
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Index records (ids, sequences, dates) of all entries, in build order.
    pub fn entries(&self) -> &[EntryInfo] {
        &self.entries
    }

    /// The position of entry `id` (`1abc_A`).
    pub fn find(&self, id: &str) -> Option<usize> {
        self.entries.iter().position(|e| e.id == id)
    }

    /// Entry `i` with its coordinates.
    pub fn get(&self, i: usize) -> Result<TemplateEntry> {
        let info = self
            .entries
            .get(i)
            .with_context(|| format!("no template entry {i} (library has {})", self.len()))?
            .clone();
        let n = info.sequence.len();
        let off = info.offset as usize;
        let mask_bytes = &self.data[off..off + n * 37];
        let mut coords = &self.data[off + n * 37..off + n * 37 + info.atoms as usize * 12];
        let present = mask_bytes.iter().filter(|&&b| b != 0).count();
        if present as u64 != info.atoms {
            bail!(
                "corrupt: entry {} has {present} atoms, index says {}",
                info.id,
                info.atoms
            );
        }
        let mut positions = vec![0f32; n * 111];
        let mut masks = vec![0f32; n * 37];
        for (a, &b) in mask_bytes.iter().enumerate() {
            if b != 0 {
                masks[a] = 1.0;
                for k in 0..3 {
                    positions[a * 3 + k] =
                        f32::from_le_bytes(coords[..4].try_into().expect("4 bytes"));
                    coords = &coords[4..];
                }
            }
        }
        Ok(TemplateEntry {
            info,
            positions,
            masks,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_matches_the_standard_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }
}

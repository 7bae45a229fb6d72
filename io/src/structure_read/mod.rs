//! Reading experimental structures (mmCIF and PDB, plain or gzipped) into per-chain atom37
//! coordinates, as AlphaFold2's `mmcif_parsing.parse` + `templates._get_atom_positions` see them.
//!
//! - mmCIF ([`parse_mmcif`]): the protein chains are the `_struct_asym` chains of entities with
//!   at least one `_chem_comp.type` containing "peptide"; the sequence is `_entity_poly_seq`
//!   (SEQRES) mapped to one letter with Biopython's SCOPData table (modified residues to their
//!   parent, MSE → M; unknown → X); residues are placed by `label_seq_id`, so unmodelled SEQRES
//!   residues get mask 0. Chains are named by `auth_asym_id`; the first model only. Atoms come
//!   from the residue (author number, insertion code, hetero flag) that the last `_atom_site` row
//!   of that SEQRES position names, as AF2 looks them up in the Biopython structure; with
//!   alternate locations the atom of highest occupancy is kept (the first on ties), as
//!   Biopython's `DisorderedAtom` selects.
//!   SEQRES that disagrees with the atoms is read as AF2 reads it, and noted
//!   ([`ParsedStructure::notes`]): where `_entity_poly_seq` names another residue than the
//!   atoms at that `label_seq_id`, the SEQRES residue is the sequence (and so the template
//!   aatype) and the modelled residue's atoms fill the atom37 slots their names give; atoms at a
//!   `label_seq_id` outside SEQRES are ignored. The chain is kept. (Microheterogeneity, two
//!   residues listed at one `num`, makes two positions, as in AF2, and shifts the atoms after
//!   it by one: noted the same way.)
//! - PDB ([`parse_pdb`]): no reliable SEQRES → ATOM mapping exists, so the sequence is the
//!   modelled residues of the first model (amino acids with a CA atom, ATOM or HETATM, in file
//!   order; insertion codes make separate residues); SEQRES records are ignored, and a chain
//!   whose modelled residues are not found in order in its SEQRES is noted.
//! - Both: atom names that are atom37 names fill those slots; MSE's SE goes to SD; arginines
//!   with NH1/NH2 swapped (NH1 farther from CD) are fixed, as `_get_atom_positions` does.
//!   Coordinates are read as f64 and rounded to f32 (Biopython's `numpy.array(..., "f")`).
//!
//! Hostile input: files are capped at [`MAX_FILE_BYTES`] (decompressed), every error is an
//! [`IoError`] naming the file, nothing panics.

mod cif;
mod mmcif;
mod pdb;
mod residue_table;

pub use mmcif::parse_mmcif;
pub use pdb::parse_pdb;

use crate::{IoError, Result};
use std::io::Read;
use std::path::Path;

/// Largest structure file read (after decompression): 1 GiB.
pub const MAX_FILE_BYTES: u64 = 1 << 30;

/// AlphaFold2's atom37 names (`residue_constants.atom_types`).
pub const ATOM37_NAMES: [&str; 37] = [
    "N", "CA", "C", "CB", "O", "CG", "CG1", "CG2", "OG", "OG1", "SG", "CD", "CD1", "CD2", "ND1",
    "ND2", "OD1", "OD2", "SD", "CE", "CE1", "CE2", "CE3", "NE", "NE1", "NE2", "OE1", "OE2", "CH2",
    "NH1", "NH2", "OH", "CZ", "CZ2", "CZ3", "NZ", "OXT",
];

/// The atom37 slot of an atom name.
pub fn atom37_index(name: &str) -> Option<usize> {
    ATOM37_NAMES.iter().position(|a| *a == name)
}

/// One-letter code of a residue component, as AF2's `mmcif_parsing` reads it (Biopython
/// SCOPData `protein_letters_3to1`; anything else, or a multi-letter entry, is `X`).
pub fn one_letter_code(comp_id: &str) -> u8 {
    residue_table::PROTEIN_LETTERS_3TO1
        .binary_search_by(|(k, _)| (*k).cmp(comp_id))
        .map(|i| residue_table::PROTEIN_LETTERS_3TO1[i].1)
        .unwrap_or(b'X')
}

/// Whether the component is in the SCOPData amino-acid table at all (a protein residue for the
/// PDB reader).
pub fn is_known_residue(comp_id: &str) -> bool {
    residue_table::PROTEIN_LETTERS_3TO1
        .binary_search_by(|(k, _)| (*k).cmp(comp_id))
        .is_ok()
}

/// One protein chain: sequence and atom37 coordinates per sequence position.
#[derive(Clone, Debug, PartialEq)]
pub struct ProteinChain {
    /// Author chain id (`auth_asym_id`, or the PDB chain column).
    pub chain_id: String,
    /// One-letter sequence (SEQRES for mmCIF, modelled residues for PDB).
    pub sequence: String,
    /// Residue component per sequence position (`MSE`, `ALA`, ...).
    pub residue_names: Vec<String>,
    /// Atom37 positions in Å, [N, 37, 3].
    pub positions: Vec<f32>,
    /// Atom37 masks (1 present, 0 absent), [N, 37].
    pub masks: Vec<f32>,
}

impl ProteinChain {
    pub fn len(&self) -> usize {
        self.sequence.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sequence.is_empty()
    }

    /// Residues with a CA atom.
    pub fn modelled_residues(&self) -> usize {
        self.masks.chunks(37).filter(|m| m[1] > 0.0).count()
    }
}

/// A parsed structure file.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ParsedStructure {
    /// Entry id: `_entry.id` / the HEADER id code, lower case; else the file stem.
    pub id: String,
    /// First release, `YYYY-MM-DD` (mmCIF: the earliest `_pdbx_audit_revision_history`
    /// date, as AF2; PDB: REVDAT 1, else the HEADER deposition date).
    pub release_date: Option<String>,
    pub chains: Vec<ProteinChain>,
    /// Chains left out, with the reason (duplicate chain id, no modelled atom, ...).
    pub skipped_chains: Vec<(String, String)>,
    /// Chains kept with a remark: (chain id, what was found and how it was read), e.g. SEQRES
    /// that disagrees with the atoms.
    pub notes: Vec<(String, String)>,
}

impl ParsedStructure {
    /// The structure, or why it has no usable protein chain (the skipped chains' reasons).
    pub(crate) fn with_chains(self) -> Result<Self, String> {
        if !self.chains.is_empty() {
            return Ok(self);
        }
        let why: Vec<String> = self
            .skipped_chains
            .iter()
            .map(|(c, r)| format!("{c}: {r}"))
            .collect();
        Err(if why.is_empty() {
            "no protein chains".into()
        } else {
            format!("no usable protein chain ({})", why.join("; "))
        })
    }
}

/// The format of a structure file, from its name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StructureFormat {
    Mmcif,
    Pdb,
}

/// Format and gzip flag from the file name: `.cif`, `.mmcif`, `.pdb`, `.ent`, each optionally
/// `.gz`; `None` for anything else.
pub fn structure_format(path: &Path) -> Option<(StructureFormat, bool)> {
    let name = path.file_name()?.to_str()?.to_ascii_lowercase();
    let (stem, gz) = match name.strip_suffix(".gz") {
        Some(s) => (s.to_string(), true),
        None => (name, false),
    };
    let ext = stem.rsplit('.').next()?;
    let format = match ext {
        "cif" | "mmcif" => StructureFormat::Mmcif,
        "pdb" | "ent" => StructureFormat::Pdb,
        _ => return None,
    };
    if !stem.contains('.') {
        return None;
    }
    Some((format, gz))
}

/// The entry id a file name implies: the name up to the first `.`, lower case, without the
/// `pdb` prefix of `pdbXXXX.ent` files.
pub fn file_stem_id(path: &Path) -> String {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("structure")
        .to_ascii_lowercase();
    let stem = name.split('.').next().unwrap_or("structure").to_string();
    match stem.strip_prefix("pdb") {
        Some(rest) if rest.len() == 4 && name.contains(".ent") => rest.to_string(),
        _ => stem,
    }
}

/// Reads a file as text, gunzipping if `gz`, refusing more than [`MAX_FILE_BYTES`].
pub fn read_text(path: &Path, gz: bool) -> Result<String> {
    let file = std::fs::File::open(path).map_err(|e| IoError::file(path, e))?;
    let mut bytes = Vec::new();
    let limit = MAX_FILE_BYTES + 1;
    let read = if gz {
        flate2::read::MultiGzDecoder::new(file)
            .take(limit)
            .read_to_end(&mut bytes)
    } else {
        file.take(limit).read_to_end(&mut bytes)
    };
    read.map_err(|e| IoError::format(path, format!("cannot read: {e}")))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(IoError::format(
            path,
            format!("larger than {MAX_FILE_BYTES} bytes (decompressed)"),
        ));
    }
    String::from_utf8(bytes).or_else(|e| {
        // Structure files are ASCII; tolerate stray Latin-1 bytes in free text.
        Ok(e.into_bytes().iter().map(|&b| b as char).collect())
    })
}

/// Reads and parses a structure file by its extension.
pub fn read_structure(path: &Path) -> Result<ParsedStructure> {
    let (format, gz) = structure_format(path).ok_or_else(|| {
        IoError::format(
            path,
            "not a structure file (.cif, .mmcif, .pdb, .ent, optionally .gz)",
        )
    })?;
    let text = read_text(path, gz)?;
    let fallback_id = file_stem_id(path);
    let parsed = match format {
        StructureFormat::Mmcif => parse_mmcif(&text, &fallback_id),
        StructureFormat::Pdb => parse_pdb(&text, &fallback_id),
    };
    parsed.map_err(|msg| IoError::format(path, msg))
}

/// Atoms of one residue, gathered before the atom37 conversion.
#[derive(Default)]
pub(crate) struct ResidueAtoms {
    pub name: String,
    /// (atom name, position, occupancy), first occurrence order.
    pub atoms: Vec<(String, [f32; 3], f64)>,
}

impl ResidueAtoms {
    /// Adds an atom; an atom name seen before is replaced only by strictly higher occupancy.
    pub fn add(&mut self, name: &str, pos: [f32; 3], occupancy: f64) {
        if let Some(a) = self.atoms.iter_mut().find(|a| a.0 == name) {
            if occupancy > a.2 {
                a.1 = pos;
                a.2 = occupancy;
            }
        } else {
            self.atoms.push((name.to_string(), pos, occupancy));
        }
    }

    /// Atom37 positions and mask, as `templates._get_atom_positions`.
    pub fn atom37(&self) -> ([f32; 111], [f32; 37]) {
        let mut pos = [0f32; 111];
        let mut mask = [0f32; 37];
        for (name, p, _) in &self.atoms {
            let slot = match atom37_index(name) {
                Some(i) => Some(i),
                None if name.eq_ignore_ascii_case("SE") && self.name == "MSE" => Some(18),
                None => None,
            };
            if let Some(i) = slot {
                pos[i * 3..i * 3 + 3].copy_from_slice(p);
                mask[i] = 1.0;
            }
        }
        // Arginine NH1/NH2 naming fix (CD = 11, NH1 = 29, NH2 = 30).
        let (cd, nh1, nh2) = (11, 29, 30);
        if self.name == "ARG" && mask[cd] > 0.0 && mask[nh1] > 0.0 && mask[nh2] > 0.0 {
            let dist = |a: usize, b: usize| {
                let d: Vec<f32> = (0..3).map(|k| pos[a * 3 + k] - pos[b * 3 + k]).collect();
                (d[0] * d[0] + d[1] * d[1] + d[2] * d[2]).sqrt()
            };
            if dist(nh1, cd) > dist(nh2, cd) {
                for k in 0..3 {
                    pos.swap(nh1 * 3 + k, nh2 * 3 + k);
                }
            }
        }
        (pos, mask)
    }
}

/// `true` for `.` and `?` (mmCIF's unset values).
pub(crate) fn is_unset(v: &str) -> bool {
    v == "." || v == "?"
}

//! Turning a prediction into the files a user reads: the structure (N, CA, C, CB, O; no
//! CB for glycine, as IgFold writes it) with the per-residue predicted error in the
//! B-factor column, and the result JSON.

use super::antibody::Antibody;
use super::ensemble::{atoms_with_oxygen, residue_error, Prediction};
use ferrofold_io::structure::{three_letter, Atom, Chain, Residue, Structure};
use serde::Serialize;

const ATOM_NAMES: [&str; 5] = ["N", "CA", "C", "CB", "O"];

/// `(chain id, residues, index of its first residue in the whole antibody)`.
fn chains_with_offsets(ab: &Antibody) -> impl Iterator<Item = (char, &str, usize)> {
    ab.chains.iter().scan(0, |offset, (id, seq)| {
        let start = *offset;
        *offset += seq.len();
        Some((*id, seq.as_str(), start))
    })
}

/// The chosen member's refined backbone as a structure, chains H and L numbered from 1.
pub fn to_structure(ab: &Antibody, pred: &Prediction) -> Structure {
    let best = pred.best();
    let coords = atoms_with_oxygen(&best.frames, &ab.chain_lens());
    let error = residue_error(&best.prmsd);
    let chains = chains_with_offsets(ab)
        .map(|(id, seq, offset)| {
            let residues = seq
                .bytes()
                .enumerate()
                .map(|(k, aa)| {
                    let i = offset + k;
                    let atoms = ATOM_NAMES
                        .iter()
                        .zip(coords[i])
                        .filter(|(name, _)| !(aa == b'G' && **name == "CB"))
                        .map(|(name, xyz)| Atom {
                            name: name.to_string(),
                            element: name[..1].to_string(),
                            xyz,
                            occupancy: 1.0,
                            b_factor: error[i],
                        })
                        .collect();
                    Residue {
                        name: three_letter(aa).to_string(),
                        seq_num: k as i32 + 1,
                        atoms,
                    }
                })
                .collect();
            Chain {
                id: id.to_string(),
                residues,
            }
        })
        .collect();
    Structure { chains }
}

#[derive(Serialize)]
pub struct MemberSummary {
    pub name: String,
    /// 90th percentile of the refined predicted error (Å); the lowest is chosen.
    pub score: f32,
}

#[derive(Serialize)]
pub struct ChainError {
    pub chain: String,
    pub sequence: String,
    /// Per-residue RMS of the predicted N, CA, C, CB deviations (Å).
    pub residue_error: Vec<f32>,
}

/// The result JSON written beside the structure.
#[derive(Serialize)]
pub struct ResultJson {
    pub name: String,
    pub model: &'static str,
    pub chosen_member: String,
    pub members: Vec<MemberSummary>,
    /// Mean of the per-residue predicted error (Å).
    pub mean_residue_error: f32,
    pub chains: Vec<ChainError>,
    /// Predicted deviation of N, CA, C, CB per residue (Å), all chains in order.
    pub atom_error: Vec<[f32; 4]>,
    pub timings: super::ensemble::Timings,
}

pub fn to_json(ab: &Antibody, pred: &Prediction) -> ResultJson {
    let best = pred.best();
    let error = residue_error(&best.prmsd);
    let chains = chains_with_offsets(ab)
        .map(|(id, seq, offset)| ChainError {
            chain: id.to_string(),
            sequence: seq.to_string(),
            residue_error: error[offset..offset + seq.len()].to_vec(),
        })
        .collect();
    ResultJson {
        name: ab.name.clone(),
        model: "igfold",
        chosen_member: best.name.clone(),
        members: pred
            .members
            .iter()
            .map(|m| MemberSummary {
                name: m.name.clone(),
                score: m.score,
            })
            .collect(),
        mean_residue_error: error.iter().sum::<f32>() / error.len() as f32,
        chains,
        atom_error: best
            .prmsd
            .data()
            .chunks(4)
            .map(|c| [c[0], c[1], c[2], c[3]])
            .collect(),
        timings: pred.timings.clone(),
    }
}

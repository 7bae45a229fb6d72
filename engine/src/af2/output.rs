//! AlphaFold2 results as files: the all-atom structure with pLDDT in the B-factor column,
//! ModelCIF's `_ma_qa_metric` pLDDT (global and per residue) in the mmCIF, and the JSON.

use super::structure::residue_constants::{ATOM_TYPES, RESTYPES};
use ferrofold_io::cif::CifCategory;
use ferrofold_io::structure::{three_letter, Atom, Chain, Residue, Structure};
use ferrofold_kernels::Tensor;

/// Chain id of a monomer prediction.
const CHAIN: &str = "A";

/// atom37 positions `[L, 37, 3]` and mask `[L, 37]` of residues `aatype` (AF order),
/// numbered `residue_index + 1`, with per-residue `plddt` as B-factors.
pub fn to_structure(
    aatype: &[usize],
    residue_index: &[i64],
    positions: &Tensor,
    mask: &Tensor,
    plddt: &[f32],
) -> Structure {
    let (p, m) = (positions.data(), mask.data());
    let residues = aatype
        .iter()
        .enumerate()
        .map(|(i, &aa)| Residue {
            name: one_letter(aa)
                .map_or("UNK", |c| three_letter(c as u8))
                .to_string(),
            seq_num: residue_index[i] as i32 + 1,
            atoms: ATOM_TYPES
                .iter()
                .enumerate()
                .filter(|(a, _)| m[i * 37 + a] > 0.5)
                .map(|(a, name)| Atom {
                    name: name.to_string(),
                    element: name[..1].to_string(),
                    xyz: [
                        p[(i * 37 + a) * 3],
                        p[(i * 37 + a) * 3 + 1],
                        p[(i * 37 + a) * 3 + 2],
                    ],
                    occupancy: 1.0,
                    b_factor: plddt[i],
                })
                .collect(),
        })
        .collect();
    Structure {
        chains: vec![Chain {
            id: CHAIN.into(),
            residues,
        }],
    }
}

fn one_letter(aa: usize) -> Option<char> {
    RESTYPES.get(aa).and_then(|s| s.chars().next())
}

/// ModelCIF quality categories: mean pLDDT (global) and pLDDT per residue (local).
pub fn plddt_categories(structure: &Structure, plddt: &[f32]) -> Vec<String> {
    let mut metric = CifCategory::new("_ma_qa_metric", &["id", "name", "mode", "type"]);
    metric.push_row(["1", "pLDDT", "global", "pLDDT"]);
    metric.push_row(["2", "pLDDT", "local", "pLDDT"]);
    let mean = plddt.iter().sum::<f32>() / plddt.len().max(1) as f32;
    let mut global = CifCategory::new(
        "_ma_qa_metric_global",
        &["ordinal_id", "model_id", "metric_id", "metric_value"],
    );
    global.push_row([
        "1".to_string(),
        "1".into(),
        "1".into(),
        format!("{mean:.2}"),
    ]);
    let mut local = CifCategory::new(
        "_ma_qa_metric_local",
        &[
            "ordinal_id",
            "model_id",
            "label_asym_id",
            "label_seq_id",
            "label_comp_id",
            "metric_id",
            "metric_value",
        ],
    );
    let residues = structure.chains.iter().flat_map(|c| {
        c.residues
            .iter()
            .enumerate()
            .map(move |(pos, r)| (c, pos, r))
    });
    for (k, ((chain, position, residue), value)) in residues.zip(plddt).enumerate() {
        local.push_row([
            (k + 1).to_string(),
            "1".into(),
            chain.id.clone(),
            (position + 1).to_string(),
            residue.name.clone(),
            "2".into(),
            format!("{value:.2}"),
        ]);
    }
    vec![metric.render(), global.render(), local.render()]
}

//! mmCIF → protein chains, mirroring AF2's `mmcif_parsing.parse` (see the module docs above).

use super::cif::{parse_block, CifBlock};
use super::{is_unset, one_letter_code, ParsedStructure, ProteinChain, ResidueAtoms};
use std::collections::{BTreeSet, HashMap};

/// The tags read from an mmCIF file (every other value is skipped while parsing).
const TAGS_READ: [&str; 22] = [
    "_entry.id",
    "_pdbx_audit_revision_history.revision_date",
    "_entity_poly_seq.entity_id",
    "_entity_poly_seq.mon_id",
    "_entity_poly_seq.num",
    "_chem_comp.id",
    "_chem_comp.type",
    "_struct_asym.id",
    "_struct_asym.entity_id",
    "_atom_site.label_comp_id",
    "_atom_site.auth_asym_id",
    "_atom_site.label_asym_id",
    "_atom_site.auth_seq_id",
    "_atom_site.label_seq_id",
    "_atom_site.pdbx_pdb_ins_code",
    "_atom_site.group_pdb",
    "_atom_site.pdbx_pdb_model_num",
    "_atom_site.label_atom_id",
    "_atom_site.cartn_x",
    "_atom_site.cartn_y",
    "_atom_site.cartn_z",
    "_atom_site.occupancy",
];

/// Most SEQRES residues over a file's protein chains (592 bytes each as atom37 arrays):
/// far above the largest PDB entries' protein chains together.
const MAX_RESIDUES: usize = 1_000_000;

/// A residue in the (first-model) structure: author chain, hetero flag (`" "`, `"W"` or
/// `"H_<name>"`), author number, insertion code — Biopython's residue id.
type ResKey = (String, String, i64, String);

fn int(v: &str, what: &str) -> Result<i64, String> {
    v.trim().parse::<i64>().map_err(|_| {
        format!(
            "{what} `{}` is not an integer",
            v.chars().take(20).collect::<String>()
        )
    })
}

fn float(v: &str, what: &str) -> Result<f64, String> {
    let x = v.trim().parse::<f64>().map_err(|_| {
        format!(
            "{what} `{}` is not a number",
            v.chars().take(20).collect::<String>()
        )
    })?;
    if !x.is_finite() {
        return Err(format!("{what} `{v}` is not finite"));
    }
    Ok(x)
}

struct AtomSite<'a> {
    comp: &'a [&'a str],
    auth_asym: &'a [&'a str],
    label_asym: &'a [&'a str],
    auth_seq: &'a [&'a str],
    label_seq: &'a [&'a str],
    ins_code: Option<&'a [&'a str]>,
    group: Option<&'a [&'a str]>,
    model: Option<&'a [&'a str]>,
    atom: &'a [&'a str],
    x: &'a [&'a str],
    y: &'a [&'a str],
    z: &'a [&'a str],
    occupancy: Option<&'a [&'a str]>,
}

impl<'a> AtomSite<'a> {
    fn new(b: &'a CifBlock<'a>) -> Result<Self, String> {
        let s = Self {
            comp: b.column("_atom_site.label_comp_id")?,
            auth_asym: b.column("_atom_site.auth_asym_id")?,
            label_asym: b.column("_atom_site.label_asym_id")?,
            auth_seq: b.column("_atom_site.auth_seq_id")?,
            label_seq: b.column("_atom_site.label_seq_id")?,
            ins_code: b.get("_atom_site.pdbx_pdb_ins_code"),
            group: b.get("_atom_site.group_pdb"),
            model: b.get("_atom_site.pdbx_pdb_model_num"),
            atom: b.column("_atom_site.label_atom_id")?,
            x: b.column("_atom_site.cartn_x")?,
            y: b.column("_atom_site.cartn_y")?,
            z: b.column("_atom_site.cartn_z")?,
            occupancy: b.get("_atom_site.occupancy"),
        };
        let n = s.comp.len();
        let optional = [s.ins_code, s.group, s.model, s.occupancy];
        let required = [
            s.auth_asym,
            s.label_asym,
            s.auth_seq,
            s.label_seq,
            s.atom,
            s.x,
            s.y,
            s.z,
        ];
        if required.iter().any(|c| c.len() != n) || optional.iter().flatten().any(|c| c.len() != n)
        {
            return Err("_atom_site columns differ in length (corrupt file)".into());
        }
        Ok(s)
    }

    fn len(&self) -> usize {
        self.comp.len()
    }

    fn key(&self, i: usize) -> Result<ResKey, String> {
        let resname = self.comp[i];
        let het = match self.group.map(|g| g[i]) {
            Some("HETATM") if resname == "HOH" || resname == "WAT" => "W".to_string(),
            Some("HETATM") => format!("H_{resname}"),
            _ => " ".to_string(),
        };
        let icode = match self.ins_code.map(|c| c[i]) {
            Some(c) if !is_unset(c) => c.to_string(),
            _ => " ".to_string(),
        };
        Ok((
            self.auth_asym[i].to_string(),
            het,
            int(self.auth_seq[i], "_atom_site.auth_seq_id")?,
            icode,
        ))
    }
}

/// The remark on a chain whose SEQRES (`_entity_poly_seq`) disagrees with its atoms: positions
/// whose atoms are another residue, atoms outside SEQRES; `None` when they agree.
fn seqres_note(
    label: &str,
    seq: &[(&str, i64)],
    differ: &[(i64, &str, &str)],
    outside: &BTreeSet<i64>,
) -> Option<String> {
    const SHOWN: usize = 3;
    let n = seq.len();
    let mut parts = Vec::new();
    // Microheterogeneity: several residues listed at one `num`. AF2 makes each listed residue
    // a position, so the atoms after it sit one position off (the disagreements below).
    let mut repeated: Vec<i64> = seq
        .windows(2)
        .filter(|w| w[0].1 == w[1].1)
        .map(|w| w[0].1)
        .collect();
    repeated.dedup();
    if !repeated.is_empty() && !differ.is_empty() {
        let shown: Vec<String> = repeated.iter().take(SHOWN).map(|v| v.to_string()).collect();
        let more = if repeated.len() > SHOWN { ", ..." } else { "" };
        parts.push(format!(
            "SEQRES lists several residues at num {}{more} (microheterogeneity), each read as \
             one position (as AF2)",
            shown.join(", ")
        ));
    }
    if !differ.is_empty() {
        let shown: Vec<String> = differ
            .iter()
            .take(SHOWN)
            .map(|(num, sr, at)| format!("label_seq_id {num}: SEQRES {sr}, atoms {at}"))
            .collect();
        let more = if differ.len() > SHOWN { ", ..." } else { "" };
        parts.push(format!(
            "SEQRES disagrees with the atoms at {} of {n} positions ({}{more}); the SEQRES \
             residue is the sequence, the atoms are those of the modelled residue (as AF2)",
            differ.len(),
            shown.join("; ")
        ));
    }
    if !outside.is_empty() {
        let shown: Vec<String> = outside.iter().take(SHOWN).map(|v| v.to_string()).collect();
        let more = if outside.len() > SHOWN { ", ..." } else { "" };
        parts.push(format!(
            "atoms at label_seq_id {}{more} lie outside SEQRES ({n} residues) and are \
             ignored (as AF2)",
            shown.join(", ")
        ));
    }
    if parts.is_empty() {
        None
    } else {
        Some(format!("label chain {label}: {}", parts.join("; ")))
    }
}

/// Parses an mmCIF file's protein chains (first model). `fallback_id` names the entry when
/// `_entry.id` is absent.
pub fn parse_mmcif(text: &str, fallback_id: &str) -> Result<ParsedStructure, String> {
    let b = parse_block(text, &TAGS_READ)?;
    let id = b
        .get("_entry.id")
        .and_then(|v| v.first())
        .filter(|v| !is_unset(v) && !v.is_empty())
        .map(|v| v.to_ascii_lowercase())
        .unwrap_or_else(|| fallback_id.to_string());
    let release_date = b
        .get("_pdbx_audit_revision_history.revision_date")
        .and_then(|d| d.iter().filter(|v| !is_unset(v)).min())
        .map(|d| d.to_string());

    // Polymers per entity (`_entity_poly_seq`), in order of first appearance.
    let ent = b.column("_entity_poly_seq.entity_id")?;
    let mon = b.column("_entity_poly_seq.mon_id")?;
    let num = b.column("_entity_poly_seq.num")?;
    if mon.len() != ent.len() || num.len() != ent.len() {
        return Err("_entity_poly_seq columns differ in length (corrupt file)".into());
    }
    let mut polymers: Vec<(&str, Vec<(&str, i64)>)> = Vec::new();
    let mut polymer_of: HashMap<&str, usize> = HashMap::new();
    for i in 0..ent.len() {
        let n = int(num[i], "_entity_poly_seq.num")?;
        let p = *polymer_of.entry(ent[i]).or_insert_with(|| {
            polymers.push((ent[i], Vec::new()));
            polymers.len() - 1
        });
        polymers[p].1.push((mon[i], n));
    }
    let chem_types: HashMap<&str, &str> = match (b.get("_chem_comp.id"), b.get("_chem_comp.type")) {
        (Some(ids), Some(types)) if ids.len() == types.len() => {
            ids.iter().copied().zip(types.iter().copied()).collect()
        }
        _ => HashMap::new(),
    };
    let asym_id = b.column("_struct_asym.id")?;
    let asym_entity = b.column("_struct_asym.entity_id")?;
    if asym_id.len() != asym_entity.len() {
        return Err("_struct_asym columns differ in length (corrupt file)".into());
    }
    // Protein label chains: entities with any peptide-like component (AF2 `_get_protein_chains`).
    let mut valid: Vec<(&str, &[(&str, i64)])> = Vec::new();
    for (entity, seq) in &polymers {
        if seq
            .iter()
            .any(|(m, _)| chem_types.get(m).is_some_and(|t| t.contains("peptide")))
        {
            for (a, e) in asym_id.iter().zip(asym_entity) {
                if e == entity {
                    valid.push((a, seq.as_slice()));
                }
            }
        }
    }
    if valid.is_empty() {
        return Err("no protein chains".into());
    }
    let valid_idx: HashMap<&str, usize> = valid.iter().enumerate().map(|(i, v)| (v.0, i)).collect();
    let start: Vec<i64> = valid
        .iter()
        .map(|(_, seq)| seq.iter().map(|m| m.1).min().unwrap_or(1))
        .collect();

    let sites = AtomSite::new(&b)?;
    let first_model = sites.model.and_then(|m| m.first().copied());
    let in_first_model = |i: usize| match (sites.model, first_model) {
        (Some(m), Some(f)) => m[i] == f,
        _ => true,
    };

    // Pass 1: SEQRES position → residue id, per label chain (the last atom row wins, as AF2).
    let mut label_to_auth: HashMap<&str, &str> = HashMap::new();
    let mut seq_to_res: Vec<HashMap<i64, ResKey>> = vec![HashMap::new(); valid.len()];
    // label_seq_id values whose atoms fall outside SEQRES (ignored, as AF2 does), per chain.
    let mut outside: Vec<BTreeSet<i64>> = vec![BTreeSet::new(); valid.len()];
    for i in 0..sites.len() {
        if !in_first_model(i) {
            continue;
        }
        label_to_auth.insert(sites.label_asym[i], sites.auth_asym[i]);
        if let Some(&c) = valid_idx.get(sites.label_asym[i]) {
            if is_unset(sites.label_seq[i]) {
                continue;
            }
            let num = int(sites.label_seq[i], "_atom_site.label_seq_id")?;
            let idx = num.saturating_sub(start[c]);
            if idx < 0 || idx >= valid[c].1.len() as i64 {
                outside[c].insert(num);
            }
            seq_to_res[c].insert(idx, sites.key(i)?);
        }
    }
    // Pass 2: atoms of the residues needed, grouped per residue id and name; the residue
    // name of the last row of a residue id is the one Biopython selects.
    let mut needed: HashMap<ResKey, (String, HashMap<String, ResidueAtoms>)> = HashMap::new();
    for m in &seq_to_res {
        for k in m.values() {
            needed.insert(k.clone(), (String::new(), HashMap::new()));
        }
    }
    for i in 0..sites.len() {
        if !in_first_model(i) || is_unset(sites.auth_seq[i]) {
            continue;
        }
        let Ok(key) = sites.key(i) else { continue };
        let Some((selected, by_name)) = needed.get_mut(&key) else {
            continue;
        };
        let resname = sites.comp[i];
        *selected = resname.to_string();
        let pos = [
            float(sites.x[i], "_atom_site.Cartn_x")? as f32,
            float(sites.y[i], "_atom_site.Cartn_y")? as f32,
            float(sites.z[i], "_atom_site.Cartn_z")? as f32,
        ];
        let occ = match sites.occupancy.map(|o| o[i]) {
            Some(o) if !is_unset(o) => float(o, "_atom_site.occupancy")?,
            _ => 1.0,
        };
        let res = by_name
            .entry(resname.to_string())
            .or_insert_with(|| ResidueAtoms {
                name: resname.to_string(),
                atoms: Vec::new(),
            });
        res.add(sites.atom[i], pos, occ);
    }

    // Each chain of an entity gets its own copy of the entity's sequence: bounded in all
    // before any is made, since a small file can declare a long sequence shared by many
    // chains.
    let residues: usize = valid
        .iter()
        .filter(|(label, _)| label_to_auth.contains_key(label))
        .map(|(_, seq)| seq.len())
        .sum();
    if residues > MAX_RESIDUES {
        return Err(format!(
            "{residues} residues in protein chains, over {MAX_RESIDUES}: too large to read"
        ));
    }
    let mut out = ParsedStructure {
        id,
        release_date,
        ..Default::default()
    };
    for (c, (label, seq)) in valid.iter().enumerate() {
        let Some(&auth) = label_to_auth.get(label) else {
            out.skipped_chains
                .push((label.to_string(), "no modelled atoms".into()));
            continue;
        };
        if out.chains.iter().any(|ch| ch.chain_id == auth) {
            out.skipped_chains.push((
                auth.to_string(),
                format!("duplicate chain id (label chain {label}); the first kept"),
            ));
            continue;
        }
        let n = seq.len();
        let mut chain = ProteinChain {
            chain_id: auth.to_string(),
            sequence: seq
                .iter()
                .map(|(m, _)| one_letter_code(m) as char)
                .collect(),
            residue_names: seq.iter().map(|(m, _)| m.to_string()).collect(),
            positions: vec![0.0; n * 111],
            masks: vec![0.0; n * 37],
        };
        // SEQRES positions whose atoms belong to another residue: (num, SEQRES, atoms).
        let mut differ: Vec<(i64, &str, &str)> = Vec::new();
        for r in 0..n {
            let Some(key) = seq_to_res[c].get(&(r as i64)) else {
                continue;
            };
            let Some((selected, by_name)) = needed.get(key) else {
                continue;
            };
            let Some(res) = by_name.get(selected) else {
                continue;
            };
            if selected != seq[r].0 {
                differ.push((seq[r].1, seq[r].0, selected));
            }
            let (pos, mask) = res.atom37();
            chain.positions[r * 111..(r + 1) * 111].copy_from_slice(&pos);
            chain.masks[r * 37..(r + 1) * 37].copy_from_slice(&mask);
        }
        if chain.modelled_residues() == 0 {
            out.skipped_chains
                .push((auth.to_string(), "no residue with a CA atom".into()));
            continue;
        }
        if let Some(note) = seqres_note(label, seq, &differ, &outside[c]) {
            out.notes.push((auth.to_string(), note));
        }
        out.chains.push(chain);
    }
    out.with_chains()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `chains` chains of one entity of `n` alanines, each with one modelled CA.
    fn shared_entity(n: usize, chains: usize) -> String {
        let mut t = String::from("data_x\nloop_\n_entity_poly_seq.entity_id\n_entity_poly_seq.num\n_entity_poly_seq.mon_id\n");
        for i in 1..=n {
            t.push_str(&format!("1 {i} ALA\n"));
        }
        t.push_str("_chem_comp.id ALA\n_chem_comp.type 'L-peptide linking'\n");
        t.push_str("loop_\n_struct_asym.id\n_struct_asym.entity_id\n");
        let ids: Vec<String> = (0..chains).map(|c| format!("C{c}")).collect();
        for id in &ids {
            t.push_str(&format!("{id} 1\n"));
        }
        t.push_str("loop_\n_atom_site.label_atom_id\n_atom_site.label_comp_id\n_atom_site.label_asym_id\n_atom_site.label_seq_id\n_atom_site.auth_asym_id\n_atom_site.auth_seq_id\n_atom_site.Cartn_x\n_atom_site.Cartn_y\n_atom_site.Cartn_z\n");
        for id in &ids {
            t.push_str(&format!("CA ALA {id} 1 {id} 1 0.0 0.0 0.0\n"));
        }
        t
    }

    #[test]
    fn chains_sharing_a_long_sequence_are_bounded_in_all() {
        let parsed = parse_mmcif(&shared_entity(1000, 3), "x").unwrap();
        assert_eq!(parsed.chains.len(), 3);
        assert_eq!(parsed.chains[0].sequence.len(), 1000);
        let err = parse_mmcif(&shared_entity(MAX_RESIDUES / 10 + 1, 10), "x")
            .err()
            .unwrap();
        assert!(err.contains("too large"), "{err}");
    }
}

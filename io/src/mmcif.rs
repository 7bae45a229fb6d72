//! mmCIF writer.
//!
//! Conventions other categories can rely on: `label_asym_id` = `auth_asym_id` = the
//! chain id; `label_seq_id` = 1-based position of the residue in its chain;
//! `auth_seq_id` = [`Residue::seq_num`]; chains with identical residue sequences share
//! one entity, numbered from 1 in order of first appearance; model number 1.

use crate::cif::CifCategory;
use crate::structure::{Structure, AMINO_ACID_CODES};
use crate::Result;

/// Formats `structure` as an mmCIF data block named `data_name` (characters other than
/// printable ASCII become `_`).
pub fn write_mmcif(structure: &Structure, data_name: &str) -> Result<String> {
    write_mmcif_with(structure, data_name, &[] as &[&str])
}

/// Like [`write_mmcif`], then appends `extra` pre-formatted categories (for example
/// from [`CifCategory::render`]) to the data block.
pub fn write_mmcif_with(
    structure: &Structure,
    data_name: &str,
    extra: &[impl AsRef<str>],
) -> Result<String> {
    structure.validate()?;
    let name: String = data_name
        .chars()
        .map(|c| if c.is_ascii_graphic() { c } else { '_' })
        .collect();
    let name = if name.is_empty() {
        "ferrofold".to_string()
    } else {
        name
    };

    let mut out = format!("data_{name}\n#\n");
    let mut entry = CifCategory::new("_entry", &["id"]);
    entry.push_row([name.as_str()]);
    out.push_str(&entry.render());
    let (entities, chain_entity) = group_entities(structure);
    for category in entity_categories(structure, &entities, &chain_entity) {
        out.push_str(&category.render());
    }
    out.push_str(&atom_site(structure, &chain_entity).render());
    for block in extra {
        let block = block.as_ref();
        out.push_str(block);
        if !block.ends_with('\n') {
            out.push('\n');
        }
    }
    Ok(out)
}

/// Distinct residue-name sequences (entities) and the entity index of every chain.
fn group_entities(structure: &Structure) -> (Vec<Vec<&str>>, Vec<usize>) {
    let mut entities: Vec<Vec<&str>> = Vec::new();
    let chain_entity = structure
        .chains
        .iter()
        .map(|chain| {
            let seq: Vec<&str> = chain.residues.iter().map(|r| r.name.as_str()).collect();
            entities.iter().position(|e| *e == seq).unwrap_or_else(|| {
                entities.push(seq);
                entities.len() - 1
            })
        })
        .collect();
    (entities, chain_entity)
}

/// `_entity`, `_entity_poly`, `_entity_poly_seq` and `_struct_asym`.
fn entity_categories(
    structure: &Structure,
    entities: &[Vec<&str>],
    chain_entity: &[usize],
) -> [CifCategory; 4] {
    let mut entity = CifCategory::new("_entity", &["id", "type"]);
    let mut poly = CifCategory::new(
        "_entity_poly",
        &[
            "entity_id",
            "type",
            "nstd_linkage",
            "nstd_monomer",
            "pdbx_seq_one_letter_code",
            "pdbx_seq_one_letter_code_can",
            "pdbx_strand_id",
        ],
    );
    let mut poly_seq = CifCategory::new(
        "_entity_poly_seq",
        &["entity_id", "num", "mon_id", "hetero"],
    );
    for (index, residues) in entities.iter().enumerate() {
        let id = (index + 1).to_string();
        entity.push_row([id.as_str(), "polymer"]);
        let strands: Vec<&str> = structure
            .chains
            .iter()
            .zip(chain_entity)
            .filter(|(_, &e)| e == index)
            .map(|(c, _)| c.id.as_str())
            .collect();
        let codes: Vec<Option<char>> = residues.iter().map(|r| one_letter(r)).collect();
        let seq: String = residues
            .iter()
            .zip(&codes)
            .map(|(r, c)| c.map_or_else(|| format!("({r})"), String::from))
            .collect();
        let canonical: String = codes.iter().map(|c| c.unwrap_or('X')).collect();
        let nonstandard = if codes.contains(&None) { "yes" } else { "no" };
        poly.push_row([
            id.clone(),
            "polypeptide(L)".into(),
            "no".into(),
            nonstandard.into(),
            seq,
            canonical,
            strands.join(","),
        ]);
        for (num, name) in residues.iter().enumerate() {
            poly_seq.push_row([
                id.clone(),
                (num + 1).to_string(),
                name.to_string(),
                "n".into(),
            ]);
        }
    }
    let mut asym = CifCategory::new("_struct_asym", &["id", "entity_id"]);
    for (chain, e) in structure.chains.iter().zip(chain_entity) {
        asym.push_row([chain.id.clone(), (e + 1).to_string()]);
    }
    [entity, poly, poly_seq, asym]
}

/// The `_atom_site` loop.
fn atom_site(structure: &Structure, chain_entity: &[usize]) -> CifCategory {
    let mut site = CifCategory::new(
        "_atom_site",
        &[
            "group_PDB",
            "id",
            "type_symbol",
            "label_atom_id",
            "label_alt_id",
            "label_comp_id",
            "label_asym_id",
            "label_entity_id",
            "label_seq_id",
            "pdbx_PDB_ins_code",
            "Cartn_x",
            "Cartn_y",
            "Cartn_z",
            "occupancy",
            "B_iso_or_equiv",
            "auth_seq_id",
            "auth_comp_id",
            "auth_asym_id",
            "auth_atom_id",
            "pdbx_PDB_model_num",
        ],
    );
    let mut serial = 0usize;
    for (chain, entity) in structure.chains.iter().zip(chain_entity) {
        let entity = (entity + 1).to_string();
        for (index, residue) in chain.residues.iter().enumerate() {
            let label_seq = (index + 1).to_string();
            for atom in &residue.atoms {
                serial += 1;
                let [x, y, z] = atom.xyz.map(|v| format!("{v:.3}"));
                site.push_row([
                    "ATOM".to_string(),
                    serial.to_string(),
                    atom.element.clone(),
                    atom.name.clone(),
                    ".".into(),
                    residue.name.clone(),
                    chain.id.clone(),
                    entity.clone(),
                    label_seq.clone(),
                    "?".into(),
                    x,
                    y,
                    z,
                    format!("{:.2}", atom.occupancy),
                    format!("{:.2}", atom.b_factor),
                    residue.seq_num.to_string(),
                    residue.name.clone(),
                    chain.id.clone(),
                    atom.name.clone(),
                    "1".into(),
                ]);
            }
        }
    }
    site
}

/// One-letter code of a standard amino acid (`UNK` is `X`).
fn one_letter(residue: &str) -> Option<char> {
    AMINO_ACID_CODES
        .iter()
        .find(|(name, _)| *name == residue)
        .map(|&(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::structure::tests::sample;
    use crate::structure::{Atom, Chain, Residue};

    /// Rows of the `_atom_site` loop, split on whitespace (the sample needs no quotes).
    fn atom_rows(cif: &str) -> (Vec<&str>, Vec<Vec<&str>>) {
        let start = cif.find("_atom_site.").unwrap();
        let body = &cif[start..];
        let items = body
            .lines()
            .take_while(|l| l.starts_with("_atom_site."))
            .map(|l| &l["_atom_site.".len()..])
            .collect::<Vec<_>>();
        let rows = body
            .lines()
            .skip(items.len())
            .take_while(|l| *l != "#")
            .map(|l| l.split_whitespace().collect())
            .collect();
        (items, rows)
    }

    #[test]
    fn writes_header_and_atom_site_loop() {
        let cif = write_mmcif(&sample(), "my modèl").unwrap();
        assert!(
            cif.starts_with("data_my_mod_l\n#\n_entry.id my_mod_l\n#\n"),
            "{cif}"
        );
        let (items, rows) = atom_rows(&cif);
        assert_eq!(items.len(), 20);
        assert_eq!(items[0], "group_PDB");
        assert_eq!(items[10..13], ["Cartn_x", "Cartn_y", "Cartn_z"]);
        assert_eq!(items[19], "pdbx_PDB_model_num");
        assert_eq!(rows.len(), 15);
        assert!(rows.iter().all(|r| r.len() == items.len()));
        assert_eq!(
            rows[0],
            [
                "ATOM", "1", "N", "N", ".", "ALA", "H", "1", "1", "?", "-1.204", "0.654", "0.000",
                "1.00", "85.50", "1", "ALA", "H", "N", "1"
            ]
        );
        // label_seq_id counts residues from 1, auth_seq_id keeps the numbering.
        assert_eq!((rows[14][8], rows[14][15], rows[14][7]), ("1", "10", "2"));
    }

    #[test]
    fn writes_entities_grouping_identical_chains() {
        let mut s = sample();
        let mut copy = s.chains[0].clone();
        copy.id = "B".into();
        s.chains.push(copy);
        s.chains[1].residues[0].name = "MSE".into();
        let cif = write_mmcif(&s, "x").unwrap();
        assert!(cif.contains("loop_\n_entity.id\n_entity.type\n1 polymer\n2 polymer\n#\n"));
        assert!(cif.contains("1 polypeptide(L) no no AS AS H,B\n"), "{cif}");
        assert!(cif.contains("2 polypeptide(L) no yes (MSE) X L\n"), "{cif}");
        assert!(cif.contains("\n1 2 SER n\n2 1 MSE n\n#\n"), "{cif}");
        assert!(
            cif.contains("_struct_asym.entity_id\nH 1\nL 2\nB 1\n#\n"),
            "{cif}"
        );
    }

    #[test]
    fn appends_extra_categories() {
        let mut qa = CifCategory::new("_ma_qa_metric", &["id", "name"]);
        qa.push_row(["1", "pLDDT"]);
        let cif = write_mmcif_with(&sample(), "x", &[qa.render(), "_extra.x 1".into()]).unwrap();
        assert!(
            cif.ends_with("#\n_ma_qa_metric.id   1\n_ma_qa_metric.name pLDDT\n#\n_extra.x 1\n"),
            "{cif}"
        );
    }

    #[test]
    fn round_trips_atoms() {
        let s = sample();
        let cif = write_mmcif(&s, "x").unwrap();
        let (items, rows) = atom_rows(&cif);
        let col = |name: &str| items.iter().position(|i| *i == name).unwrap();
        let mut back = Structure::default();
        for row in rows {
            let chain_id = row[col("auth_asym_id")];
            if back.chains.last().map(|c| c.id.as_str()) != Some(chain_id) {
                back.chains.push(Chain {
                    id: chain_id.into(),
                    residues: vec![],
                });
            }
            let chain = back.chains.last_mut().unwrap();
            let seq_num: i32 = row[col("auth_seq_id")].parse().unwrap();
            if chain.residues.last().map(|r| r.seq_num) != Some(seq_num) {
                chain.residues.push(Residue {
                    name: row[col("auth_comp_id")].into(),
                    seq_num,
                    atoms: vec![],
                });
            }
            let num = |name: &str| row[col(name)].parse::<f32>().unwrap();
            chain.residues.last_mut().unwrap().atoms.push(Atom {
                name: row[col("auth_atom_id")].into(),
                element: row[col("type_symbol")].into(),
                xyz: [num("Cartn_x"), num("Cartn_y"), num("Cartn_z")],
                occupancy: num("occupancy"),
                b_factor: num("B_iso_or_equiv"),
            });
        }
        assert_eq!(back, s);
    }

    #[test]
    fn rejects_invalid_structure() {
        let mut s = sample();
        s.chains[0].residues[0].atoms[0].b_factor = f32::INFINITY;
        assert!(write_mmcif(&s, "x").is_err());
    }
}

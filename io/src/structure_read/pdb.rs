//! PDB format → protein chains: the modelled residues of the first model (module docs above).

use super::{is_known_residue, one_letter_code, ParsedStructure, ProteinChain, ResidueAtoms};

fn col(line: &str, a: usize, b: usize) -> &str {
    let b = b.min(line.len());
    if a >= b {
        return "";
    }
    line.get(a..b).unwrap_or("")
}

fn month(m: &str) -> Option<u32> {
    const M: [&str; 12] = [
        "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
    ];
    M.iter()
        .position(|x| x.eq_ignore_ascii_case(m))
        .map(|i| i as u32 + 1)
}

/// `DD-MMM-YY` → `YYYY-MM-DD` (years 00-49 are 20xx: the PDB began in 1971).
fn pdb_date(s: &str) -> Option<String> {
    let mut it = s.trim().split('-');
    let d: u32 = it.next()?.parse().ok()?;
    let m = month(it.next()?)?;
    let y: u32 = it.next()?.parse().ok()?;
    if !(1..=31).contains(&d) || y > 99 {
        return None;
    }
    let y = if y < 50 { 2000 + y } else { 1900 + y };
    Some(format!("{y:04}-{m:02}-{d:02}"))
}

struct ChainBuild {
    id: String,
    /// (residue number, insertion code, atoms), file order.
    residues: Vec<(String, ResidueAtoms)>,
}

/// The remark on a chain whose modelled residues are not found, in order, in its SEQRES
/// (missing residues alone are no disagreement); `None` when they fit.
fn seqres_note(seqres: &[u8], modelled: &[&(String, ResidueAtoms)]) -> Option<String> {
    let mut at = 0;
    for (resid, r) in modelled {
        let code = one_letter_code(&r.name);
        match seqres[at..].iter().position(|&s| s == code) {
            Some(k) => at += k + 1,
            None => {
                return Some(format!(
                    "SEQRES ({} residues) disagrees with the ATOM records (modelled residue {} \
                     {} is not in it, in order); SEQRES is ignored: the {} modelled residues \
                     are the sequence",
                    seqres.len(),
                    r.name,
                    resid.trim(),
                    modelled.len()
                ))
            }
        }
    }
    None
}

/// Parses a PDB-format file's protein chains (first model). `fallback_id` names the entry when
/// the HEADER has no id code (or the placeholder `0000`).
pub fn parse_pdb(text: &str, fallback_id: &str) -> Result<ParsedStructure, String> {
    let mut id = None;
    let mut header_date = None;
    let mut revdat1 = None;
    let mut chains: Vec<ChainBuild> = Vec::new();
    let mut closed: Vec<String> = Vec::new();
    let mut duplicate: Vec<String> = Vec::new();
    let mut atoms = 0usize;
    // SEQRES one-letter codes per chain id, only to note disagreement with the atoms.
    let mut seqres: Vec<(String, Vec<u8>)> = Vec::new();
    for line in text.lines() {
        let rec = col(line, 0, 6);
        match rec.trim_end() {
            "HEADER" => {
                header_date = pdb_date(col(line, 50, 59));
                let code = col(line, 62, 66).trim();
                // Domain and model files often carry the placeholder `0000`: no id.
                if !code.is_empty() && code != "0000" {
                    id = Some(code.to_ascii_lowercase());
                }
            }
            "REVDAT" if col(line, 7, 10).trim() == "1" && revdat1.is_none() => {
                revdat1 = pdb_date(col(line, 13, 22));
            }
            "SEQRES" => {
                let chain_id = col(line, 11, 12).trim().to_string();
                let names = col(line, 19, 80).split_whitespace().map(one_letter_code);
                match seqres.iter_mut().find(|(c, _)| *c == chain_id) {
                    Some((_, s)) => s.extend(names),
                    None => seqres.push((chain_id, names.collect())),
                }
            }
            "ENDMDL" => break, // first model only
            "ATOM" | "HETATM" => {
                atoms += 1;
                if line.len() < 54 {
                    return Err(format!(
                        "{} record of {} characters, too short for coordinates (truncated \
                         file?)",
                        rec.trim_end(),
                        line.len()
                    ));
                }
                let resname = col(line, 17, 20).trim();
                if resname == "HOH" || resname == "WAT" || !is_known_residue(resname) {
                    continue;
                }
                let chain_id = col(line, 21, 22).trim().to_string();
                let resid = col(line, 22, 27).to_string();
                let name = col(line, 12, 16).trim();
                let parse = |a, b, what| {
                    col(line, a, b)
                        .trim()
                        .parse::<f64>()
                        .ok()
                        .filter(|x| x.is_finite())
                        .ok_or_else(|| {
                            format!("bad {what} `{}` in `{}`", col(line, a, b), line.trim_end())
                        })
                };
                let pos = [
                    parse(30, 38, "x")? as f32,
                    parse(38, 46, "y")? as f32,
                    parse(46, 54, "z")? as f32,
                ];
                let occ = parse(54, 60, "occupancy").unwrap_or(1.0);
                // A chain id that comes back after another chain began is a duplicate chain.
                let start_new = chains.last().is_none_or(|c| c.id != chain_id);
                if start_new {
                    if let Some(prev) = chains.last() {
                        closed.push(prev.id.clone());
                    }
                    // Both blocks of a repeated id are dropped below (which block is the
                    // chain is ambiguous); other chains are unaffected.
                    if closed.contains(&chain_id) && !duplicate.contains(&chain_id) {
                        duplicate.push(chain_id.clone());
                    }
                    chains.push(ChainBuild {
                        id: chain_id.clone(),
                        residues: Vec::new(),
                    });
                }
                let chain = chains.last_mut().expect("pushed above");
                let same = chain
                    .residues
                    .last()
                    .is_some_and(|(r, a)| *r == resid && a.name == resname);
                if !same {
                    chain.residues.push((
                        resid,
                        ResidueAtoms {
                            name: resname.to_string(),
                            atoms: Vec::new(),
                        },
                    ));
                }
                let res = &mut chain.residues.last_mut().expect("pushed above").1;
                res.add(name, pos, occ);
            }
            _ => {}
        }
    }
    if atoms == 0 {
        return Err("no ATOM/HETATM records: not a PDB coordinate file".into());
    }
    let mut out = ParsedStructure {
        id: id.unwrap_or_else(|| fallback_id.to_string()),
        release_date: revdat1.or(header_date),
        ..Default::default()
    };
    let mut seen: Vec<String> = Vec::new();
    for c in chains {
        let label = if c.id.is_empty() { "_" } else { &c.id };
        if duplicate.contains(&c.id) {
            if !seen.contains(&c.id) {
                out.skipped_chains.push((
                    label.to_string(),
                    "duplicate chain id (the chain id occurs in separate blocks)".into(),
                ));
                seen.push(c.id.clone());
            }
            continue;
        }
        // Residues with a CA atom (a point mutation, two names at one position, gives two
        // residues here: rare, and PDB files carry no SEQRES mapping to decide).
        let modelled: Vec<&(String, ResidueAtoms)> = c
            .residues
            .iter()
            .filter(|(_, r)| r.atoms.iter().any(|a| a.0 == "CA"))
            .collect();
        if modelled.is_empty() {
            out.skipped_chains
                .push((label.to_string(), "no amino acid with a CA atom".into()));
            continue;
        }
        if let Some((_, sr)) = seqres.iter().find(|(id, _)| *id == c.id) {
            if let Some(note) = seqres_note(sr, &modelled) {
                out.notes.push((label.to_string(), note));
            }
        }
        let residues: Vec<&ResidueAtoms> = modelled.iter().map(|(_, r)| r).collect();
        let mut chain = ProteinChain {
            chain_id: c.id.clone(),
            sequence: residues
                .iter()
                .map(|r| one_letter_code(&r.name) as char)
                .collect(),
            residue_names: residues.iter().map(|r| r.name.clone()).collect(),
            positions: Vec::with_capacity(residues.len() * 111),
            masks: Vec::with_capacity(residues.len() * 37),
        };
        for r in residues {
            let (p, m) = r.atom37();
            chain.positions.extend_from_slice(&p);
            chain.masks.extend_from_slice(&m);
        }
        out.chains.push(chain);
    }
    out.with_chains()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn atom(serial: usize, name: &str, res: &str, chain: &str, num: i32, x: f32) -> String {
        format!(
            "ATOM  {serial:>5} {name:<4} {res:>3} {chain}{num:>4}    {x:>8.3}{:>8.3}{:>8.3}  1.00 20.00           C",
            1.0, 2.0
        )
    }

    #[test]
    fn reads_chains_dates_and_mse() {
        let mut lines = vec![
            "HEADER    TEST                                    15-JUL-99   1XYZ              "
                .to_string(),
            "REVDAT   1   03-AUG-99 1XYZ    0".to_string(),
        ];
        for (i, n) in ["N", "CA", "C", "O", "CB"].iter().enumerate() {
            lines.push(atom(i + 1, n, "ALA", "A", 1, i as f32));
        }
        lines.push(
            "HETATM    6  CA  MSE A   2       5.000   1.000   2.000  1.00 20.00           C".into(),
        );
        lines.push(
            "HETATM    7 SE   MSE A   2       6.000   1.000   2.000  1.00 20.00          SE".into(),
        );
        lines.push(
            "HETATM    8  O   HOH A 101       6.000   1.000   2.000  1.00 20.00           O".into(),
        );
        let s = parse_pdb(&lines.join("\n"), "x").unwrap();
        assert_eq!(s.id, "1xyz");
        assert_eq!(s.release_date.as_deref(), Some("1999-08-03"));
        assert_eq!(s.chains.len(), 1);
        assert_eq!(s.chains[0].sequence, "AM");
        assert_eq!(s.chains[0].masks[37 + 18], 1.0); // SE → SD
        assert_eq!(s.chains[0].positions[(37 + 18) * 3], 6.0);
    }

    #[test]
    fn placeholder_id_code_falls_back_to_the_file_name() {
        let lines = [
            "HEADER    DOMAIN                                  15-JUL-99   0000              "
                .to_string(),
            atom(1, "CA", "ALA", "A", 1, 0.0),
        ];
        assert_eq!(
            parse_pdb(&lines.join("\n"), "d1abca_").unwrap().id,
            "d1abca_"
        );
    }

    #[test]
    fn duplicate_chain_ids_are_skipped() {
        let lines = [
            atom(1, "CA", "ALA", "A", 1, 0.0),
            atom(2, "CA", "GLY", "B", 1, 0.0),
            atom(3, "CA", "ALA", "A", 5, 0.0),
        ];
        let s = parse_pdb(&lines.join("\n"), "x").unwrap();
        assert_eq!(s.chains.len(), 1);
        assert_eq!(s.chains[0].chain_id, "B");
        assert_eq!(s.skipped_chains[0].0, "A");
        assert!(parse_pdb("HEADER only\n", "x").is_err());
        assert!(parse_pdb("ATOM      1  CA  ALA A   1      1.0", "x").is_err());
    }
}

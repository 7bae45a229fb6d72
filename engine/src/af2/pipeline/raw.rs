//! AF2's own raw features (`features.pkl`, written by its data pipeline: the query, the
//! MSA as HHblits ids with its deletion matrix, template hits) turned into this pipeline's
//! inputs, so that they go through the same sampling as a FASTA + A3M run.

use super::alphabet::HHBLITS_TO_AF;
use crate::af2::config::MAX_TEMPLATES;
use crate::af2::features::TemplateFeatures;
use crate::af2::templates::pseudo_beta;
use ferrofold_io::a3m::{check_size, row_bytes, A3m, A3mRecord};
use ferrofold_io::pickle_arrays::NpValue;
use ferrofold_kernels::Tensor;
use std::collections::BTreeMap;

/// HHblits ids 0..=21 as letters (`residue_constants.HHBLITS_AA_TO_ID` inverted).
const HHBLITS_LETTERS: &[u8; 22] = b"ACDEFGHIKLMNPQRSTVWYX-";

/// What raw features hold, in the form the pipeline takes.
pub struct RawInputs {
    pub query: String,
    pub msa: A3m,
    /// At most four templates, in AF order, as the model reads them.
    pub templates: Option<TemplateFeatures>,
}

/// Reads the query, MSA and templates out of a `features.pkl` dictionary; `origin` names
/// the file in errors.
pub fn from_raw_features(
    raw: &BTreeMap<String, NpValue>,
    origin: &str,
) -> Result<RawInputs, String> {
    let err = |m: String| format!("{origin}: {m}");
    let get = |k: &str| raw.get(k).ok_or_else(|| err(format!("`{k}` is missing")));
    let array = |k: &str| -> Result<(&[usize], &[f32]), String> {
        let v = get(k)?;
        Ok((
            v.shape(),
            v.as_f32()
                .ok_or_else(|| err(format!("`{k}` is not numeric")))?,
        ))
    };
    let query = match get("sequence")?.as_bytes() {
        Some([seq, ..]) => {
            String::from_utf8(seq.clone()).map_err(|_| err("`sequence` is not text".into()))?
        }
        _ => return Err(err("`sequence` holds no sequence".into())),
    };
    let l = query.len();
    if l == 0 {
        return Err(err("`sequence` is empty".into()));
    }
    let (msa_shape, msa) = array("msa")?;
    let (del_shape, deletions) = array("deletion_matrix_int")?;
    if msa_shape.len() != 2 || msa_shape[1] != l || del_shape != msa_shape {
        return Err(err(format!(
            "`msa` {msa_shape:?} and `deletion_matrix_int` {del_shape:?} must both be [N, {l}]"
        )));
    }
    // The rows as A3M records take more than the arrays: bounded as a parsed A3M file is.
    let rows = msa_shape[0];
    check_size(
        rows,
        rows.saturating_mul(row_bytes(l, "msa row 0000000".len())),
    )
    .map_err(|m| err(format!("`msa`: {m}")))?;
    let letter = |id: f32| -> Result<char, String> {
        HHBLITS_LETTERS
            .get(id as usize)
            .filter(|_| id >= 0.0 && id.fract() == 0.0)
            .map(|&c| c as char)
            .ok_or_else(|| err(format!("`msa` holds {id}, not an HHblits id 0..=21")))
    };
    let records = msa
        .chunks(l)
        .zip(deletions.chunks(l))
        .enumerate()
        .map(|(row, (ids, del))| {
            Ok(A3mRecord {
                description: format!("msa row {row}"),
                line: row + 1,
                sequence: ids.iter().map(|&id| letter(id)).collect::<Result<_, _>>()?,
                deletions: del.iter().map(|&d| d.max(0.0) as u32).collect(),
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok(RawInputs {
        query,
        msa: A3m {
            origin: origin.to_string(),
            records,
        },
        templates: templates(raw, l, origin)?,
    })
}

/// The first [`MAX_TEMPLATES`] template hits (AF2's evaluation takes them in order):
/// one-hot HHblits aatype → AF order, positions and masks as given, pseudo-beta derived.
fn templates(
    raw: &BTreeMap<String, NpValue>,
    l: usize,
    origin: &str,
) -> Result<Option<TemplateFeatures>, String> {
    let Some(aatype) = raw.get("template_aatype") else {
        return Ok(None);
    };
    let shape = aatype.shape();
    let onehot = aatype
        .as_f32()
        .ok_or_else(|| format!("{origin}: `template_aatype` is not numeric"))?;
    if shape.len() != 3 || shape[1] != l || shape[2] != 22 {
        return Err(format!(
            "{origin}: `template_aatype` is {shape:?}, expected [T, {l}, 22]"
        ));
    }
    let t = shape[0].min(MAX_TEMPLATES);
    if t == 0 {
        return Ok(None);
    }
    let field = |k: &str, per: usize| -> Result<Vec<f32>, String> {
        let v = raw
            .get(k)
            .ok_or_else(|| format!("{origin}: `{k}` is missing"))?;
        let d = v
            .as_f32()
            .ok_or_else(|| format!("{origin}: `{k}` is not numeric"))?;
        if v.shape().first() != Some(&shape[0]) || d.len() != shape[0] * l * per {
            return Err(format!(
                "{origin}: `{k}` is {:?}, expected [{}, {l}, ..]",
                v.shape(),
                shape[0]
            ));
        }
        Ok(d[..t * l * per].to_vec())
    };
    let positions = field("template_all_atom_positions", 37 * 3)?;
    let masks = field("template_all_atom_masks", 37)?;
    let aatype: Vec<usize> = onehot[..t * l * 22]
        .chunks(22)
        .map(|row| {
            let hh = row
                .iter()
                .enumerate()
                .fold(0, |best, (i, v)| if *v > row[best] { i } else { best });
            HHBLITS_TO_AF[hh] as usize
        })
        .collect();
    let (pb, pb_mask) = pseudo_beta(&aatype, &positions, &masks);
    let tensor = |shape: &[usize], data: Vec<f32>| Tensor::new(shape, data).expect("checked sizes");
    Ok(Some(TemplateFeatures {
        aatype: tensor(&[t, l], aatype.iter().map(|&a| a as f32).collect()),
        all_atom_positions: tensor(&[t, l, 37, 3], positions),
        all_atom_masks: tensor(&[t, l, 37], masks),
        mask: tensor(&[t], vec![1.0; t]),
        pseudo_beta: tensor(&[t, l, 3], pb),
        pseudo_beta_mask: tensor(&[t, l], pb_mask),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrofold_io::pickle_arrays::load_numpy_pickle;
    use ferrofold_io::weights::load_npz;

    fn data(rel: &str) -> String {
        format!("{}/../tests/data/af2/{rel}", env!("CARGO_MANIFEST_DIR"))
    }

    /// features_raw.pkl holds the same protein, MSA and template as the processed golden
    /// features (tools/reference/af2/make_raw_features.py): the conversion must recover them.
    #[test]
    fn raw_features_match_the_processed_golden() {
        let raw = load_numpy_pickle(data("features_raw.pkl")).unwrap();
        let inputs = from_raw_features(&raw, "features_raw.pkl").unwrap();
        let golden = load_npz(data("model_features.npz")).unwrap();
        let g = |k: &str| golden.root().get_any(k).unwrap().clone();
        let aatype = g("aatype");
        let l = aatype.dim(1);
        let af = b"ARNDCQEGHILKMFPSTWYVX";
        let query: String = aatype.data()[..l]
            .iter()
            .map(|&a| af[a as usize] as char)
            .collect();
        assert_eq!(inputs.query, query);
        assert_eq!(inputs.msa.records.len(), 14);
        assert_eq!(inputs.msa.records[0].sequence, query);
        let t = inputs.templates.expect("one template");
        let first = |k: &str| {
            let x = g(k);
            let n = x.len() / x.dim(0);
            x.data()[..n].to_vec()
        };
        assert_eq!(t.aatype.data(), first("template_aatype"));
        assert_eq!(
            t.pseudo_beta_mask.data(),
            first("template_pseudo_beta_mask")
        );
        let pb = first("template_pseudo_beta");
        let dev = t
            .pseudo_beta
            .data()
            .iter()
            .zip(&pb)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(dev < 1e-5, "pseudo-beta off by {dev}");
    }

    #[test]
    fn missing_arrays_are_named() {
        let mut raw = load_numpy_pickle(data("features_raw.pkl")).unwrap();
        raw.remove("deletion_matrix_int");
        let err = from_raw_features(&raw, "f.pkl").err().unwrap();
        assert!(
            err.contains("f.pkl") && err.contains("deletion_matrix_int"),
            "{err}"
        );
    }

    #[test]
    fn an_empty_query_or_text_templates_are_refused() {
        let raw = load_numpy_pickle(data("features_raw.pkl")).unwrap();
        let mut empty = raw.clone();
        empty.insert(
            "sequence".into(),
            NpValue::Bytes {
                shape: vec![1],
                items: vec![Vec::new()],
            },
        );
        let err = from_raw_features(&empty, "f.pkl").err().unwrap();
        assert!(err.contains("`sequence` is empty"), "{err}");
        let l = from_raw_features(&raw, "f.pkl").unwrap().query.len();
        let mut text = raw;
        text.insert(
            "template_aatype".into(),
            NpValue::Bytes {
                shape: vec![1, l, 22],
                items: vec![b"A".to_vec(); l * 22],
            },
        );
        let err = from_raw_features(&text, "f.pkl").err().unwrap();
        assert!(err.contains("`template_aatype` is not numeric"), "{err}");
    }
}

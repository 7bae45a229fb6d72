//! Processed features as AlphaFold2's model consumes them (the contract in
//! af2-features.md): every array has a leading ensemble/recycle axis `E`, and recycling
//! iteration `r` reads slice `r`. Loaded from an `.npz` written by AF2's pipeline (or ours).

use ferrofold_io::weights::{load_npz, TensorStore};
use ferrofold_kernels::Tensor;
use std::path::Path;

/// Template inputs of one recycling iteration.
#[derive(Clone, Debug, PartialEq)]
pub struct TemplateFeatures {
    pub aatype: Tensor,             // [T, L] AF order, 21 = gap
    pub all_atom_positions: Tensor, // [T, L, 37, 3]
    pub all_atom_masks: Tensor,     // [T, L, 37]
    pub mask: Tensor,               // [T]
    pub pseudo_beta: Tensor,        // [T, L, 3]
    pub pseudo_beta_mask: Tensor,   // [T, L]
}

/// The features of one recycling iteration.
#[derive(Clone, Debug)]
pub struct Features {
    /// Residue types, AF order `ARNDCQEGHILKMFPSTWYV`, 20 = X.
    pub aatype: Vec<usize>,
    pub residue_index: Vec<i64>,
    pub seq_mask: Tensor,             // [L]
    pub target_feat: Tensor,          // [L, 22]
    pub msa_feat: Tensor,             // [S, L, 49]
    pub msa_mask: Tensor,             // [S, L]
    pub extra_msa: Tensor,            // [X, L] class ids 0..22
    pub extra_has_deletion: Tensor,   // [X, L]
    pub extra_deletion_value: Tensor, // [X, L]
    pub extra_msa_mask: Tensor,       // [X, L]
    pub templates: Option<TemplateFeatures>,
}

impl Features {
    pub fn len(&self) -> usize {
        self.aatype.len()
    }

    pub fn is_empty(&self) -> bool {
        self.aatype.is_empty()
    }
}

/// A feature file that does not meet the contract, with the array and the problem.
#[derive(Debug, thiserror::Error)]
pub enum FeatureError {
    #[error(transparent)]
    Io(#[from] ferrofold_io::IoError),
    #[error("{origin}: `{name}` is missing")]
    Missing { origin: String, name: String },
    #[error("{origin}: `{name}` has shape {found:?}, expected {expected}")]
    Shape {
        origin: String,
        name: String,
        found: Vec<usize>,
        expected: String,
    },
    #[error("{origin}: `{name}` holds {value}, outside {range}")]
    Value {
        origin: String,
        name: String,
        value: f32,
        range: String,
    },
}

/// Reads an `.npz` of processed features into one [`Features`] per recycling iteration.
pub fn load_processed_features(path: &Path) -> Result<Vec<Features>, FeatureError> {
    let store = load_npz(path)?;
    let origin = path.display().to_string();
    Reader {
        store: &store,
        origin,
    }
    .read()
}

struct Reader<'a> {
    store: &'a TensorStore,
    origin: String,
}

impl Reader<'_> {
    fn tensor(&self, name: &str) -> Result<&Tensor, FeatureError> {
        self.store
            .root()
            .get_any(name)
            .map_err(|_| FeatureError::Missing {
                origin: self.origin.clone(),
                name: name.into(),
            })
    }

    /// `name` with `rank` axes where the given ones are fixed (`None` = free).
    fn shaped(&self, name: &str, dims: &[Option<usize>]) -> Result<&Tensor, FeatureError> {
        let t = self.tensor(name)?;
        let ok = t.shape().len() == dims.len()
            && t.shape()
                .iter()
                .zip(dims)
                .all(|(s, d)| d.is_none_or(|d| d == *s));
        if !ok {
            let expected = dims
                .iter()
                .map(|d| d.map_or("_".to_string(), |d| d.to_string()))
                .collect::<Vec<_>>()
                .join(", ");
            return Err(FeatureError::Shape {
                origin: self.origin.clone(),
                name: name.into(),
                found: t.shape().to_vec(),
                expected: format!("[{expected}]"),
            });
        }
        Ok(t)
    }

    /// Integer class ids stored as numbers, checked to lie in `0..=max`.
    fn classes(&self, name: &str, t: &[f32], max: usize) -> Result<(), FeatureError> {
        match t
            .iter()
            .find(|v| !(v.fract() == 0.0 && **v >= 0.0 && **v <= max as f32))
        {
            Some(&value) => Err(FeatureError::Value {
                origin: self.origin.clone(),
                name: name.into(),
                value,
                range: format!("0..={max}"),
            }),
            None => Ok(()),
        }
    }

    fn read(&self) -> Result<Vec<Features>, FeatureError> {
        let aatype = self.shaped("aatype", &[None, None])?;
        let (e, l) = (aatype.dim(0), aatype.dim(1));
        self.classes("aatype", aatype.data(), 20)?;
        let (s, x) = (
            self.tensor("msa_feat")?
                .shape()
                .get(1)
                .copied()
                .unwrap_or(0),
            self.tensor("extra_msa")?
                .shape()
                .get(1)
                .copied()
                .unwrap_or(0),
        );
        let (e_, l_, s_, x_) = (Some(e), Some(l), Some(s), Some(x));
        let residue_index = self.shaped("residue_index", &[e_, l_])?;
        let seq_mask = self.shaped("seq_mask", &[e_, l_])?;
        let target_feat = self.shaped("target_feat", &[e_, l_, Some(22)])?;
        let msa_feat = self.shaped("msa_feat", &[e_, s_, l_, Some(49)])?;
        let msa_mask = self.shaped("msa_mask", &[e_, s_, l_])?;
        let extra_msa = self.shaped("extra_msa", &[e_, x_, l_])?;
        self.classes("extra_msa", extra_msa.data(), 22)?;
        let extra_has_deletion = self.shaped("extra_has_deletion", &[e_, x_, l_])?;
        let extra_deletion_value = self.shaped("extra_deletion_value", &[e_, x_, l_])?;
        let extra_msa_mask = self.shaped("extra_msa_mask", &[e_, x_, l_])?;
        let templates = match self.tensor("template_aatype") {
            Err(_) => None,
            Ok(t) => {
                let t_ = t.shape().get(1).copied();
                let aatype = self.shaped("template_aatype", &[e_, t_, l_])?;
                self.classes("template_aatype", aatype.data(), 21)?;
                Some([
                    aatype,
                    self.shaped(
                        "template_all_atom_positions",
                        &[e_, t_, l_, Some(37), Some(3)],
                    )?,
                    self.shaped("template_all_atom_masks", &[e_, t_, l_, Some(37)])?,
                    self.shaped("template_mask", &[e_, t_])?,
                    self.shaped("template_pseudo_beta", &[e_, t_, l_, Some(3)])?,
                    self.shaped("template_pseudo_beta_mask", &[e_, t_, l_])?,
                ])
            }
        };
        Ok((0..e)
            .map(|r| Features {
                aatype: slice(aatype, r)
                    .data()
                    .iter()
                    .map(|&v| v as usize)
                    .collect(),
                residue_index: slice(residue_index, r)
                    .data()
                    .iter()
                    .map(|&v| v as i64)
                    .collect(),
                seq_mask: slice(seq_mask, r),
                target_feat: slice(target_feat, r),
                msa_feat: slice(msa_feat, r),
                msa_mask: slice(msa_mask, r),
                extra_msa: slice(extra_msa, r),
                extra_has_deletion: slice(extra_has_deletion, r),
                extra_deletion_value: slice(extra_deletion_value, r),
                extra_msa_mask: slice(extra_msa_mask, r),
                templates: templates.as_ref().map(|t| TemplateFeatures {
                    aatype: slice(t[0], r),
                    all_atom_positions: slice(t[1], r),
                    all_atom_masks: slice(t[2], r),
                    mask: slice(t[3], r),
                    pseudo_beta: slice(t[4], r),
                    pseudo_beta_mask: slice(t[5], r),
                }),
            })
            .collect())
    }
}

/// Slice `r` of the leading axis.
fn slice(t: &Tensor, r: usize) -> Tensor {
    let shape = &t.shape()[1..];
    let n: usize = shape.iter().product();
    Tensor::new(shape, t.data()[r * n..(r + 1) * n].to_vec()).expect("slice of a checked shape")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_feature_files_name_the_array() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.npz");
        std::fs::write(&path, b"not a zip").unwrap();
        let err = load_processed_features(&path).unwrap_err().to_string();
        assert!(err.contains("f.npz"), "{err}");
    }
}

//! The five AlphaFold2 monomer models (`model_1` … `model_5`, each with or without `_ptm`)
//! as AF2 v2.3's config.py defines them.

/// What differs between the released monomer models.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelConfig {
    pub name: String,
    /// Template stack and template torsion rows (models 1 and 2).
    pub templates: bool,
    /// Extra-MSA rows the feature pipeline keeps.
    pub max_extra_msa: usize,
    /// MSA cluster rows: 512, less the 4 template rows where templates are used.
    pub max_msa_clusters: usize,
    /// Predicted aligned error head and pTM (`_ptm` models).
    pub ptm: bool,
    pub num_recycle: usize,
    pub evoformer_blocks: usize,
    pub extra_msa_blocks: usize,
    pub template_blocks: usize,
}

/// Templates at most, as the official pipeline pads them.
pub const MAX_TEMPLATES: usize = 4;

impl ModelConfig {
    pub fn by_name(name: &str) -> Result<Self, String> {
        let (base, ptm) = match name.strip_suffix("_ptm") {
            Some(b) => (b, true),
            None => (name, false),
        };
        let (templates, max_extra_msa) = match base {
            "model_1" => (true, 5120),
            "model_2" => (true, 1024),
            "model_3" | "model_4" => (false, 5120),
            "model_5" => (false, 1024),
            _ => {
                return Err(format!(
                    "unknown model `{name}`: expected model_1 … model_5, optionally with _ptm"
                ))
            }
        };
        Ok(Self {
            name: name.to_string(),
            templates,
            max_extra_msa,
            max_msa_clusters: 512 - if templates { MAX_TEMPLATES } else { 0 },
            ptm,
            num_recycle: 3,
            evoformer_blocks: 48,
            extra_msa_blocks: 4,
            template_blocks: 2,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn released_models() {
        let m1 = ModelConfig::by_name("model_1").unwrap();
        assert!(m1.templates && !m1.ptm);
        assert_eq!((m1.max_msa_clusters, m1.max_extra_msa), (508, 5120));
        let m5 = ModelConfig::by_name("model_5_ptm").unwrap();
        assert!(!m5.templates && m5.ptm);
        assert_eq!((m5.max_msa_clusters, m5.max_extra_msa), (512, 1024));
        assert!(ModelConfig::by_name("model_6")
            .unwrap_err()
            .contains("model_6"));
    }
}

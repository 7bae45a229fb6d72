//! The template pair embedding: per template the pair features, `embedding2d`, the template
//! pair stack and `output_layer_norm` (modules.py `SingleTemplateEmbedding`), then attention
//! from the query pair representation to the templates (`TemplateEmbedding`).

use super::features::{pair_feature_channels, template_pair_features};
use super::{SingleTemplate, TemplateBatch, TemplateConfig};
use crate::af2::attention::{Attention, AttentionDims};
use crate::af2::pair_stack::{PairOrder, PairStack, PairStackDims};
use crate::chunk::for_row_chunks;
use crate::nn::{LayerNorm, Linear, LoadResult};
use ferrofold_io::weights::Scope;
use ferrofold_kernels::{Backend, Tensor};

/// Largest feature block (elements) built at once before `embedding2d`: 2^20 floats, 4 MiB.
const FEATURE_CHUNK: usize = 1 << 20;

/// Fewest query pair positions per pointwise-attention pass, and the CPU's pass (each pass's
/// queries, gates and outputs are `[rows, c_z]`: 2 MiB apiece). A device backend's larger
/// chunk budget takes larger passes: an eighth of it for a pass's query and template rows.
const ATTENTION_ROWS_PER_CHUNK: usize = 1 << 12;

/// Algorithm 16 lines 2-6: one template pair stack block (triangle attention around the
/// starting and the ending node, triangle multiplication outgoing and incoming, pair
/// transition, each a residual add; no dropout at inference).
#[derive(Debug)]
pub struct TemplatePairBlock(PairStack);

impl TemplatePairBlock {
    /// Loads one block; with the official parameters `p` is
    /// `template_pair_stack/__layer_stack_no_state` read with `.layer(i)`.
    pub fn load(p: &Scope<'_>, cfg: &TemplateConfig) -> LoadResult<Self> {
        let dims = PairStackDims {
            channels: cfg.c_t,
            tri_mul_hidden: cfg.triangle_mult_hidden,
            attention_heads: cfg.triangle_heads,
            transition_factor: cfg.transition_factor,
        };
        Ok(Self(PairStack::load(p, dims, PairOrder::AttentionsFirst)?))
    }

    /// act `[L, L, c_t]`, pair_mask `[L, L]` → the updated act (residual adds included).
    pub fn forward(&self, be: &dyn Backend, act: Tensor, pair_mask: &Tensor) -> Tensor {
        self.0.forward(be, act, pair_mask)
    }
}

/// Algorithm 16 "TemplatePairStack": the template pair blocks in order.
#[derive(Debug)]
pub struct TemplatePairStack {
    blocks: Vec<TemplatePairBlock>,
}

impl TemplatePairStack {
    /// `p`: `.../single_template_embedding/template_pair_stack`; block `i` is read from
    /// `__layer_stack_no_state` at layer `i`.
    pub fn load(p: &Scope<'_>, cfg: &TemplateConfig) -> LoadResult<Self> {
        let stacked = p.sub("__layer_stack_no_state");
        let blocks = (0..cfg.pair_stack_blocks)
            .map(|i| TemplatePairBlock::load(&stacked.layer(i), cfg))
            .collect::<LoadResult<_>>()?;
        Ok(Self { blocks })
    }

    /// act `[L, L, c_t]`, pair_mask `[L, L]` (the query's padding mask) → `[L, L, c_t]`.
    pub fn forward(&self, be: &dyn Backend, act: Tensor, pair_mask: &Tensor) -> Tensor {
        self.blocks
            .iter()
            .fold(act, |act, block| block.forward(be, act, pair_mask))
    }
}

/// Algorithm 2 lines 9 + 11 (modules.py `SingleTemplateEmbedding`): one template's pair
/// features, `embedding2d`, the template pair stack, `output_layer_norm`.
#[derive(Debug)]
pub struct SingleTemplateEmbedding {
    embedding2d: Linear,
    pair_stack: TemplatePairStack,
    output_norm: LayerNorm,
    cfg: TemplateConfig,
}

impl SingleTemplateEmbedding {
    /// `p`: `.../template_embedding/single_template_embedding`.
    pub fn load(p: &Scope<'_>, cfg: &TemplateConfig) -> LoadResult<Self> {
        Ok(Self {
            embedding2d: Linear::load_haiku(
                &p.sub("embedding2d"),
                pair_feature_channels(cfg.dgram_bins),
                cfg.c_t,
                true,
            )?,
            pair_stack: TemplatePairStack::load(&p.sub("template_pair_stack"), cfg)?,
            output_norm: LayerNorm::load_haiku(&p.sub("output_layer_norm"), cfg.c_t)?,
            cfg: *cfg,
        })
    }

    /// One template, pair_mask `[L, L]` (the query's padding mask, not the template's) →
    /// the template's pair embedding `[L, L, c_t]`.
    pub fn forward(
        &self,
        be: &dyn Backend,
        template: &SingleTemplate<'_>,
        pair_mask: &Tensor,
    ) -> Tensor {
        let l = template.num_res();
        assert_eq!(
            pair_mask.shape(),
            [l, l],
            "template: pair_mask must be [L, L]"
        );
        let per_row = l * pair_feature_channels(self.cfg.dgram_bins);
        let act = self.embed_features(be, template, (FEATURE_CHUNK / per_row.max(1)).max(1));
        let act = self.pair_stack.forward(be, act, pair_mask); // [L, L, c_t]
        self.output_norm.forward(be, &act)
    }

    /// The pair features through `embedding2d`, `rows` query rows at a time → `[L, L, c_t]`.
    fn embed_features(
        &self,
        be: &dyn Backend,
        template: &SingleTemplate<'_>,
        rows: usize,
    ) -> Tensor {
        for_row_chunks(be, template.num_res(), rows, |r| {
            let features = template_pair_features(template, &self.cfg, r); // [rows, L, 88]
            self.embedding2d.forward(be, &features) // [rows, L, c_t]
        })
    }
}

/// Algorithm 17 "TemplatePointwiseAttention": every query pair position attends over the
/// templates' embeddings at that position (modules.py `Attention`, no gating), keys masked
/// by the additive bias `1e9 (template_mask - 1)`.
#[derive(Debug)]
pub struct TemplatePointwiseAttention {
    attention: Attention,
}

impl TemplatePointwiseAttention {
    /// `p`: `.../template_embedding/attention`.
    pub fn load(p: &Scope<'_>, cfg: &TemplateConfig) -> LoadResult<Self> {
        let heads = cfg.attention_heads;
        let dims = AttentionDims {
            q_in: cfg.c_z,
            m_in: cfg.c_t,
            heads,
            key_dim: cfg.attention_key_dim / heads,
            value_dim: cfg.attention_value_dim / heads,
            out: cfg.c_z,
            gating: false,
        };
        Ok(Self {
            attention: Attention::load(p, dims)?,
        })
    }

    /// query `[L, L, c_z]`, one embedding `[L, L, c_t]` per template and its template_mask
    /// → `[L, L, c_z]`.
    pub fn forward(
        &self,
        be: &dyn Backend,
        query: &Tensor,
        templates: &[Tensor],
        template_mask: &[f32],
    ) -> Tensor {
        let per_row = templates.len() * self.attention.dims().m_in + query.dim(-1);
        let rows = ATTENTION_ROWS_PER_CHUNK.max(be.chunk_elements() / 8 / per_row.max(1));
        self.forward_chunked(be, query, templates, template_mask, rows)
    }

    /// [`Self::forward`], `chunk` query pair positions at a time.
    fn forward_chunked(
        &self,
        be: &dyn Backend,
        query: &Tensor,
        templates: &[Tensor],
        template_mask: &[f32],
        chunk: usize,
    ) -> Tensor {
        let d = self.attention.dims();
        let (l, cz, ct, nt) = (query.dim(0), d.q_in, d.m_in, templates.len());
        assert_eq!(
            query.shape(),
            [l, l, cz],
            "pointwise attention: query [L, L, c_z]"
        );
        assert!(nt > 0, "pointwise attention needs a template");
        assert_eq!(
            template_mask.len(),
            nt,
            "pointwise attention: one mask per template"
        );
        for t in templates {
            assert_eq!(
                t.shape(),
                [l, l, ct],
                "pointwise attention: template [L, L, c_t]"
            );
        }
        // Pair positions as rows, on the backend: the query [L*L, 1, c_z] and each template
        // [L*L, c_t]; a chunk's templates are stacked [T, n, c_t] and swapped to [n, T, c_t].
        let query = query.clone().reshape(&[l * l, 1, cz]).expect("same size");
        let templates: Vec<Tensor> = templates
            .iter()
            .map(|t| t.clone().reshape(&[l * l, ct]).expect("same size"))
            .collect();
        let out = for_row_chunks(be, l * l, chunk, |rows| {
            let n = rows.len();
            let q = be.slice_rows(&query, rows.clone()); // [n, 1, c_z]
            let mut stacked = be.zeros(&[nt, n, ct]);
            for (k, t) in templates.iter().enumerate() {
                let part = be.slice_rows(t, rows.clone()); // [n, c_t]
                be.write_rows(
                    &mut stacked,
                    k,
                    &part.reshape(&[1, n, ct]).expect("one row"),
                );
            }
            let m = be.swap_leading_axes(&stacked); // [n, T, c_t]
            let mask = Tensor::from_fn(&[n, nt], |i| template_mask[i % nt]); // [n, T]
            self.attention.forward(be, &q, &m, Some(&mask), None) // [n, 1, c_z]
        });
        out.reshape(&[l, l, cz]).expect("same size")
    }
}

/// Algorithm 2 lines 9-13 (modules.py `TemplateEmbedding`): each template through
/// [`SingleTemplateEmbedding`] (shared weights), [`TemplatePointwiseAttention`] from the
/// query pair, times `(sum template_mask > 0)`.
#[derive(Debug)]
pub struct TemplateEmbedding {
    single: SingleTemplateEmbedding,
    attention: TemplatePointwiseAttention,
    cfg: TemplateConfig,
}

impl TemplateEmbedding {
    /// `p`: the `template_embedding` scope ([`super::SCOPE`] in the official parameters).
    pub fn load(p: &Scope<'_>, cfg: &TemplateConfig) -> LoadResult<Self> {
        Ok(Self {
            single: SingleTemplateEmbedding::load(&p.sub("single_template_embedding"), cfg)?,
            attention: TemplatePointwiseAttention::load(&p.sub("attention"), cfg)?,
            cfg: *cfg,
        })
    }

    /// query `[L, L, c_z]` (the pair activations so far), pair_mask `[L, L]` (the padding
    /// mask), the templates → the update `[L, L, c_z]` (the caller adds it to the pair):
    /// [`Self::embed_templates`] then [`Self::attend`].
    pub fn forward(
        &self,
        be: &dyn Backend,
        query: &Tensor,
        pair_mask: &Tensor,
        batch: &TemplateBatch,
    ) -> Tensor {
        self.attend(be, query, &self.embed_templates(be, pair_mask, batch))
    }

    /// Each real template through [`SingleTemplateEmbedding`]. They read the templates and the
    /// pair mask only, not the recycled state, so a caller may keep them for every recycling
    /// iteration with the same templates.
    ///
    /// Templates with `template_mask` 0 are skipped: their keys' weights are exactly 0 in the
    /// official softmax (`exp(-1e9)`), so the result is the same. With no real template there
    /// are none, and the update is zero, as the official `* (sum template_mask > 0)` makes it.
    pub fn embed_templates(
        &self,
        be: &dyn Backend,
        pair_mask: &Tensor,
        batch: &TemplateBatch,
    ) -> TemplatePairEmbeddings {
        batch.validate();
        let total: f32 = batch.template_mask.iter().sum();
        let any_real = total > 0.0; // false for NaN too, as in the official code
        let active: Vec<usize> = (0..batch.num_templates())
            .filter(|&t| any_real && batch.template_mask[t] != 0.0)
            .collect();
        TemplatePairEmbeddings {
            embeddings: active
                .iter()
                .map(|&t| self.single.forward(be, &batch.template(t), pair_mask))
                .collect(),
            mask: active.iter().map(|&t| batch.template_mask[t]).collect(),
        }
    }

    /// [`TemplatePointwiseAttention`] from the query `[L, L, c_z]` to the embedded templates →
    /// the update `[L, L, c_z]` (zeros without a template).
    pub fn attend(
        &self,
        be: &dyn Backend,
        query: &Tensor,
        templates: &TemplatePairEmbeddings,
    ) -> Tensor {
        let l = query.dim(0);
        assert_eq!(
            query.shape(),
            [l, l, self.cfg.c_z],
            "template embedding: query [L, L, c_z]"
        );
        if templates.embeddings.is_empty() {
            return Tensor::zeros(query.shape());
        }
        self.attention
            .forward(be, query, &templates.embeddings, &templates.mask)
    }
}

/// The real templates' pair embeddings `[L, L, c_t]` and their `template_mask` values.
#[derive(Debug)]
pub struct TemplatePairEmbeddings {
    embeddings: Vec<Tensor>,
    mask: Vec<f32>,
}

#[cfg(test)]
mod tests {
    use super::super::test_support::golden_batch;
    use super::super::SCOPE;
    use super::*;
    use crate::af2::golden::{assert_close, Golden};
    use ferrofold_kernels::CpuBackend;

    const CFG: TemplateConfig = TemplateConfig::MONOMER;

    fn single_template(golden: &str, cfg: &TemplateConfig) {
        let g = Golden::load(golden);
        let p = g.params().sub(SCOPE).sub("single_template_embedding");
        let module = SingleTemplateEmbedding::load(&p, cfg).unwrap();
        let batch = golden_batch(&g);
        let want = g.output(None); // [T, L, L, c_t]
        let (t, l) = (batch.num_templates(), batch.num_res());
        let got: Vec<f32> = (0..t)
            .flat_map(|i| {
                module
                    .forward(&CpuBackend, &batch.template(i), &g.input("pair_mask"))
                    .data()
                    .to_vec()
            })
            .collect();
        let got = Tensor::new(&[t, l, l, cfg.c_t], got).unwrap();
        assert_close(&got, &want, TOL, golden);
    }

    /// Both templates (one with GLY, UNK, a gap and missing atoms) through the pair
    /// features, `embedding2d`, the two-block pair stack and the output LayerNorm.
    #[test]
    fn single_template_embedding_matches_official() {
        single_template("single_template_embedding", &CFG);
    }

    /// The unit-vector channels (off in every monomer config) when switched on.
    #[test]
    fn single_template_embedding_with_unit_vector_matches_official() {
        let cfg = TemplateConfig {
            use_unit_vector: true,
            ..CFG
        };
        single_template("single_template_embedding_unit_vector", &cfg);
    }

    #[test]
    fn template_embedding_matches_official() {
        let g = Golden::load("template_embedding");
        let module = TemplateEmbedding::load(&g.params().sub(SCOPE), &CFG).unwrap();
        let mut batch = golden_batch(&g);
        batch.template_mask = g.input("template_mask").data().to_vec();
        assert_eq!(batch.template_mask, [1.0, 0.0]);
        let got = module.forward(
            &CpuBackend,
            &g.input("pair_act"),
            &g.input("pair_mask"),
            &batch,
        );
        assert_close(&got, &g.output(None), TOL, "template_embedding");
    }

    /// With no real template the update is exactly zero.
    #[test]
    fn no_real_template_gives_zero() {
        let g = Golden::load("template_embedding");
        let module = TemplateEmbedding::load(&g.params().sub(SCOPE), &CFG).unwrap();
        let mut batch = golden_batch(&g);
        batch.template_mask = vec![0.0, 0.0];
        let got = module.forward(
            &CpuBackend,
            &g.input("pair_act"),
            &g.input("pair_mask"),
            &batch,
        );
        assert!(got.data().iter().all(|&x| x == 0.0));
    }

    /// Skipping a template with mask 0 equals attending to it with the official -1e9 bias.
    #[test]
    fn masked_template_contributes_nothing() {
        let g = Golden::load("template_embedding");
        let p = g.params().sub(SCOPE);
        let attention = TemplatePointwiseAttention::load(&p.sub("attention"), &CFG).unwrap();
        let single =
            SingleTemplateEmbedding::load(&p.sub("single_template_embedding"), &CFG).unwrap();
        let batch = golden_batch(&g);
        let (query, mask) = (g.input("pair_act"), g.input("pair_mask"));
        let emb: Vec<Tensor> = (0..2)
            .map(|t| single.forward(&CpuBackend, &batch.template(t), &mask))
            .collect();
        let both = attention.forward(&CpuBackend, &query, &emb, &[1.0, 0.0]);
        let first = attention.forward(&CpuBackend, &query, &emb[..1], &[1.0]);
        assert_close(&both, &first, 1e-6, "masked template");
        let second = attention.forward(&CpuBackend, &query, &emb[1..], &[1.0]);
        assert!(second.max_abs_diff(&first) > 1e-2, "the templates differ");
    }

    /// Building the features and attending in chunks of rows changes nothing.
    #[test]
    fn chunks_match_one_pass() {
        let g = Golden::load("template_embedding");
        let p = g.params().sub(SCOPE);
        let attention = TemplatePointwiseAttention::load(&p.sub("attention"), &CFG).unwrap();
        let single =
            SingleTemplateEmbedding::load(&p.sub("single_template_embedding"), &CFG).unwrap();
        let batch = golden_batch(&g);
        let template = batch.template(1);
        let whole = single.embed_features(&CpuBackend, &template, 11);
        let chunked = single.embed_features(&CpuBackend, &template, 3);
        assert_close(&chunked, &whole, 1e-6, "chunked embedding2d");
        let emb: Vec<Tensor> = (0..2)
            .map(|t| single.forward(&CpuBackend, &batch.template(t), &g.input("pair_mask")))
            .collect();
        let query = g.input("pair_act");
        let whole = attention.forward_chunked(&CpuBackend, &query, &emb, &[1.0, 1.0], 121);
        let chunked = attention.forward_chunked(&CpuBackend, &query, &emb, &[1.0, 1.0], 7);
        assert_close(&chunked, &whole, 1e-6, "chunked pointwise attention");
    }

    /// Relative to the largest |value|. Measured: single_template_embedding 1.7e-6 / 3.96,
    /// with unit vectors 1.9e-6 / 4.36, template_embedding 2.2e-6 / 3.79 (all <= 5.7e-7).
    const TOL: f32 = 1e-5;
}

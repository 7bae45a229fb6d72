//! AlphaFold2 attention: the gated multi-head core (modules.py `Attention`), global
//! attention (Algorithm 19), MSA row attention with pair bias (Algorithm 7), MSA column
//! attention (Algorithm 8), MSA column global attention (Algorithm 19) and triangle
//! attention around the starting and ending node (Algorithms 13 and 14).
//!
//! Every module returns the residual *update*, like the official code. Masks enter as the
//! additive logit bias `1e9 * (mask - 1)` over keys, added before the pair bias, so a fully
//! masked query row attends uniformly (not NaN), exactly as in AF2 v2.3.
//!
//! The attention runs over the leading ("batch") axis in chunks of rows
//! ([`for_row_chunks`], AF2's `inference_subbatch`), so the projections take
//! O(chunk * N * H * D) memory; the backend's fused op never materialises the whole
//! `[B, H, Q, K]` logits. Rows are independent, so the chunk size doesn't change the
//! maths; results are bitwise equal when the backend's `linear` is row-invariant (the CPU
//! backend's gemm sums small row blocks in another order: a few ulp, see the tests).

use std::sync::Arc;

use crate::chunk::for_row_chunks;
use crate::nn::{LayerNorm, Linear, LoadResult};
use ferrofold_io::weights::Scope;
use ferrofold_kernels::{
    attention_scale, AttentionParams, Backend, GatedAttention, MatView, Tensor,
};

/// Dimensions of an attention block (modules.py `Attention` / `GlobalAttention` config).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttentionDims {
    /// Query input channels.
    pub q_in: usize,
    /// Key/value ("memory") input channels.
    pub m_in: usize,
    pub heads: usize,
    /// Per-head query/key width (config `key_dim / num_head`).
    pub key_dim: usize,
    /// Per-head value width (config `value_dim / num_head`).
    pub value_dim: usize,
    /// Output channels.
    pub out: usize,
    /// Whether the per-head output is gated (`gating_w`, `gating_b`).
    pub gating: bool,
}

impl AttentionDims {
    /// Gated self-attention on `c` channels as the Evoformer configures it: no `key_dim` /
    /// `value_dim` in the config, so both are `c / heads` per head, and the output has `c`.
    pub fn gated_self(c: usize, heads: usize) -> Self {
        assert_eq!(c % heads, 0, "{c} channels over {heads} heads");
        Self {
            q_in: c,
            m_in: c,
            heads,
            key_dim: c / heads,
            value_dim: c / heads,
            out: c,
            gating: true,
        }
    }
}

/// Output projection `output_w` `[H, Dv, out]` + `output_b`, as a linear on head-major channels.
fn load_output(p: &Scope<'_>, d: &AttentionDims) -> LoadResult<Linear> {
    Ok(Linear {
        // [out, H*Dv]
        w: p.get_owned_transposed("output_w", &[d.heads, d.value_dim, d.out], 2)?,
        b: Some(p.get_owned("output_b", &[d.out])?),
    })
}

/// Gate projection `gating_w` `[c, H, Dv]` + `gating_b` `[H, Dv]`, when `d.gating`.
fn load_gating(p: &Scope<'_>, d: &AttentionDims) -> LoadResult<Option<Linear>> {
    if !d.gating {
        return Ok(None);
    }
    let mut g = Linear::load_heads(p, "gating_w", d.q_in, d.heads, d.value_dim)?;
    let b = p.get_owned("gating_b", &[d.heads, d.value_dim])?;
    g.b = Some(b.reshape(&[d.heads * d.value_dim]).expect("same size"));
    Ok(Some(g))
}

/// Gated multi-head attention, the core of Algorithms 7, 8, 13 and 14 (modules.py
/// `Attention`): `softmax(q k^T / sqrt(d) + bias + pair_bias) v`, gated per head by
/// `sigmoid(x W_g + b_g)`, then `output_w` + `output_b`. No q/k/v biases.
#[derive(Debug)]
pub struct Attention {
    query: Linear,          // [H*Dk, q_in]
    key: Linear,            // [H*Dk, m_in]
    value: Linear,          // [H*Dv, m_in]
    gating: Option<Linear>, // [H*Dv, q_in] + [H*Dv]
    output: Linear,         // [out, H*Dv] + [out]
    dims: AttentionDims,
}

impl Attention {
    /// `p` is the `attention` scope (`.../msa_row_attention_with_pair_bias/attention`).
    pub fn load(p: &Scope<'_>, dims: AttentionDims) -> LoadResult<Self> {
        let d = &dims;
        Ok(Self {
            query: Linear::load_heads(p, "query_w", d.q_in, d.heads, d.key_dim)?,
            key: Linear::load_heads(p, "key_w", d.m_in, d.heads, d.key_dim)?,
            value: Linear::load_heads(p, "value_w", d.m_in, d.heads, d.value_dim)?,
            gating: load_gating(p, d)?,
            output: load_output(p, d)?,
            dims,
        })
    }

    pub fn dims(&self) -> AttentionDims {
        self.dims
    }

    /// q_data `[B, Q, q_in]`, m_data `[B, K, m_in]`, key_mask `[B, K]` (1 keeps a key; 0
    /// adds `-MASK_BIAS` to its logits), pair_bias `[H, Q, K]` (shared by all batch rows,
    /// added after the mask) → `[B, Q, out]`. The projections stay in their own
    /// `[B, N, H, D]` layout and the backend's fused op never materialises the whole
    /// logits; see [`for_row_chunks`] for bounding the projections.
    pub fn forward(
        &self,
        be: &dyn Backend,
        q_data: &Tensor,
        m_data: &Tensor,
        key_mask: Option<&Tensor>,
        pair_bias: Option<&Tensor>,
    ) -> Tensor {
        let d = &self.dims;
        let p = AttentionParams {
            query: &self.query.w,
            key: &self.key.w,
            value: &self.value.w,
            gating: self.gating.as_ref().map(Linear::params),
            output: self.output.params(),
            heads: d.heads,
            key_dim: d.key_dim,
            value_dim: d.value_dim,
        };
        be.attention(&p, q_data, m_data, key_mask, pair_bias)
    }
}

/// Global attention, Algorithm 19 lines 2-7 (modules.py `GlobalAttention`): one query per
/// batch row, the mask-weighted mean of the rows' queries, against a single shared key and
/// value head (`key_w` `[c, Dk]`, `value_w` `[c, Dv]`), gated per query position.
#[derive(Debug)]
pub struct GlobalAttention {
    query: Linear,          // [H*Dk, q_in]
    key: Linear,            // [Dk, m_in]
    value: Linear,          // [Dv, m_in]
    gating: Option<Linear>, // [H*Dv, q_in] + [H*Dv]
    output: Linear,         // [out, H*Dv] + [out]
    dims: AttentionDims,
}

impl GlobalAttention {
    /// `p` is the `attention` scope (`.../msa_column_global_attention/attention`).
    pub fn load(p: &Scope<'_>, dims: AttentionDims) -> LoadResult<Self> {
        let d = &dims;
        Ok(Self {
            query: Linear::load_heads(p, "query_w", d.q_in, d.heads, d.key_dim)?,
            key: load_shared_head(p, "key_w", d.m_in, d.key_dim)?,
            value: load_shared_head(p, "value_w", d.m_in, d.value_dim)?,
            gating: load_gating(p, d)?,
            output: load_output(p, d)?,
            dims,
        })
    }

    pub fn dims(&self) -> AttentionDims {
        self.dims
    }

    /// q_data `[B, N, q_in]`, m_data `[B, N, m_in]`, q_mask `[B, N]` (masks both the query
    /// mean and the keys) → `[B, N, out]` when gated, else `[B, 1, out]` (as the official code).
    pub fn forward(
        &self,
        be: &dyn Backend,
        q_data: &Tensor,
        m_data: &Tensor,
        q_mask: &Tensor,
    ) -> Tensor {
        let d = &self.dims;
        let (b, n, c, h) = (q_data.dim(0), q_data.dim(1), q_data.dim(2), d.heads);
        assert_eq!(q_mask.shape(), &[b, n], "global attention: mask");
        assert_eq!(&m_data.shape()[..2], &[b, n], "global attention: memory");
        // utils.mask_mean over the N axis, sum(mask * x) / (sum(mask) + 1e-10), as one
        // batched product with the mask's rows divided by their sums.
        let weights: Vec<f32> = q_mask
            .data()
            .chunks(n.max(1))
            .flat_map(|m| {
                let denom = m.iter().sum::<f32>() + 1e-10;
                m.iter().map(move |&w| w / denom)
            })
            .collect();
        let weights = Tensor::new(&[b, 1, n], weights).expect("[B, 1, N]");
        let q_avg = be.batched_matmul(MatView::n(&weights), MatView::n(q_data)); // [B, 1, c]
        let q_avg = q_avg.reshape(&[b, c]).expect("same size");
        // The H queries of a batch row against its one shared key and value head: the
        // heads are the queries of a one-headed attention.
        let q = self.query.forward(be, &q_avg); // [B, H*Dk]
        let q = q.reshape(&[b, h, 1, d.key_dim]).expect("same size"); // [B, H, 1, Dk]
        let k = self.key.forward(be, m_data); // [B, N, Dk]
        let k = k.reshape(&[b, n, 1, d.key_dim]).expect("same size");
        let v = self.value.forward(be, m_data); // [B, N, Dv]
        let v = v.reshape(&[b, n, 1, d.value_dim]).expect("same size");
        let avg = be.gated_attention(&GatedAttention {
            q: &q,
            k: &k,
            v: &v,
            bias: None,
            mask: Some(q_mask),
            gate: None,
            scale: attention_scale(d.key_dim),
        }); // [B, H, 1, Dv]
        let hv = h * d.value_dim;
        let avg = avg.reshape(&[b, hv]).expect("same size"); // [B, H*Dv]

        match &self.gating {
            Some(g) => {
                let mut gated = g.forward(be, q_data); // [B, N, H*Dv]
                be.broadcast_sigmoid_gate(&mut gated, &avg);
                self.output.forward(be, &gated) // [B, N, out]
            }
            None => {
                let out = self.output.forward(be, &avg); // [B, out]
                out.reshape(&[b, 1, d.out]).expect("same size") // [B, 1, out]
            }
        }
    }
}

/// A single shared head stored Haiku-style `[in, out]` under `name` (GlobalAttention's
/// `key_w`, `value_w`), no bias.
fn load_shared_head(p: &Scope<'_>, name: &str, d_in: usize, d_out: usize) -> LoadResult<Linear> {
    Ok(Linear {
        w: p.get_owned_transposed(name, &[d_in, d_out], 1)?, // [out, in]
        b: None,
    })
}

/// MSA row attention with pair bias, Algorithm 7 (modules.py `MSARowAttentionWithPairBias`).
#[derive(Debug)]
pub struct MsaRowAttentionWithPairBias {
    query_norm: LayerNorm,
    feat_2d_norm: LayerNorm,
    feat_2d_weights: Tensor, // [H, c_z]
    attention: Attention,
    /// Rows (MSA sequences) per chunk; `None`: automatic ([`Backend::chunk_elements`]).
    pub chunk_size: Option<usize>,
}

impl MsaRowAttentionWithPairBias {
    /// `p`: `.../evoformer_iteration/msa_row_attention_with_pair_bias` (or the extra-MSA
    /// stack's). Main stack: c_m 256, c_z 128, 8 heads; extra stack: c_m 64, 8 heads.
    pub fn load(p: &Scope<'_>, c_m: usize, c_z: usize, heads: usize) -> LoadResult<Self> {
        Ok(Self {
            query_norm: LayerNorm::load_haiku(&p.sub("query_norm"), c_m)?,
            feat_2d_norm: LayerNorm::load_haiku(&p.sub("feat_2d_norm"), c_z)?,
            feat_2d_weights: p.get_owned_transposed("feat_2d_weights", &[c_z, heads], 1)?,
            attention: Attention::load(&p.sub("attention"), AttentionDims::gated_self(c_m, heads))?,
            chunk_size: None,
        })
    }

    /// Sets the rows (MSA sequences) per chunk; `None` for automatic.
    pub fn with_chunk_size(mut self, rows: Option<usize>) -> Self {
        self.chunk_size = rows;
        self
    }

    /// msa_act `[S, R, c_m]` (raw: normalised here), msa_mask `[S, R]`, pair_act `[R, R, c_z]`
    /// (raw: `feat_2d_norm` is applied here) → the update `[S, R, c_m]`.
    pub fn forward(
        &self,
        be: &dyn Backend,
        msa_act: &Tensor,
        msa_mask: &Tensor,
        pair_act: &Tensor,
    ) -> Tensor {
        let x = self.query_norm.forward(be, msa_act); // [S, R, c_m]
        let z = self.feat_2d_norm.forward(be, pair_act); // [R, R, c_z]
        let pair_bias = pair_bias(be, &z, &self.feat_2d_weights); // [H, R, R]
        self_attention_rows(
            be,
            &self.attention,
            &x,
            msa_mask,
            Some(&pair_bias),
            self.chunk_size,
        )
    }
}

/// MSA column attention, Algorithm 8 (modules.py `MSAColumnAttention`).
#[derive(Debug)]
pub struct MsaColumnAttention {
    query_norm: LayerNorm,
    attention: Attention,
    /// Columns (residues) per chunk; `None`: automatic ([`Backend::chunk_elements`]).
    pub chunk_size: Option<usize>,
}

impl MsaColumnAttention {
    /// `p`: `.../evoformer_iteration/msa_column_attention` (c_m 256, 8 heads).
    pub fn load(p: &Scope<'_>, c_m: usize, heads: usize) -> LoadResult<Self> {
        Ok(Self {
            query_norm: LayerNorm::load_haiku(&p.sub("query_norm"), c_m)?,
            attention: Attention::load(&p.sub("attention"), AttentionDims::gated_self(c_m, heads))?,
            chunk_size: None,
        })
    }

    /// Sets the columns (residues) per chunk; `None` for automatic.
    pub fn with_chunk_size(mut self, rows: Option<usize>) -> Self {
        self.chunk_size = rows;
        self
    }

    /// msa_act `[S, R, c_m]` (raw), msa_mask `[S, R]` → the update `[S, R, c_m]`.
    pub fn forward(&self, be: &dyn Backend, msa_act: &Tensor, msa_mask: &Tensor) -> Tensor {
        let out = {
            let x = self.query_norm.forward(be, &be.swap_leading_axes(msa_act)); // [R, S, c_m]
            let mask = transposed_mask(be, msa_mask); // [R, S]
            self_attention_rows(be, &self.attention, &x, &mask, None, self.chunk_size)
        }; // x freed before the result is swapped back
        be.swap_leading_axes(&out) // [S, R, c_m]
    }
}

/// MSA column global attention of the extra-MSA stack, Algorithm 19 (modules.py
/// `MSAColumnGlobalAttention`).
#[derive(Debug)]
pub struct MsaColumnGlobalAttention {
    query_norm: LayerNorm,
    attention: GlobalAttention,
    /// Columns (residues) per chunk; `None`: automatic ([`Backend::chunk_elements`]).
    pub chunk_size: Option<usize>,
}

impl MsaColumnGlobalAttention {
    /// `p`: `.../extra_msa_stack/msa_column_global_attention` (c_m 64, 8 heads of 8).
    pub fn load(p: &Scope<'_>, c_m: usize, heads: usize) -> LoadResult<Self> {
        let dims = AttentionDims::gated_self(c_m, heads);
        Ok(Self {
            query_norm: LayerNorm::load_haiku(&p.sub("query_norm"), c_m)?,
            attention: GlobalAttention::load(&p.sub("attention"), dims)?,
            chunk_size: None,
        })
    }

    /// Sets the columns (residues) per chunk; `None` for automatic.
    pub fn with_chunk_size(mut self, rows: Option<usize>) -> Self {
        self.chunk_size = rows;
        self
    }

    /// msa_act `[S, R, c_m]` (raw), msa_mask `[S, R]` → the update `[S, R, c_m]`.
    pub fn forward(&self, be: &dyn Backend, msa_act: &Tensor, msa_mask: &Tensor) -> Tensor {
        let out = {
            // The mask transposed on the host: global attention makes its masked mean's
            // weights there.
            let x = self.query_norm.forward(be, &be.swap_leading_axes(msa_act)); // [R, S, c_m]
            let mask = msa_mask.transposed(); // [R, S]
            let (r, s) = (mask.dim(0), mask.dim(1));
            let c = x.dim(2);
            let d = self.attention.dims;
            // per column: the gates [S, H*Dv], keys, values and the normalised input
            let per_row = s * (d.heads * d.value_dim + d.key_dim + d.value_dim + c);
            let chunk = rows_per_chunk(be, self.chunk_size, per_row);
            for_row_chunks(be, r, chunk, |rows| {
                let x = be.slice_rows(&x, rows.clone()); // [chunk, S, c_m]
                let m = be.slice_rows(&mask, rows); // [chunk, S]
                self.attention.forward(be, &x, &x, &m)
            })
            .reshape(&[r, s, c])
            .expect("gated global attention keeps the shape")
        }; // x freed before the result is swapped back
        be.swap_leading_axes(&out) // [S, R, c_m]
    }
}

/// Which node triangle attention runs around (the config's `orientation`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TriangleOrientation {
    /// `per_row`: around the starting node, Algorithm 13 (`triangle_attention_starting_node`).
    PerRow,
    /// `per_column`: around the ending node, Algorithm 14 (`triangle_attention_ending_node`).
    PerColumn,
}

/// Triangle attention, Algorithms 13 and 14 (modules.py `TriangleAttention`).
#[derive(Debug)]
pub struct TriangleAttention {
    query_norm: LayerNorm,
    feat_2d_weights: Tensor, // [H, c_z]
    attention: Attention,
    orientation: TriangleOrientation,
    /// Pair rows per chunk; `None`: automatic ([`Backend::chunk_elements`]).
    pub chunk_size: Option<usize>,
}

impl TriangleAttention {
    /// `p`: `.../evoformer_iteration/triangle_attention_starting_node` (`PerRow`) or
    /// `..._ending_node` (`PerColumn`); c_z 128 and 4 heads in the Evoformer.
    pub fn load(
        p: &Scope<'_>,
        c_z: usize,
        heads: usize,
        orientation: TriangleOrientation,
    ) -> LoadResult<Self> {
        Ok(Self {
            query_norm: LayerNorm::load_haiku(&p.sub("query_norm"), c_z)?,
            feat_2d_weights: p.get_owned_transposed("feat_2d_weights", &[c_z, heads], 1)?,
            attention: Attention::load(&p.sub("attention"), AttentionDims::gated_self(c_z, heads))?,
            orientation,
            chunk_size: None,
        })
    }

    /// Sets the pair rows per chunk; `None` for automatic.
    pub fn with_chunk_size(mut self, rows: Option<usize>) -> Self {
        self.chunk_size = rows;
        self
    }

    /// pair_act `[R, R, c_z]` (raw: normalised here), pair_mask `[R, R]` → the update
    /// `[R, R, c_z]`.
    pub fn forward(&self, be: &dyn Backend, pair_act: &Tensor, pair_mask: &Tensor) -> Tensor {
        let per_column = self.orientation == TriangleOrientation::PerColumn;
        let out = {
            let transposed;
            let (x, mask) = if per_column {
                let x = self.query_norm.forward(be, &be.swap_leading_axes(pair_act));
                transposed = transposed_mask(be, pair_mask);
                (x, &transposed)
            } else {
                (self.query_norm.forward(be, pair_act), pair_mask)
            }; // [R, R, c_z], [R, R]
            let bias = pair_bias(be, &x, &self.feat_2d_weights); // [H, R, R]
            self_attention_rows(be, &self.attention, &x, mask, Some(&bias), self.chunk_size)
        }; // [R, R, c_z]; x freed before the result is swapped back
        if per_column {
            be.swap_leading_axes(&out)
        } else {
            out
        }
    }
}

/// A mask `[A, B]` transposed to `[B, A]`: on the device when its values are there (after its
/// first whole use, which keeps its upload; the device copy is shared, not copied), else on
/// the host.
fn transposed_mask(be: &dyn Backend, mask: &Tensor) -> Tensor {
    let (a, b) = (mask.dim(0), mask.dim(1));
    let column = match mask.device_values() {
        Some(values) => Tensor::on_device(&[a, b, 1], Arc::clone(values)),
        None => mask.clone().reshape(&[a, b, 1]).expect("a mask is [A, B]"),
    };
    be.swap_leading_axes(&column)
        .reshape(&[b, a])
        .expect("same size")
}

/// `einsum('qkc,ch->hqk', z, W)`: normalised pair z `[Q, K, c]`, weights `[H, c]` →
/// `[H, Q, K]` (no bias term).
fn pair_bias(be: &dyn Backend, z: &Tensor, w: &Tensor) -> Tensor {
    let (q, k, h) = (z.dim(0), z.dim(1), w.dim(0));
    let b = be.linear(z, w, None); // [Q, K, H]
    let b = b.reshape(&[q * k, h, 1]).expect("same size");
    be.swap_leading_axes(&b) // [H, Q*K, 1]
        .reshape(&[h, q, k])
        .expect("same size") // [H, Q, K]
}

/// Self-attention along axis 1 of x `[B, N, c]` for every batch row b, keys masked by
/// mask `[B, N]`, in chunks of rows → `[B, N, out]`.
fn self_attention_rows(
    be: &dyn Backend,
    attention: &Attention,
    x: &Tensor,
    mask: &Tensor,
    pair_bias: Option<&Tensor>,
    chunk_size: Option<usize>,
) -> Tensor {
    let (b, n) = (x.dim(0), x.dim(1));
    assert_eq!(mask.shape(), &[b, n], "attention mask");
    let d = attention.dims;
    let chunk = rows_per_chunk(be, chunk_size, n * d.heads * 2 * (d.key_dim + d.value_dim));
    if b <= chunk {
        return attention.forward(be, x, x, Some(mask), pair_bias);
    }
    for_row_chunks(be, b, chunk, |rows| {
        let x = be.slice_rows(x, rows.clone()); // [chunk, N, c]
        let m = be.slice_rows(mask, rows); // [chunk, N]
        attention.forward(be, &x, &x, Some(&m), pair_bias)
    })
}

/// Rows per chunk: `setting`, or as many as keep one chunk's activations (`per_row`
/// elements per row) within the backend's [`Backend::chunk_elements`]; at least 1.
fn rows_per_chunk(be: &dyn Backend, setting: Option<usize>, per_row: usize) -> usize {
    setting
        .unwrap_or(be.chunk_elements() / per_row.max(1))
        .max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::af2::golden::{assert_close, Golden};
    use ferrofold_kernels::CpuBackend;

    const TOL: f32 = 1e-5;

    fn evoformer<'a>(g: &'a Golden, module: &str) -> Scope<'a> {
        g.params()
            .sub("alphafold")
            .sub("alphafold_iteration")
            .sub("evoformer")
            .sub("evoformer_iteration")
            .sub(module)
    }

    fn check(got: &Tensor, want: &Tensor, what: &str) {
        assert_close(got, want, TOL, what);
    }

    fn row_attention(g: &Golden) -> MsaRowAttentionWithPairBias {
        let p = evoformer(g, "msa_row_attention_with_pair_bias");
        MsaRowAttentionWithPairBias::load(&p, 256, 128, 8).unwrap()
    }

    fn triangle(g: &Golden, name: &str, o: TriangleOrientation) -> TriangleAttention {
        TriangleAttention::load(&evoformer(g, name), 128, 4, o).unwrap()
    }

    fn global(g: &Golden) -> MsaColumnGlobalAttention {
        let p = g
            .params()
            .sub("alphafold")
            .sub("alphafold_iteration")
            .sub("evoformer")
            .sub("extra_msa_stack")
            .sub("msa_column_global_attention");
        MsaColumnGlobalAttention::load(&p, 64, 8).unwrap()
    }

    #[test]
    fn msa_row_attention_with_pair_bias_matches_official() {
        let g = Golden::load("msa_row_attention_with_pair_bias");
        let m = row_attention(&g);
        let got = m.forward(
            &CpuBackend,
            &g.input("msa_act"),
            &g.input("msa_mask"),
            &g.input("pair_act"),
        );
        check(&got, &g.output(None), "msa_row_attention_with_pair_bias");
    }

    #[test]
    fn msa_column_attention_matches_official() {
        let g = Golden::load("msa_column_attention");
        let m = MsaColumnAttention::load(&evoformer(&g, "msa_column_attention"), 256, 8).unwrap();
        let got = m.forward(&CpuBackend, &g.input("msa_act"), &g.input("msa_mask"));
        check(&got, &g.output(None), "msa_column_attention");
    }

    #[test]
    fn msa_column_global_attention_matches_official() {
        let g = Golden::load("msa_column_global_attention");
        let got = global(&g).forward(
            &CpuBackend,
            &g.input("extra_msa_act"),
            &g.input("extra_msa_mask"),
        );
        check(&got, &g.output(None), "msa_column_global_attention");
    }

    #[test]
    fn triangle_attention_starting_node_matches_official() {
        let g = Golden::load("triangle_attention_starting_node");
        let m = triangle(
            &g,
            "triangle_attention_starting_node",
            TriangleOrientation::PerRow,
        );
        let got = m.forward(&CpuBackend, &g.input("pair_act"), &g.input("pair_mask"));
        check(&got, &g.output(None), "triangle_attention_starting_node");
    }

    #[test]
    fn triangle_attention_ending_node_matches_official() {
        let g = Golden::load("triangle_attention_ending_node");
        let m = triangle(
            &g,
            "triangle_attention_ending_node",
            TriangleOrientation::PerColumn,
        );
        let got = m.forward(&CpuBackend, &g.input("pair_act"), &g.input("pair_mask"));
        check(&got, &g.output(None), "triangle_attention_ending_node");
    }

    #[test]
    fn chunking_does_not_change_results() {
        // Bitwise where the backend's `linear` is row-invariant; the CPU backend's gemm takes
        // another summation path for small row blocks (<= 2 rows; <= 32 when out = 8), which
        // chunking can create, so allow a few ulp (measured: see the report).
        fn same(got: &Tensor, want: &Tensor, what: &str) {
            let err = got.max_abs_diff(want);
            let scale = want.data().iter().fold(0f32, |m, v| m.max(v.abs()));
            eprintln!("{what}: max abs diff {err:.2e} (max |value| {scale:.2})");
            assert!(
                got.data().iter().all(|v| v.is_finite()),
                "{what}: non-finite"
            );
            assert!(err <= 1e-6 * scale, "{what}: {err} > 1e-6 x {scale}");
        }
        let be = &CpuBackend;
        let sizes = [Some(1), Some(2), Some(4), Some(usize::MAX), None];

        let g = Golden::load("msa_row_attention_with_pair_bias");
        let (msa, mask, pair) = (g.input("msa_act"), g.input("msa_mask"), g.input("pair_act"));
        let mut m = row_attention(&g);
        let whole = m.forward(be, &msa, &mask, &pair);
        for s in sizes {
            m.chunk_size = s;
            same(
                &m.forward(be, &msa, &mask, &pair),
                &whole,
                &format!("row attention, chunk {s:?}"),
            );
        }

        let g = Golden::load("msa_column_attention");
        let (msa, mask) = (g.input("msa_act"), g.input("msa_mask"));
        let mut m =
            MsaColumnAttention::load(&evoformer(&g, "msa_column_attention"), 256, 8).unwrap();
        let whole = m.forward(be, &msa, &mask);
        for s in sizes {
            m.chunk_size = s;
            same(
                &m.forward(be, &msa, &mask),
                &whole,
                &format!("column attention, chunk {s:?}"),
            );
        }

        let g = Golden::load("msa_column_global_attention");
        let (msa, mask) = (g.input("extra_msa_act"), g.input("extra_msa_mask"));
        let mut m = global(&g);
        let whole = m.forward(be, &msa, &mask);
        for s in sizes {
            m.chunk_size = s;
            same(
                &m.forward(be, &msa, &mask),
                &whole,
                &format!("global attention, chunk {s:?}"),
            );
        }

        let g = Golden::load("triangle_attention_ending_node");
        let (pair, mask) = (g.input("pair_act"), g.input("pair_mask"));
        let mut m = triangle(
            &g,
            "triangle_attention_ending_node",
            TriangleOrientation::PerColumn,
        );
        let whole = m.forward(be, &pair, &mask);
        for s in sizes {
            m.chunk_size = s;
            same(
                &m.forward(be, &pair, &mask),
                &whole,
                &format!("triangle attention, chunk {s:?}"),
            );
        }
    }
}

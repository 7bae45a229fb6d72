//! The op interface every backend implements. Models call only these ops (plus
//! element-wise maps on host tensors), so a new backend never touches model code.

use crate::gating::broadcast_sigmoid_gate;
use crate::pair_embedding::{one_hot_linear, outer_sum};
use crate::point_attention::{point_attention_weights, PointAttention};
use crate::softmax_expectations::softmax_expectations;
use crate::Tensor;

/// Which edges a triangle multiplicative update combines (AF2 Algorithms 11 and 12).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TriangleDirection {
    /// `o_ij = sum_k a_ik * b_jk`
    Outgoing,
    /// `o_ij = sum_k a_kj * b_ki`, the einsum `kjc,kic->ijc` of AF2's and IgFold's code.
    Incoming,
}

/// Element-wise activations (an enum rather than a function pointer, so that each loop is
/// compiled for its function and vectorised).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    Relu,
    /// Exact (erf) GELU.
    Gelu,
    Sigmoid,
}

/// A linear layer's parameters: weight `[out, in]`, bias `[out]`.
#[derive(Clone, Copy, Debug)]
pub struct LinearParams<'a> {
    pub w: &'a Tensor,
    pub b: &'a Tensor,
}

/// A layer norm's parameters: scale and offset `[dim]`.
#[derive(Clone, Copy, Debug)]
pub struct NormParams<'a> {
    pub gamma: &'a Tensor,
    pub beta: &'a Tensor,
    pub eps: f32,
}

/// Parameters of a triangle multiplicative update (AF2 Algorithms 11 and 12; IgFold's
/// trunk uses the same layout): input norm over `C`, gated left/right projections to `H`,
/// a norm over `H` after the triangle product, the output projection back to `C` and its
/// sigmoid gate from the normalised input.
#[derive(Clone, Copy, Debug)]
pub struct TriangleMultiplicationParams<'a> {
    pub input_norm: NormParams<'a>,
    pub left_proj: LinearParams<'a>,
    pub left_gate: LinearParams<'a>,
    pub right_proj: LinearParams<'a>,
    pub right_gate: LinearParams<'a>,
    pub center_norm: NormParams<'a>,
    pub output_proj: LinearParams<'a>,
    pub output_gate: LinearParams<'a>,
}

/// A row-major matrix operand: `[B, R, C]` data read as its transpose when `trans`.
#[derive(Clone, Copy, Debug)]
pub struct MatView<'a> {
    pub tensor: &'a Tensor,
    pub trans: bool,
}

impl<'a> MatView<'a> {
    pub fn n(tensor: &'a Tensor) -> Self {
        Self {
            tensor,
            trans: false,
        }
    }
    pub fn t(tensor: &'a Tensor) -> Self {
        Self {
            tensor,
            trans: true,
        }
    }

    /// `(batch, rows, cols)` of the operand as read (transposed when `trans`).
    pub fn dims(&self) -> (usize, usize, usize) {
        let s = self.tensor.shape();
        assert_eq!(s.len(), 3, "batched_matmul operands are rank 3, got {s:?}");
        if self.trans {
            (s[0], s[2], s[1])
        } else {
            (s[0], s[1], s[2])
        }
    }
}

/// `key_dim^-0.5`, computed in double like AF2's Python scalar `key_dim**(-0.5)`.
pub fn attention_scale(key_dim: usize) -> f32 {
    (key_dim as f64).powf(-0.5) as f32
}

/// Logit bias per unit of missing key mask: masked keys get `MASK_BIAS * (mask - 1)` added to
/// their logits (AlphaFold2's masking: a fully masked row attends uniformly, never NaN).
pub const MASK_BIAS: f32 = 1e9;

/// Inputs of the fused gated attention op, AlphaFold2's gated multi-head attention core (MSA
/// row attention with pair bias, MSA column attention, triangle attention around the
/// starting and ending node, template pointwise attention): for every batch row `b`, head
/// `h` and query `i`
///
/// `logit[j] = (scale * q[b,i,h]) . k[b,j,h] + MASK_BIAS * (mask[b,j] - 1) + bias[h,i,j]`
/// (added in this order), `out[b,i,h] = sigmoid(gate[b,i,h]) * sum_j softmax(logit)[j] v[b,j,h]`.
///
/// Every tensor is in the projections' own layout (`[B, N, H, D]`: a linear layer's output
/// `[B, N, H*D]` reshaped), so no head transpose is needed on either side of the op.
#[derive(Clone, Copy, Debug)]
pub struct GatedAttention<'a> {
    /// Queries `[B, Q, H, D]`, not yet scaled.
    pub q: &'a Tensor,
    /// Keys `[B, K, H, D]`.
    pub k: &'a Tensor,
    /// Values `[B, K, H, Dv]`.
    pub v: &'a Tensor,
    /// Pair bias `[H, Q, K]`, shared by every batch row.
    pub bias: Option<&'a Tensor>,
    /// Key mask `[B, K]`: 1 keeps a key, 0 masks it.
    pub mask: Option<&'a Tensor>,
    /// Gate logits `[B, Q, H, Dv]`; the output is multiplied by their sigmoid.
    pub gate: Option<&'a Tensor>,
    /// Query scale, `D^-0.5` in AF2.
    pub scale: f32,
}

impl GatedAttention<'_> {
    /// `(B, H, Q, K, D, Dv)`, after checking every shape.
    pub fn dims(&self) -> (usize, usize, usize, usize, usize, usize) {
        let (qs, ks, vs) = (self.q.shape(), self.k.shape(), self.v.shape());
        assert!(
            qs.len() == 4 && ks.len() == 4 && vs.len() == 4,
            "gated attention: q, k, v must be [B, N, H, D]"
        );
        let (b, nq, h, d) = (qs[0], qs[1], qs[2], qs[3]);
        let (nk, dv) = (ks[1], vs[3]);
        assert!(
            ks == [b, nk, h, d] && vs == [b, nk, h, dv],
            "gated attention: q {qs:?}, k {ks:?}, v {vs:?}"
        );
        if let Some(t) = self.bias {
            assert_eq!(t.shape(), &[h, nq, nk], "gated attention: bias");
        }
        if let Some(t) = self.mask {
            assert_eq!(t.shape(), &[b, nk], "gated attention: mask");
        }
        if let Some(t) = self.gate {
            assert_eq!(t.shape(), &[b, nq, h, dv], "gated attention: gate");
        }
        (b, h, nq, nk, d, dv)
    }
}

/// Parameters of AF2's gated multi-head attention module (modules.py `Attention`, the core of
/// Algorithms 7, 8, 13 and 14): query, key and value projections without bias (`[H*Dk, q_in]`,
/// `[H*Dk, m_in]`, `[H*Dv, m_in]`), an optional gate projection `[H*Dv, q_in]` with bias, and
/// the output projection `[out, H*Dv]` with bias.
#[derive(Clone, Copy, Debug)]
pub struct AttentionParams<'a> {
    pub query: &'a Tensor,
    pub key: &'a Tensor,
    pub value: &'a Tensor,
    pub gating: Option<LinearParams<'a>>,
    pub output: LinearParams<'a>,
    pub heads: usize,
    pub key_dim: usize,
    pub value_dim: usize,
}

/// Parameters of the outer product mean (AF2 Algorithm 10): the input norm over `c_m`, the
/// left and right projections `[c, c_m]`, and the output projection `[c_z, c * c]` (input
/// index `a * c + b` for left channel `a`, right channel `b`) with its bias.
#[derive(Clone, Copy, Debug)]
pub struct OuterProductMeanParams<'a> {
    pub input_norm: NormParams<'a>,
    pub left: LinearParams<'a>,
    pub right: LinearParams<'a>,
    pub output: LinearParams<'a>,
}

/// Added to the outer product mean's mask-product count before dividing (AF2's `epsilon`).
pub const OUTER_PRODUCT_NORM_EPS: f32 = 1e-3;

/// `(B, H, Q, K)` of [`Backend::masked_softmax`]'s logits, after checking the bias and mask
/// shapes against them.
pub(crate) fn masked_softmax_dims(
    x: &Tensor,
    bias: Option<&Tensor>,
    mask: Option<&Tensor>,
) -> (usize, usize, usize, usize) {
    let s = x.shape();
    assert_eq!(s.len(), 4, "masked_softmax: logits must be [B, H, Q, K]");
    let (b, h, nq, nk) = (s[0], s[1], s[2], s[3]);
    if let Some(t) = bias {
        assert_eq!(t.shape(), &[h, nq, nk], "masked_softmax: bias");
    }
    if let Some(t) = mask {
        assert_eq!(t.shape(), &[b, nk], "masked_softmax: mask");
    }
    (b, h, nq, nk)
}

pub trait Backend: Send + Sync {
    /// `y = x W^T + b` over the last axis of `x`; `w` is `[out, in]` as stored by PyTorch
    /// and JAX-converted checkpoints alike.
    fn linear(&self, x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> Tensor;

    /// Batched matrix product `c[b] = op(a[b]) op(b[b])` over a leading batch axis
    /// (`[B, M, N]` out). Operands are rank-3.
    fn batched_matmul(&self, a: MatView<'_>, b: MatView<'_>) -> Tensor;

    /// Layer normalisation over the last axis.
    fn layer_norm(&self, x: &Tensor, gamma: &Tensor, beta: &Tensor, eps: f32) -> Tensor;

    /// Softmax over the last axis, in place.
    fn softmax(&self, x: &mut Tensor);

    /// Applies an activation to every element in place.
    fn activate(&self, x: &mut Tensor, f: Activation);

    /// `x += y` (same shapes): a residual update. A device backend adds where the values
    /// already are, so that the residual stream stays on the device between modules.
    fn add_assign(&self, x: &mut Tensor, y: &Tensor) {
        x.add_assign(y);
    }

    /// A zero tensor, kept where the backend keeps its results (chunked outputs are stacked
    /// into one).
    fn zeros(&self, shape: &[usize]) -> Tensor {
        Tensor::zeros(shape)
    }

    /// Rows `range` of `x`'s leading axis, copied where the values are.
    fn slice_rows(&self, x: &Tensor, range: std::ops::Range<usize>) -> Tensor {
        x.slice_rows(range)
    }

    /// `out`'s rows of the leading axis from `start` on set to `part`'s, where the values are.
    fn write_rows(&self, out: &mut Tensor, start: usize, part: &Tensor) {
        out.write_rows(start, part);
    }

    /// Whether a model should keep its layers once loaded rather than read them from the
    /// parameter file each time they run (which saves host memory on the CPU): a device
    /// backend keeps each weight's upload with its tensor, so a layer read again would be
    /// uploaded again. Models also keep results they would otherwise recompute (AF2's template
    /// pair embeddings between recycling iterations) where this holds.
    fn keeps_layers(&self) -> bool {
        false
    }

    /// Most elements one chunk of a chunked module's activations may hold when the caller
    /// sets no chunk size (attention's queries, keys, values and gates). On the CPU 2^22
    /// floats (16 MiB), so that attention adds little to the parameters' memory; a device
    /// sizes it from its free memory.
    fn chunk_elements(&self) -> usize {
        1 << 22
    }

    /// `[A, B, C]` → `[B, A, C]` (column-wise and ending-node modules run on the swapped
    /// layout); on the device where the values are.
    fn swap_leading_axes(&self, x: &Tensor) -> Tensor {
        x.swap_leading_axes()
    }

    /// Attention probabilities `softmax(scale * q k^T + bias)`.
    /// q `[H, I, D]`, k `[H, J, D]`, bias `[H, I, J]` → `[H, I, J]`.
    fn attention_probs(&self, q: &Tensor, k: &Tensor, bias: Option<&Tensor>, scale: f32) -> Tensor {
        let mut logits = self.batched_matmul(MatView::n(q), MatView::t(k)); // [H, I, J]
        if scale != 1.0 || bias.is_some() {
            let d = logits.data_mut();
            match bias {
                Some(b) => d
                    .iter_mut()
                    .zip(b.data())
                    .for_each(|(x, b)| *x = *x * scale + b),
                None => d.iter_mut().for_each(|x| *x *= scale),
            }
        }
        self.softmax(&mut logits);
        logits
    }

    /// Softmax over the last axis of logits `x` `[B, H, Q, K]`, in place, of
    /// `scale * x + MASK_BIAS * (mask[b, k] - 1) + bias[h, q, k]` (added in this order);
    /// `bias` `[H, Q, K]` is shared by the batch, `mask` is `[B, K]`. A row that is all
    /// `-inf` becomes all zeros. The models reach it through `gated_attention`; this op is
    /// the reference of the CUDA softmax kernel (`kernels/cuda/softmax.cu`).
    fn masked_softmax(
        &self,
        x: &mut Tensor,
        bias: Option<&Tensor>,
        mask: Option<&Tensor>,
        scale: f32,
    ) {
        let (_, h, nq, nk) = masked_softmax_dims(x, bias, mask);
        for (row, r) in x.data_mut().chunks_mut(nk.max(1)).enumerate() {
            let (b, hq) = (row / (h * nq), row % (h * nq));
            for (j, v) in r.iter_mut().enumerate() {
                *v *= scale;
                if let Some(m) = mask {
                    *v += MASK_BIAS * (m.data()[b * nk + j] - 1.0);
                }
                if let Some(t) = bias {
                    *v += t.data()[hq * nk + j];
                }
            }
        }
        self.softmax(x);
    }

    /// `out[i, j] = a[i] + b[j]`: `a`, `b` `[L, C]` → `[L, L, C]` (AF2's input embedding of the
    /// pair from two projections of the target features).
    fn outer_sum(&self, a: &Tensor, b: &Tensor) -> Tensor {
        outer_sum(a, b)
    }

    /// A one-hot linear layer by lookup: `one_hot(classes) w + b`, row `classes[..]` of `w`
    /// `[K, C]` plus `b` `[C]` (`b` alone for a negative class; classes are small integers held
    /// as f32) → `classes.shape() + [C]` (AF2's relative position and recycled distance
    /// embeddings).
    fn one_hot_linear(&self, classes: &Tensor, w: &Tensor, b: &Tensor) -> Tensor {
        one_hot_linear(classes, w, b)
    }

    /// `gate[b, n, c] = sigmoid(gate[b, n, c]) * values[b, c]` in place: gate logits `[B, N, C]`,
    /// one row of values `[B, C]` per batch row (global attention's gating, Algorithm 19
    /// line 6, where each batch row has one attention result for all its positions).
    fn broadcast_sigmoid_gate(&self, gate: &mut Tensor, values: &Tensor) {
        broadcast_sigmoid_gate(gate, values);
    }

    /// Expectations under each row's softmax: logits `[.., n]` and values `[V, n]` (V at most
    /// [`crate::MAX_EXPECTATIONS`]) → `[.., V]`, `out[.., v] = sum_k softmax(logits)_k
    /// values[v, k]`, in fp32 whatever precision the GEMMs use (AF2's confidence metrics: the
    /// expected pLDDT bin, aligned error and TM term of each row of bin logits).
    fn softmax_expectations(&self, logits: &Tensor, values: &Tensor) -> Tensor {
        softmax_expectations(logits, values)
    }

    /// Invariant point attention's weights ([`PointAttention`]) in place over the scalar
    /// logits `x` `[H, N, N]`: the point, pair and mask terms and the softmax in one pass.
    fn point_attention_weights(&self, x: &mut Tensor, a: &PointAttention<'_>) {
        point_attention_weights(x, a);
    }

    /// Fused gated attention ([`GatedAttention`]) → `[B, Q, H, Dv]`, never materialising
    /// the whole `[B, H, Q, K]` logits (the CPU backend holds a block of queries' logits per
    /// thread; the CUDA kernel streams key tiles through an online softmax and holds none).
    fn gated_attention(&self, a: &GatedAttention<'_>) -> Tensor;

    /// The whole attention module ([`AttentionParams`]) as one op: `q_data` `[B, Q, q_in]` and
    /// `m_data` `[B, K, m_in]` → `[B, Q, out]`, with the key mask `[B, K]` and pair bias
    /// `[H, Q, K]` of [`GatedAttention`] and its scale `key_dim^-0.5`. By default the
    /// projections, the fused [`Backend::gated_attention`] and the output projection one after
    /// another; a device backend keeps the projections on the device.
    fn attention(
        &self,
        p: &AttentionParams<'_>,
        q_data: &Tensor,
        m_data: &Tensor,
        key_mask: Option<&Tensor>,
        pair_bias: Option<&Tensor>,
    ) -> Tensor {
        attention_by_ops(self, p, q_data, m_data, key_mask, pair_bias)
    }

    /// A transition block (AF2 Algorithms 9 and 15) as one op: layer norm, `first`, ReLU,
    /// `second`, over the last axis of `x` `[.., c]` → `[.., c]` (the caller adds the
    /// residual). By default the four ops one after another; a device backend keeps the
    /// hidden activation on the device.
    fn transition(
        &self,
        x: &Tensor,
        norm: &NormParams<'_>,
        first: &LinearParams<'_>,
        second: &LinearParams<'_>,
    ) -> Tensor {
        let x = self.layer_norm(x, norm.gamma, norm.beta, norm.eps); // [.., c]
        let mut h = self.linear(&x, first.w, Some(first.b)); // [.., hidden]
        self.activate(&mut h, Activation::Relu);
        self.linear(&h, second.w, Some(second.b)) // [.., c]
    }

    /// The outer product mean (AF2 Algorithm 10) as one fused op, where the backend has one:
    /// `msa` `[S, L, c_m]` and its mask `[S, L]` → the pair update `[L, L, c_z]`, with the
    /// output bias added before dividing by `OUTER_PRODUCT_NORM_EPS + sum_s mask[s, i]
    /// mask[s, j]` (as the official code). `None`: the caller composes it from the other ops
    /// (the CPU backend, which the engine's own orders and chunking serve better).
    fn outer_product_mean(
        &self,
        _msa: &Tensor,
        _mask: &Tensor,
        _p: &OuterProductMeanParams<'_>,
    ) -> Option<Tensor> {
        None
    }

    /// The whole triangle multiplicative update as one fused op: pair `z` `[L, L, C]` →
    /// the update `[L, L, C]` (the caller adds the residual). `mask` `[L, L]` zeroes the
    /// projections of masked pairs.
    fn triangle_multiplication(
        &self,
        z: &Tensor,
        p: &TriangleMultiplicationParams<'_>,
        mask: Option<&Tensor>,
        dir: TriangleDirection,
    ) -> Tensor;
}

/// [`Backend::attention`] as its ops one after another: the projections, the fused
/// [`Backend::gated_attention`] and the output projection.
pub fn attention_by_ops(
    be: &(impl Backend + ?Sized),
    p: &AttentionParams<'_>,
    q_data: &Tensor,
    m_data: &Tensor,
    key_mask: Option<&Tensor>,
    pair_bias: Option<&Tensor>,
) -> Tensor {
    let (b, nq, nk, h) = (q_data.dim(0), q_data.dim(1), m_data.dim(1), p.heads);
    assert_eq!(m_data.dim(0), b, "attention: q/m batch");
    let heads = |t: Tensor, n: usize, width: usize| {
        t.reshape(&[b, n, h, width]).expect("projection widths")
    };
    let q = heads(be.linear(q_data, p.query, None), nq, p.key_dim); // [B, Q, H, Dk]
    let k = heads(be.linear(m_data, p.key, None), nk, p.key_dim); // [B, K, H, Dk]
    let v = heads(be.linear(m_data, p.value, None), nk, p.value_dim); // [B, K, H, Dv]
    let gate = p
        .gating
        .map(|g| heads(be.linear(q_data, g.w, Some(g.b)), nq, p.value_dim)); // [B, Q, H, Dv]
    let avg = be.gated_attention(&GatedAttention {
        q: &q,
        k: &k,
        v: &v,
        bias: pair_bias,
        mask: key_mask,
        gate: gate.as_ref(),
        scale: attention_scale(p.key_dim),
    }); // [B, Q, H, Dv]
    drop((q, k, v, gate));
    let avg = avg.reshape(&[b, nq, h * p.value_dim]).expect("same size"); // [B, Q, H*Dv]
    be.linear(&avg, p.output.w, Some(p.output.b)) // [B, Q, out]
}

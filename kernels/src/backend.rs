//! The op interface every backend implements. Models call only these ops (plus
//! element-wise maps on host tensors), so a new backend never touches model code.

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
}

/// Logit bias per unit of missing key mask: masked keys get `MASK_BIAS * (mask - 1)` added to
/// their logits (AlphaFold2's masking: a fully masked row attends uniformly, never NaN).
pub const MASK_BIAS: f32 = 1e9;

/// Inputs of the fused gated attention op, AlphaFold2's gated multi-head attention core (MSA
/// row attention with pair bias, MSA column attention, triangle attention around the
/// starting and ending node): for every batch row `b`, head `h` and query `i`
///
/// `logit[j] = (scale * q[b,h,i]) . k[b,h,j] + MASK_BIAS * (mask[b,j] - 1) + bias[h,i,j]`
/// (added in this order), `out[b,h,i] = sigmoid(gate[b,h,i]) * sum_j softmax(logit)[j] v[b,h,j]`.
#[derive(Clone, Copy, Debug)]
pub struct GatedAttention<'a> {
    /// Queries `[B, H, Q, D]`, not yet scaled.
    pub q: &'a Tensor,
    /// Keys `[B, H, K, D]`.
    pub k: &'a Tensor,
    /// Values `[B, H, K, Dv]`.
    pub v: &'a Tensor,
    /// Pair bias `[H, Q, K]`, shared by every batch row.
    pub bias: Option<&'a Tensor>,
    /// Key mask `[B, K]`: 1 keeps a key, 0 masks it.
    pub mask: Option<&'a Tensor>,
    /// Gate logits `[B, H, Q, Dv]`; the output is multiplied by their sigmoid.
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
            "gated attention: q, k, v must be [B, H, N, D]"
        );
        let (b, h, nq, d) = (qs[0], qs[1], qs[2], qs[3]);
        let (nk, dv) = (ks[2], vs[3]);
        assert!(
            ks == [b, h, nk, d] && vs == [b, h, nk, dv],
            "gated attention: q {qs:?}, k {ks:?}, v {vs:?}"
        );
        if let Some(t) = self.bias {
            assert_eq!(t.shape(), &[h, nq, nk], "gated attention: bias");
        }
        if let Some(t) = self.mask {
            assert_eq!(t.shape(), &[b, nk], "gated attention: mask");
        }
        if let Some(t) = self.gate {
            assert_eq!(t.shape(), &[b, h, nq, dv], "gated attention: gate");
        }
        (b, h, nq, nk, d, dv)
    }
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
    /// `-inf` becomes all zeros.
    fn masked_softmax(
        &self,
        x: &mut Tensor,
        bias: Option<&Tensor>,
        mask: Option<&Tensor>,
        scale: f32,
    ) {
        let s = x.shape().to_vec();
        assert_eq!(s.len(), 4, "masked_softmax: logits must be [B, H, Q, K]");
        let (h, nq, nk) = (s[1], s[2], s[3]);
        if let Some(t) = bias {
            assert_eq!(t.shape(), &[h, nq, nk], "masked_softmax: bias");
        }
        if let Some(t) = mask {
            assert_eq!(t.shape(), &[s[0], nk], "masked_softmax: mask");
        }
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

    /// Fused gated attention ([`GatedAttention`]) → `[B, H, Q, Dv]`. This default
    /// materialises the logits of one batch row at a time (`[H, Q, K]`); backends override
    /// it with a streaming kernel (the CPU backend's tiles keys with an online softmax, as
    /// the CUDA kernel does).
    fn gated_attention(&self, a: &GatedAttention<'_>) -> Tensor {
        let (b, h, nq, nk, d, dv) = a.dims();
        let mut out = Vec::with_capacity(b * h * nq * dv);
        let row = |t: &Tensor, bi: usize, n: usize, c: usize| {
            Tensor::new(
                &[h, n, c],
                t.data()[bi * h * n * c..(bi + 1) * h * n * c].to_vec(),
            )
            .expect("batch row")
        };
        for bi in 0..b {
            let mut q = row(a.q, bi, nq, d);
            q.data_mut().iter_mut().for_each(|v| *v *= a.scale);
            let k = row(a.k, bi, nk, d);
            let logits = self.batched_matmul(MatView::n(&q), MatView::t(&k)); // [H, Q, K]
            let mut logits = logits.reshape(&[1, h, nq, nk]).expect("same size");
            let mask = a.mask.map(|m| {
                Tensor::new(&[1, nk], m.data()[bi * nk..(bi + 1) * nk].to_vec()).expect("mask row")
            });
            self.masked_softmax(&mut logits, a.bias, mask.as_ref(), 1.0);
            let p = logits.reshape(&[h, nq, nk]).expect("same size");
            let mut o = self.batched_matmul(MatView::n(&p), MatView::n(&row(a.v, bi, nk, dv)));
            if let Some(g) = a.gate {
                let mut g = row(g, bi, nq, dv);
                self.activate(&mut g, Activation::Sigmoid);
                o.data_mut()
                    .iter_mut()
                    .zip(g.data())
                    .for_each(|(o, g)| *o *= g);
            }
            out.extend_from_slice(o.data());
        }
        Tensor::new(&[b, h, nq, dv], out).expect("attention output")
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

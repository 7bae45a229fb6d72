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

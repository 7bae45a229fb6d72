//! The attention weights of invariant point attention (AF2 Algorithm 22, lines 7–9; IgFold's
//! IPA has the same terms with its own scales and masking): the scalar logits from a GEMM,
//! then the point, pair and mask terms and the softmax in one pass over each row.

use rayon::prelude::*;

use crate::{softmax_row, Tensor};

/// How a pair with `mask[i] * mask[j] == 0` is treated.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum PairMasking {
    /// `logit += value * (1 - mask[i] * mask[j])` (AF2: `-1e5`).
    Shift(f32),
    /// `logit = value` (IgFold: `-f32::MAX`, so a fully masked row attends uniformly).
    Fill(f32),
}

/// Inputs of [`Backend::point_attention_weights`](crate::Backend::point_attention_weights):
/// for head `h`, query `i` and key `j` the logit
///
/// `scalar_scale * x[h,i,j] - point_weights[h] * |q_points[h,i] - k_points[h,j]|^2
///  + pair_scale * pair_bias[i,j,h]`
///
/// (added in this order, the squared distance summed over every coordinate of the head's
/// points), masked as `masking` says where `mask` is given, then the softmax over `j`.
#[derive(Clone, Copy, Debug)]
pub struct PointAttention<'a> {
    /// Query points in the global frame `[H, N, P*3]`.
    pub q_points: &'a Tensor,
    /// Key points in the global frame `[H, N, P*3]`.
    pub k_points: &'a Tensor,
    /// Weight of each head's squared point distance `[H]`.
    pub point_weights: &'a Tensor,
    pub scalar_scale: f32,
    /// Pair bias `[N, N, H]` (a linear layer's output on the pair representation).
    pub pair_bias: &'a Tensor,
    pub pair_scale: f32,
    /// Residue mask `[N]`, 1 or 0.
    pub mask: Option<&'a Tensor>,
    pub masking: PairMasking,
}

/// Most point coordinates per head ([`PointAttention::q_points`]' last axis) the CUDA kernel
/// holds in registers (`FF_IPA_MAX_COORDS` in `point_attention.cu`): AF2 and IgFold use 12.
pub const MAX_POINT_COORDS: usize = 24;

impl PointAttention<'_> {
    /// `(H, N, P*3)`, after checking every shape against the logits `x`.
    pub fn dims(&self, x: &Tensor) -> (usize, usize, usize) {
        let s = x.shape();
        assert!(
            s.len() == 3 && s[1] == s[2],
            "point attention: logits {s:?} must be [H, N, N]"
        );
        let (h, n) = (s[0], s[1]);
        let c = self.q_points.dim(-1);
        assert!(
            self.q_points.shape() == [h, n, c] && self.k_points.shape() == [h, n, c],
            "point attention: points {:?} and {:?} must be [H, N, P*3] for logits {s:?}",
            self.q_points.shape(),
            self.k_points.shape()
        );
        assert!(
            c <= MAX_POINT_COORDS,
            "point attention: {c} point coordinates per head, at most {MAX_POINT_COORDS}"
        );
        assert_eq!(self.point_weights.shape(), &[h], "point attention: weights");
        assert_eq!(
            self.pair_bias.shape(),
            &[n, n, h],
            "point attention: pair bias"
        );
        if let Some(m) = self.mask {
            assert_eq!(m.shape(), &[n], "point attention: mask");
        }
        (h, n, c)
    }
}

/// [`PointAttention`]'s weights in place over `x` `[H, N, N]` on the CPU: the reference of the
/// CUDA kernel (`kernels/cuda/point_attention.cu`).
pub fn point_attention_weights(x: &mut Tensor, a: &PointAttention<'_>) {
    let (h, n, c) = a.dims(x);
    let (qp, kp, w) = (a.q_points.data(), a.k_points.data(), a.point_weights.data());
    let (bias, mask) = (a.pair_bias.data(), a.mask.map(Tensor::data));
    x.data_mut()
        .par_chunks_mut(n.max(1))
        .enumerate()
        .for_each(|(row, logits)| {
            let (hh, i) = (row / n, row % n);
            let q = &qp[row * c..][..c];
            for (j, v) in logits.iter_mut().enumerate() {
                let k = &kp[(hh * n + j) * c..][..c];
                let dist: f32 = q.iter().zip(k).map(|(a, b)| (a - b) * (a - b)).sum();
                *v = a.scalar_scale * *v - w[hh] * dist + a.pair_scale * bias[(i * n + j) * h + hh];
                if let Some(m) = mask {
                    let kept = m[i] * m[j];
                    match a.masking {
                        PairMasking::Shift(value) => *v += value * (1.0 - kept),
                        PairMasking::Fill(value) if kept == 0.0 => *v = value,
                        PairMasking::Fill(_) => {}
                    }
                }
            }
            softmax_row(logits);
        });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two residues, one head, one point each: every term of the logit by hand.
    #[test]
    fn logits_by_hand_and_both_maskings() {
        let t = |shape: &[usize], v: Vec<f32>| Tensor::new(shape, v).unwrap();
        let x = t(&[1, 2, 2], vec![1.0, 2.0, 3.0, 4.0]);
        let q_points = t(&[1, 2, 3], vec![0.0, 0.0, 0.0, 1.0, 0.0, 0.0]);
        let k_points = t(&[1, 2, 3], vec![0.0, 2.0, 0.0, 1.0, 0.0, 0.0]);
        let point_weights = t(&[1], vec![0.5]);
        let pair_bias = t(&[2, 2, 1], vec![0.1, 0.2, 0.3, 0.4]);
        let mask = t(&[2], vec![1.0, 0.0]);
        let args = |mask, masking| PointAttention {
            q_points: &q_points,
            k_points: &k_points,
            point_weights: &point_weights,
            scalar_scale: 2.0,
            pair_bias: &pair_bias,
            pair_scale: 10.0,
            mask,
            masking,
        };
        let weights = |a: &PointAttention<'_>| {
            let mut y = x.clone();
            point_attention_weights(&mut y, a);
            y.data().to_vec()
        };
        // Squared distances: (0,0) 4, (0,1) 1, (1,0) 5, (1,1) 0.
        let logits = [2.0 - 2.0 + 1.0, 4.0 - 0.5 + 2.0, 6.0 - 2.5 + 3.0, 8.0 + 4.0];
        let softmax = |a: f32, b: f32| [1.0 / (1.0 + (b - a).exp()), 1.0 / (1.0 + (a - b).exp())];
        let want = [softmax(logits[0], logits[1]), softmax(logits[2], logits[3])].concat();
        let close = |got: Vec<f32>, want: &[f32]| {
            for (g, w) in got.iter().zip(want) {
                assert!((g - w).abs() < 1e-6, "{got:?} vs {want:?}");
            }
        };
        close(weights(&args(None, PairMasking::Fill(-f32::MAX))), &want);
        // Residue 1 masked: residue 0 attends to itself alone; residue 1's row is uniform
        // when filled, and keeps its own logits' softmax when shifted (every key alike).
        close(
            weights(&args(Some(&mask), PairMasking::Fill(-f32::MAX))),
            &[1.0, 0.0, 0.5, 0.5],
        );
        close(
            weights(&args(Some(&mask), PairMasking::Shift(-1e5))),
            &[1.0, 0.0, want[2], want[3]],
        );
    }
}

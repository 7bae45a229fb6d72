//! Expectations under a row's softmax on the host: the CPU twin of the CUDA kernel
//! `softmax_expectations_f32` ([`crate::Backend::softmax_expectations`]).

use rayon::prelude::*;

use crate::{softmax_row, Tensor};

/// Most value rows one call takes (the kernel's registers hold one sum per row: its
/// `FF_MAX_EXPECTATIONS`).
pub const MAX_EXPECTATIONS: usize = 4;

/// `out[.., v] = sum_k softmax(logits[.., :])_k values[v, k]`: logits `[.., n]`, values
/// `[V, n]` → `[.., V]`, in f32.
pub fn softmax_expectations(logits: &Tensor, values: &Tensor) -> Tensor {
    let (n, v) = softmax_expectations_dims(logits, values);
    let mut shape = logits.shape().to_vec();
    *shape.last_mut().expect("checked") = v;
    let mut out = Tensor::zeros(&shape);
    let values = values.data();
    out.data_mut()
        .par_chunks_mut(v.max(1))
        .zip(logits.data().par_chunks(n.max(1)))
        .for_each_init(Vec::new, |p, (dst, row)| {
            // one buffer per rayon task, not one allocation per row
            p.clear();
            p.extend_from_slice(row);
            softmax_row(p);
            for (d, weights) in dst.iter_mut().zip(values.chunks(n.max(1))) {
                *d = p.iter().zip(weights).map(|(p, w)| p * w).sum();
            }
        });
    out
}

/// `(n, V)` of [`softmax_expectations`]' inputs, after checking them.
pub(crate) fn softmax_expectations_dims(logits: &Tensor, values: &Tensor) -> (usize, usize) {
    let n = logits.dim(-1);
    let vs = values.shape();
    assert!(
        vs.len() == 2 && vs[1] == n && vs[0] <= MAX_EXPECTATIONS,
        "softmax_expectations: values {vs:?} for logits {:?} (at most {MAX_EXPECTATIONS} rows)",
        logits.shape()
    );
    (n, vs[0])
}

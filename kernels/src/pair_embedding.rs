//! The pair representation's embeddings that need no GEMM (AF2 Algorithms 3, 4 and 32): an
//! outer sum of two per-residue projections, and one-hot linear layers by lookup. Pair-sized
//! (`[L, L, C]`), so a device backend builds them where the pair representation lives.

use rayon::prelude::*;

use crate::{Tensor, PAR_BLOCK};

/// `out[i, j] = a[i] + b[j]`: `a`, `b` `[L, C]` → `[L, L, C]`.
pub fn outer_sum(a: &Tensor, b: &Tensor) -> Tensor {
    let (l, c) = outer_sum_dims(a, b);
    let (a, b) = (a.data(), b.data());
    let mut out = Tensor::zeros(&[l, l, c]);
    out.data_mut()
        .par_chunks_mut((l * c).max(1))
        .enumerate()
        .for_each(|(i, row)| {
            for (dst, bj) in row.chunks_mut(c.max(1)).zip(b.chunks(c.max(1))) {
                for ((d, x), y) in dst.iter_mut().zip(&a[i * c..(i + 1) * c]).zip(bj) {
                    *d = x + y;
                }
            }
        });
    out
}

/// `(L, C)` of [`outer_sum`]'s inputs, after checking them.
pub(crate) fn outer_sum_dims(a: &Tensor, b: &Tensor) -> (usize, usize) {
    assert!(
        a.shape().len() == 2 && a.shape() == b.shape(),
        "outer sum: {:?} and {:?} must be one [L, C]",
        a.shape(),
        b.shape()
    );
    (a.dim(0), a.dim(1))
}

/// `out[..., :] = one_hot(classes[...]) w + b`: row `classes[...]` of `w` `[K, C]` plus `b`
/// `[C]`, or `b` alone where the class is negative (the all-zero one-hot). `classes` holds
/// small integers as f32. → `classes.shape() + [C]`.
pub fn one_hot_linear(classes: &Tensor, w: &Tensor, b: &Tensor) -> Tensor {
    let (k, c) = one_hot_linear_dims(w, b);
    let (w, b) = (w.data(), b.data());
    let mut shape = classes.shape().to_vec();
    shape.push(c);
    let mut out = Tensor::zeros(&shape);
    let per_block = (PAR_BLOCK / c.max(1)).max(1);
    out.data_mut()
        .par_chunks_mut((per_block * c).max(1))
        .zip(classes.data().par_chunks(per_block))
        .for_each(|(rows, classes)| {
            for (dst, &class) in rows.chunks_mut(c.max(1)).zip(classes) {
                if class >= 0.0 {
                    let row = class as usize;
                    assert!(row < k, "one-hot class {class} of {k}");
                    for ((d, x), y) in dst.iter_mut().zip(&w[row * c..(row + 1) * c]).zip(b) {
                        *d = x + y;
                    }
                } else {
                    dst.copy_from_slice(b);
                }
            }
        });
    out
}

/// `(K, C)` of [`one_hot_linear`]'s table, after checking the shapes.
pub(crate) fn one_hot_linear_dims(w: &Tensor, b: &Tensor) -> (usize, usize) {
    assert!(
        w.shape().len() == 2 && b.shape() == [w.dim(1)],
        "one-hot linear: weights {:?} and bias {:?}",
        w.shape(),
        b.shape()
    );
    (w.dim(0), w.dim(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outer_sums_and_lookups_by_hand() {
        let t = |shape: &[usize], v: Vec<f32>| Tensor::new(shape, v).unwrap();
        let a = t(&[2, 2], vec![1.0, 2.0, 3.0, 4.0]);
        let b = t(&[2, 2], vec![10.0, 20.0, 30.0, 40.0]);
        let sum = outer_sum(&a, &b);
        assert_eq!(sum.shape(), &[2, 2, 2]);
        assert_eq!(
            sum.data(),
            &[11.0, 22.0, 31.0, 42.0, 13.0, 24.0, 33.0, 44.0]
        );
        let w = t(&[3, 2], vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        let bias = t(&[2], vec![0.5, -0.5]);
        let classes = t(&[2, 2], vec![2.0, -1.0, 0.0, 1.0]);
        let out = one_hot_linear(&classes, &w, &bias);
        assert_eq!(out.shape(), &[2, 2, 2]);
        assert_eq!(out.data(), &[5.5, 5.5, 0.5, -0.5, 1.5, 1.5, 3.5, 3.5]);
    }
}

//! Float reductions in 16 independent lanes. A plain `iter().sum()` over f32 is one serial
//! chain of dependent adds (LLVM may not reorder float sums), four cycles per element; these
//! keep 16 partial results in two vector registers, as XLA's reductions do.

const LANES: usize = 16;

/// Folds `x` into 16 lanes with `f`, then the lanes pairwise (a tree, which vectorises) and
/// the tail in order.
#[inline(always)]
fn fold_lanes(x: &[f32], init: f32, f: impl Fn(f32, f32) -> f32) -> f32 {
    let mut acc = [init; LANES];
    let chunks = x.chunks_exact(LANES);
    let tail = chunks.remainder();
    for c in chunks {
        for (a, v) in acc.iter_mut().zip(c) {
            *a = f(*a, *v);
        }
    }
    tail.iter().fold(fold_tree(acc, &f), |a, &v| f(a, v))
}

/// The 16 lanes folded in halves: 8 + 8, 4 + 4, 2 + 2, 1 + 1.
#[inline(always)]
fn fold_tree(mut acc: [f32; LANES], f: impl Fn(f32, f32) -> f32) -> f32 {
    let mut width = LANES / 2;
    while width > 0 {
        for i in 0..width {
            acc[i] = f(acc[i], acc[i + width]);
        }
        width /= 2;
    }
    acc[0]
}

/// The larger of `a` and `v`, `a` when `v` is NaN: one `maxps`, where `f32::max`'s NaN rule
/// costs a compare and a blend on a serial chain.
#[inline(always)]
fn greater(a: f32, v: f32) -> f32 {
    if v > a {
        v
    } else {
        a
    }
}

/// `sum(x)`.
#[inline(always)]
pub fn sum(x: &[f32]) -> f32 {
    fold_lanes(x, 0.0, |a, v| a + v)
}

/// `max(x)`; `-inf` for an empty slice. NaNs are skipped, as `f32::max` skips them.
#[inline(always)]
pub fn max(x: &[f32]) -> f32 {
    fold_lanes(x, f32::NEG_INFINITY, greater)
}

/// `x += y` element-wise, returning `max(x)` after the addition (one pass; NaNs skipped).
#[inline(always)]
pub fn add_max(x: &mut [f32], y: &[f32]) -> f32 {
    assert_eq!(x.len(), y.len(), "add_max: lengths differ");
    let mut acc = [f32::NEG_INFINITY; LANES];
    let mut xs = x.chunks_exact_mut(LANES);
    let mut ys = y.chunks_exact(LANES);
    for (c, d) in (&mut xs).zip(&mut ys) {
        for ((a, v), w) in acc.iter_mut().zip(c.iter_mut()).zip(d) {
            *v += w;
            *a = greater(*a, *v);
        }
    }
    let lanes = fold_tree(acc, greater);
    xs.into_remainder()
        .iter_mut()
        .zip(ys.remainder())
        .fold(lanes, |a, (v, w)| {
            *v += w;
            greater(a, *v)
        })
}

/// Replaces every `x` by `f(x)` and returns the sum of the results (one pass).
#[inline(always)]
pub fn map_sum(x: &mut [f32], f: impl Fn(f32) -> f32) -> f32 {
    let mut acc = [0f32; LANES];
    let mut chunks = x.chunks_exact_mut(LANES);
    for c in &mut chunks {
        for (a, v) in acc.iter_mut().zip(c.iter_mut()) {
            *v = f(*v);
            *a += *v;
        }
    }
    let tail = chunks.into_remainder().iter_mut().fold(0f32, |a, v| {
        *v = f(*v);
        a + *v
    });
    fold_tree(acc, |a, b| a + b) + tail
}

/// `sum((x - mean)^2)`.
#[inline(always)]
pub fn sum_sq_dev(x: &[f32], mean: f32) -> f32 {
    let mut acc = [0f32; LANES];
    let chunks = x.chunks_exact(LANES);
    let tail = chunks.remainder();
    for c in chunks {
        for (a, v) in acc.iter_mut().zip(c) {
            *a += (v - mean) * (v - mean);
        }
    }
    fold_tree(acc, |a, b| a + b) + tail.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reductions_match_f64() {
        for n in [0usize, 1, 15, 16, 17, 128, 1000] {
            let x: Vec<f32> = (0..n)
                .map(|i| ((i * 37 % 101) as f32 - 50.0) / 7.0)
                .collect();
            let s64: f64 = x.iter().map(|&v| v as f64).sum();
            assert!((sum(&x) as f64 - s64).abs() < 1e-4, "sum of {n}");
            let m = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            assert_eq!(max(&x), m, "max of {n}");
            let mean = if n > 0 { (s64 / n as f64) as f32 } else { 0.0 };
            let v64: f64 = x.iter().map(|&v| ((v - mean) as f64).powi(2)).sum();
            assert!(
                (sum_sq_dev(&x, mean) as f64 - v64).abs() < 1e-3 * v64.max(1.0),
                "var of {n}"
            );
        }
        assert_eq!(max(&[1.0, f32::NAN, 3.0]), 3.0);
        for n in [0usize, 5, 16, 40] {
            let mut x: Vec<f32> = (0..n).map(|i| ((i * 29 % 31) as f32) - 15.0).collect();
            let y: Vec<f32> = (0..n).map(|i| ((i * 7 % 13) as f32) * 0.5).collect();
            let want: Vec<f32> = x.iter().zip(&y).map(|(a, b)| a + b).collect();
            let m = add_max(&mut x, &y);
            assert_eq!(x, want, "add_max sums of {n}");
            assert_eq!(m, max(&want), "add_max max of {n}");
        }
        let mut x: Vec<f32> = (0..37).map(|i| i as f32).collect();
        assert_eq!(map_sum(&mut x, |v| 2.0 * v), 2.0 * 666.0);
        assert_eq!(x[36], 72.0);
    }
}

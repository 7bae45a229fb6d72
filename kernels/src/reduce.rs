//! Float reductions in 16 independent lanes. A plain `iter().sum()` over f32 is one serial
//! chain of dependent adds (LLVM may not reorder float sums), four cycles per element; these
//! keep 16 partial results in two vector registers, as XLA's reductions do.

const LANES: usize = 16;

/// Folds `x` into 16 lanes with `f`, then the lanes and the tail in order.
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
    let lanes = acc.iter().fold(init, |a, &v| f(a, v));
    tail.iter().fold(lanes, |a, &v| f(a, v))
}

/// `sum(x)`.
#[inline(always)]
pub fn sum(x: &[f32]) -> f32 {
    fold_lanes(x, 0.0, |a, v| a + v)
}

/// `max(x)`; `-inf` for an empty slice. NaNs are skipped, as `f32::max` skips them.
#[inline(always)]
pub fn max(x: &[f32]) -> f32 {
    fold_lanes(x, f32::NEG_INFINITY, f32::max)
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
    sum(&acc) + tail
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
    sum(&acc) + tail.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>()
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
        let mut x: Vec<f32> = (0..37).map(|i| i as f32).collect();
        assert_eq!(map_sum(&mut x, |v| 2.0 * v), 2.0 * 666.0);
        assert_eq!(x[36], 72.0);
    }
}

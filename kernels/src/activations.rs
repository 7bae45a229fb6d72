//! Scalar activation functions (applied element-wise by the backends and models).

/// Exact (erf) GELU, as PyTorch's default `nn.GELU`.
#[inline]
pub fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x / std::f32::consts::SQRT_2))
}

#[inline]
pub fn relu(x: f32) -> f32 {
    x.max(0.0)
}

/// Logistic sigmoid, through [`exp`].
#[inline(always)]
pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp(-x))
}

/// `e^x` to about 2 ulp, branch-free so that loops over it vectorise (libm's `expf` is a
/// call per element). Cephes' polynomial after reducing by `n ln 2`, in fused multiply-adds
/// ([`fma`]); inputs are clamped to [-87, 88], so far-negative logits give ~1e-38 rather
/// than 0.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    const ROUND: f32 = 12_582_912.0; // 1.5 * 2^23: adding it rounds to an integer
    let x = x.clamp(-87.0, 88.0);
    let n = (x * LOG2E + ROUND) - ROUND;
    let r = fma(-n, LN2_LO, fma(-n, LN2_HI, x));
    let p = fma(1.987_569_1e-4, r, 1.398_199_9e-3);
    let p = fma(p, r, 8.333_452e-3);
    let p = fma(p, r, 4.166_579_6e-2);
    let p = fma(p, r, 1.666_666_5e-1);
    let p = fma(p, r, 0.5);
    let y = fma(p * r, r, r) + 1.0;
    // 2^n without a float-to-int conversion: n + 127 lands in the low mantissa bits of
    // n + 127 + 2^23, and shifting them into the exponent field drops the rest.
    let biased = (n + (127.0 + 8_388_608.0)).to_bits();
    y * f32::from_bits(biased.wrapping_shl(23))
}

/// `a * b + c`, fused where the target has FMA (x86-64-v3, this build's baseline); a
/// target without it would call libm's `fmaf` per element and stop vectorising.
#[inline(always)]
fn fma(a: f32, b: f32, c: f32) -> f32 {
    if cfg!(target_feature = "fma") {
        a.mul_add(b, c)
    } else {
        a * b + c
    }
}

/// `log(1 + e^x)` computed without overflow, with PyTorch's threshold of 20.
#[inline]
pub fn softplus(x: f32) -> f32 {
    if x > 20.0 {
        x
    } else {
        x.exp().ln_1p()
    }
}

/// Error function in f64 (Abramowitz-Stegun 7.1.26 is too coarse for 1e-6 agreement,
/// so this uses the libm-style rational approximation via `erfc`).
#[inline]
fn erf(x: f32) -> f32 {
    libm_erf(x as f64) as f32
}

/// erf(x) accurate to ~1e-15 (W. J. Cody's rational Chebyshev approximation).
#[allow(clippy::excessive_precision)] // coefficients kept as published
fn libm_erf(x: f64) -> f64 {
    let ax = x.abs();
    let r = if ax < 0.5 {
        const P: [f64; 5] = [
            3.209_377_589_138_469_4e3,
            3.774_852_376_853_020_2e2,
            1.138_641_541_510_501_6e2,
            3.161_123_743_870_565_6,
            1.857_777_061_846_031_5e-1,
        ];
        const Q: [f64; 4] = [
            2.844_236_833_439_170_6e3,
            1.282_616_526_077_372_3e3,
            2.440_246_379_344_441_7e2,
            2.360_129_095_234_412_1e1,
        ];
        let z = x * x;
        let num = (((P[4] * z + P[3]) * z + P[2]) * z + P[1]) * z + P[0];
        let den = (((z + Q[3]) * z + Q[2]) * z + Q[1]) * z + Q[0];
        return x * num / den;
    } else if ax < 4.0 {
        const P: [f64; 9] = [
            1.230_339_354_797_997_2e3,
            2.051_078_377_826_071_6e3,
            1.712_047_612_634_070_7e3,
            8.819_522_212_417_690_9e2,
            2.986_351_381_974_001_3e2,
            6.611_919_063_714_163e1,
            8.883_149_794_388_376,
            5.641_884_969_886_700_9e-1,
            2.153_115_354_744_038_3e-8,
        ];
        const Q: [f64; 8] = [
            1.230_339_354_803_749_4e3,
            3.439_367_674_143_721_6e3,
            4.362_619_090_143_247e3,
            3.290_799_235_733_459_7e3,
            1.621_389_574_566_690_3e3,
            5.371_811_018_620_098_6e2,
            1.176_939_508_913_125e2,
            1.574_492_611_070_983_5e1,
        ];
        let mut num = P[8];
        for p in P[..8].iter().rev() {
            num = num * ax + p;
        }
        let mut den = 1.0;
        for q in Q.iter().rev() {
            den = den * ax + q;
        }
        (-ax * ax).exp() * num / den
    } else {
        const P: [f64; 6] = [
            -6.587_491_615_298_378e-4,
            -1.608_378_514_874_227_5e-2,
            -1.257_817_261_112_292_6e-1,
            -3.603_448_999_498_044_4e-1,
            -3.053_266_349_612_323_4e-1,
            -1.631_538_713_730_709_6e-2,
        ];
        const Q: [f64; 5] = [
            2.335_204_976_268_691_8e-3,
            6.051_834_131_244_132e-2,
            5.279_051_029_514_284e-1,
            1.872_952_849_923_460_4,
            2.568_520_192_289_822,
        ];
        let z = 1.0 / (ax * ax);
        let mut num = P[5];
        for p in P[..5].iter().rev() {
            num = num * z + p;
        }
        let mut den = 1.0;
        for q in Q.iter().rev() {
            den = den * z + q;
        }
        let frac_1_sqrt_pi = 0.564_189_583_547_756_3;
        (-ax * ax).exp() / ax * (frac_1_sqrt_pi + z * num / den)
    };
    // r holds erfc(|x|) for |x| >= 0.5
    if x >= 0.0 {
        1.0 - r
    } else {
        r - 1.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erf_matches_known_values() {
        for (x, want) in [
            (0.1, 0.112_462_916_018_284_9),
            (0.5, 0.520_499_877_813_046_5),
            (1.0, 0.842_700_792_949_714_9),
            (2.5, 0.999_593_047_982_555),
            (-1.3, -0.934_007_944_940_652_4),
            (5.0, 0.999_999_999_998_462_5),
        ] {
            assert!((libm_erf(x) - want).abs() < 1e-12, "erf({x})");
        }
    }

    #[test]
    fn exp_is_within_a_few_ulp() {
        let mut worst = 0f32;
        for i in -8700..8800 {
            let x = i as f32 * 0.01 + 0.003;
            let (got, want) = (exp(x), (x as f64).exp() as f32);
            worst = worst.max(((got - want) / want).abs());
        }
        assert!(worst < 3e-7, "relative error {worst}");
        assert!(exp(f32::NEG_INFINITY) < 1e-37);
        assert!((sigmoid(0.0) - 0.5).abs() < 1e-7);
    }

    #[test]
    fn gelu_and_softplus_values() {
        assert!((gelu(1.0) - 0.841_344_7).abs() < 1e-6);
        assert!((gelu(-2.0) + 0.045_500_26).abs() < 1e-6);
        assert!((softplus(0.0) - std::f32::consts::LN_2).abs() < 1e-7);
        assert_eq!(softplus(30.0), 30.0);
    }
}

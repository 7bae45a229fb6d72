//! Inputs, bf16 storage and the comparison shared by the tests.

use ferrofold_kernels::{round_to_bf16, Tensor};

pub const FP32_TOLERANCE: f32 = 1e-4;
pub const BF16_TOLERANCE: f32 = 1e-2;
/// Products of TF32 inputs (10-bit mantissas) summed in fp32.
pub const TF32_TOLERANCE: f32 = 2e-3;
/// Threads per block of the row kernels (four warps, a row each).
pub const ROW_THREADS: u32 = 128;

/// Deterministic values in [-1, 1).
pub fn random(n: usize, seed: u64) -> Vec<f32> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect()
}

pub fn tensor(shape: &[usize], data: Vec<f32>) -> Tensor {
    Tensor::new(shape, data).unwrap()
}

/// Values in a kernel's storage type: fp32, or bf16 (the upper 16 bits after rounding).
pub enum Stored {
    F32(Vec<f32>),
    Bf16(Vec<u16>),
}

impl Stored {
    pub fn new(values: &[f32], bf16: bool) -> Stored {
        if bf16 {
            let bits = values
                .iter()
                .map(|&x| (round_to_bf16(x).to_bits() >> 16) as u16);
            Stored::Bf16(bits.collect())
        } else {
            Stored::F32(values.to_vec())
        }
    }

    pub fn zeros(len: usize, bf16: bool) -> Stored {
        Stored::new(&vec![0.0; len], bf16)
    }

    /// The buffer's address as a kernel argument; 0 (null) when `used` is false.
    pub fn address(&self, used: bool) -> u64 {
        match (used, self) {
            (false, _) => 0,
            (true, Stored::F32(v)) => v.as_ptr() as u64,
            (true, Stored::Bf16(v)) => v.as_ptr() as u64,
        }
    }

    pub fn values(&self) -> Vec<f32> {
        match self {
            Stored::F32(v) => v.clone(),
            Stored::Bf16(v) => v
                .iter()
                .map(|&b| f32::from_bits((b as u32) << 16))
                .collect(),
        }
    }
}

/// What a storage type keeps of `values`.
pub fn as_stored(values: &[f32], bf16: bool) -> Vec<f32> {
    Stored::new(values, bf16).values()
}

/// The kernel name's storage suffix and the tolerance that goes with it.
pub fn storage(bf16: bool) -> (&'static str, f32) {
    if bf16 {
        ("bf16", BF16_TOLERANCE)
    } else {
        ("f32", FP32_TOLERANCE)
    }
}

/// Every `|got - want|` within `tolerance` of `max(|want|, 1)`.
pub fn assert_close(got: &[f32], want: &[f32], tolerance: f32, what: &str) {
    assert_close_above(got, want, tolerance, 1.0, what);
}

/// Every `|got - want|` within `tolerance` of `max(|want|, rms(want), 1)`: for results of
/// several ops in bf16 storage, whose rounding errors scale with the tensor's values, not with
/// each output (a sum that cancels to near 0 keeps its terms' errors).
pub fn assert_close_to_scale(got: &[f32], want: &[f32], tolerance: f32, what: &str) {
    let squares: f64 = want.iter().map(|&w| (w as f64) * (w as f64)).sum();
    let rms = (squares / want.len().max(1) as f64).sqrt() as f32;
    assert_close_above(got, want, tolerance, rms.max(1.0), what);
}

fn assert_close_above(got: &[f32], want: &[f32], tolerance: f32, floor: f32, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    let (worst, at) = got
        .iter()
        .zip(want)
        .map(|(g, w)| (g - w).abs() / w.abs().max(floor))
        .enumerate()
        .fold((0.0f32, 0), |(m, i), (j, e)| {
            if e > m || e.is_nan() {
                (e, j)
            } else {
                (m, i)
            }
        });
    assert!(
        worst <= tolerance,
        "{what}: error {worst:e} at {at} (got {}, want {}), tolerance {tolerance:e}",
        got[at],
        want[at]
    );
}

/// The pointer of a buffer as a kernel argument (a "device" address).
pub fn address<T>(buffer: &[T]) -> u64 {
    buffer.as_ptr() as u64
}

pub fn grid_for_rows(rows: usize) -> [u32; 3] {
    [(rows as u32).div_ceil(ROW_THREADS / 32), 1, 1]
}

//! Compute primitives for ferrofold.
//!
//! Models are written once against [`Backend`]; backends differ only below it.
//! The CPU backend ([`CpuBackend`]) uses `gemm` for matrix products and rayon for
//! parallel loops.

mod activations;
mod backend;
mod cpu;
#[cfg(feature = "cuda")]
pub mod cuda;
mod device_failure;
mod gating;
mod pair_embedding;
mod point_attention;
mod profiled;
pub mod reduce;
mod softmax_expectations;
mod tensor;

pub use activations::{exp, gelu, relu, sigmoid, softplus};
pub use backend::{
    attention_scale, Activation, AttentionParams, Backend, GatedAttention, LinearParams, MatView,
    NormParams, OuterProductMeanParams, TriangleDirection, TriangleMultiplicationParams, MASK_BIAS,
    OUTER_PRODUCT_NORM_EPS,
};
pub use cpu::{round_to_bf16, softmax_row, CpuBackend, ATTENTION_KEY_TILE};
pub use device_failure::{catch_device_failure, DeviceFailure};
pub use point_attention::{PairMasking, PointAttention};
pub use profiled::{Profiled, PROFILE_ENV};
pub use softmax_expectations::MAX_EXPECTATIONS;
pub use tensor::{ShapeError, Tensor, PAR_BLOCK};

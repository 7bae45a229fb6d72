//! Compute primitives for ferrofold.
//!
//! Models are written once against [`Backend`]; backends differ only below it.
//! The CPU backend ([`CpuBackend`]) uses `gemm` for matrix products and rayon for
//! parallel loops.

mod activations;
mod backend;
mod cpu;
mod tensor;

pub use activations::{exp, gelu, relu, sigmoid, softplus};
pub use backend::{
    Activation, Backend, LinearParams, MatView, NormParams, TriangleDirection,
    TriangleMultiplicationParams,
};
pub use cpu::{softmax_row, CpuBackend};
pub use tensor::{ShapeError, Tensor};

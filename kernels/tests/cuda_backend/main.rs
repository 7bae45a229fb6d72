//! The CUDA backend without a GPU: its kernels' own source and the backend above them run on
//! the CPU (`emulator/`: each block's threads as fibers, built with `$CXX` or `c++`) against
//! the CPU backend.
#![cfg(feature = "cuda")]

mod backend;
mod emulator;
mod kernels;
mod support;

//! IgFold on the CPU backend against the PyTorch reference (igfold_golden).

mod common;
mod igfold_golden;

use ferrofold_kernels::CpuBackend;
use igfold_golden::{check, REFINED_MAX_DEV};

#[test]
fn paired_fv_matches_reference() {
    check("paired", &CpuBackend, REFINED_MAX_DEV);
}

#[test]
fn trastuzumab_matches_reference() {
    check("trastuzumab", &CpuBackend, REFINED_MAX_DEV);
}

#[test]
fn nanobody_matches_reference() {
    check("nanobody", &CpuBackend, REFINED_MAX_DEV);
}

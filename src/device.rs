//! `--device`: the compute backend of a prediction. `cpu` (the default), or `cuda` / `cuda:N`
//! for the CUDA backend on GPU N, in builds with the `cuda` feature (`cargo build --release
//! --features cuda`; the driver, NVRTC and cuBLAS are loaded at run time).

use anyhow::Result;
use ferrofold_kernels::{Backend, CpuBackend};

/// What `--device` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceSpec {
    Cpu,
    Cuda(usize),
}

impl std::str::FromStr for DeviceSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "cpu" => Ok(DeviceSpec::Cpu),
            "cuda" => Ok(DeviceSpec::Cuda(0)),
            _ => s
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(DeviceSpec::Cuda)
                .ok_or_else(|| format!("`{s}` is not a device: use cpu, cuda or cuda:N")),
        }
    }
}

/// The backend for `spec`; a CUDA device that cannot be used is an error that says why.
pub fn backend(spec: DeviceSpec) -> Result<Box<dyn Backend>> {
    match spec {
        DeviceSpec::Cpu => Ok(Box::new(CpuBackend)),
        DeviceSpec::Cuda(ordinal) => cuda_backend(ordinal),
    }
}

#[cfg(feature = "cuda")]
fn cuda_backend(ordinal: usize) -> Result<Box<dyn Backend>> {
    use ferrofold_kernels::cuda::{CudaBackend, CudaDevice};
    let device =
        CudaDevice::new(ordinal).map_err(|e| anyhow::anyhow!("--device cuda:{ordinal}: {e}"))?;
    let info = device.info();
    eprintln!(
        "device: CUDA {ordinal}, {} (compute {}.{}, {:.0} GiB)",
        info.name,
        info.compute_capability.0,
        info.compute_capability.1,
        info.total_memory as f64 / (1u64 << 30) as f64
    );
    Ok(Box::new(CudaBackend::new(device)))
}

#[cfg(not(feature = "cuda"))]
fn cuda_backend(ordinal: usize) -> Result<Box<dyn Backend>> {
    anyhow::bail!(
        "--device cuda:{ordinal}: this ferrofold was built without CUDA support; build it with \
         `cargo build --release --features cuda`"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_names() {
        assert_eq!("cpu".parse(), Ok(DeviceSpec::Cpu));
        assert_eq!("cuda".parse(), Ok(DeviceSpec::Cuda(0)));
        assert_eq!("cuda:3".parse(), Ok(DeviceSpec::Cuda(3)));
        for bad in ["gpu", "cuda:", "cuda:x", "cuda:-1", ""] {
            assert!(bad.parse::<DeviceSpec>().is_err(), "{bad}");
        }
    }
}

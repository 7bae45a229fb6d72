//! `--device`: the compute backend of a prediction. `auto` (the default: GPU 0 where the build
//! has CUDA and the machine a GPU, else the CPU), `cpu`, or `cuda` / `cuda:N` for the CUDA
//! backend on GPU N, in builds with the `cuda` feature (`cargo build --release --features
//! cuda`; the driver, NVRTC and cuBLAS are loaded at run time). `--precision`: `fp32` (the
//! CPU's), or for the CUDA backend `tf32` (GEMMs on TF32 tensor cores) or `bf16` (values
//! stored in bf16, GEMMs on bf16 tensor cores: the GPU's default, as issue 5 asks; `fp32`
//! there reproduces the CPU to 1e-4).

use anyhow::Result;
use ferrofold_kernels::{Backend, CpuBackend, Profiled, PROFILE_ENV};

/// What `--device` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceSpec {
    Auto,
    Cpu,
    Cuda(usize),
}

impl std::str::FromStr for DeviceSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(DeviceSpec::Auto),
            "cpu" => Ok(DeviceSpec::Cpu),
            "cuda" => Ok(DeviceSpec::Cuda(0)),
            _ => s
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(DeviceSpec::Cuda)
                .ok_or_else(|| format!("`{s}` is not a device: use auto, cpu, cuda or cuda:N")),
        }
    }
}

/// What `--precision` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    /// fp32 throughout.
    Fp32,
    /// The CUDA backend's GEMMs on tensor cores with TF32 inputs (10-bit mantissas) and fp32
    /// sums, as JAX runs fp32 matrix products on NVIDIA GPUs by default; the rest in fp32.
    Tf32,
    /// Activations and weights stored in bf16 (8-bit mantissas; half the GPU memory and
    /// traffic), GEMMs on bf16 tensor cores, every sum and kernel's arithmetic in fp32; biases,
    /// norms, masks, invariant point attention and the confidence metrics stay fp32.
    Bf16,
}

impl std::str::FromStr for Precision {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "fp32" => Ok(Precision::Fp32),
            "tf32" => Ok(Precision::Tf32),
            "bf16" => Ok(Precision::Bf16),
            _ => Err(format!("`{s}` is not a precision: use fp32, tf32 or bf16")),
        }
    }
}

impl Precision {
    fn name(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Tf32 => "tf32",
            Precision::Bf16 => "bf16",
        }
    }
}

/// `run()`, or an error where the device failed inside it (out of GPU memory, say), with
/// what to try instead; nothing has been written yet when it fails.
pub fn on_device<T>(run: impl FnOnce() -> T) -> Result<T> {
    ferrofold_kernels::catch_device_failure(run).map_err(|failure| {
        anyhow::anyhow!(
            "{failure} (a longer sequence may need more GPU memory than is free: try a GPU \
             with more, or --device cpu)"
        )
    })
}

/// The backend for `spec`, inside the op profile where `FERROFOLD_PROFILE=1` (its table goes to
/// stderr when the backend is dropped); a CUDA device that cannot be used is an error that says
/// why.
pub fn backend(spec: DeviceSpec, precision: Option<Precision>) -> Result<Box<dyn Backend>> {
    let backend = device_backend(spec, precision)?;
    if std::env::var(PROFILE_ENV).is_ok_and(|v| v == "1") {
        return Ok(Box::new(Profiled::new(backend)));
    }
    Ok(backend)
}

/// `precision` `None`: the device's default (bf16 on a GPU, fp32 on the CPU).
fn device_backend(spec: DeviceSpec, precision: Option<Precision>) -> Result<Box<dyn Backend>> {
    match (spec, precision) {
        (DeviceSpec::Auto, _) => device_backend(auto_device(), precision),
        (DeviceSpec::Cpu, Some(p)) if p != Precision::Fp32 => {
            anyhow::bail!(
                "--precision {} is for --device cuda: the CPU backend computes in fp32",
                p.name()
            )
        }
        (DeviceSpec::Cpu, _) => Ok(Box::new(CpuBackend)),
        (DeviceSpec::Cuda(ordinal), _) => {
            cuda_backend(ordinal, precision.unwrap_or(Precision::Bf16))
        }
    }
}

/// GPU 0 where this build has CUDA and the machine has a usable GPU, else the CPU.
fn auto_device() -> DeviceSpec {
    #[cfg(feature = "cuda")]
    match ferrofold_kernels::cuda::cuda_available() {
        Ok(_) => return DeviceSpec::Cuda(0),
        Err(e) => eprintln!("device: CPU (--device auto: {e})"),
    }
    DeviceSpec::Cpu
}

#[cfg(feature = "cuda")]
fn cuda_backend(ordinal: usize, precision: Precision) -> Result<Box<dyn Backend>> {
    use ferrofold_kernels::cuda::{AttentionPath, CudaBackend, CudaDevice, GemmPrecision, Storage};
    let gemms = match precision {
        Precision::Fp32 => GemmPrecision::Fp32,
        Precision::Tf32 => GemmPrecision::Tf32,
        Precision::Bf16 => GemmPrecision::Bf16,
    };
    let device = CudaDevice::new(ordinal)
        .map_err(|e| anyhow::anyhow!("--device cuda:{ordinal}: {e}"))?
        .with_precision(gemms);
    let info = device.info();
    eprintln!(
        "device: CUDA {ordinal}, {} (compute {}.{}, {:.0} GiB)",
        info.name,
        info.compute_capability.0,
        info.compute_capability.1,
        info.total_memory as f64 / (1u64 << 30) as f64
    );
    let storage = match precision {
        Precision::Bf16 => Storage::Bf16,
        Precision::Fp32 | Precision::Tf32 => Storage::F32,
    };
    match precision {
        Precision::Fp32 => {}
        Precision::Tf32 => eprintln!("precision: tf32 GEMMs, fp32 storage"),
        Precision::Bf16 => eprintln!(
            "precision: bf16 storage and GEMMs, fp32 sums (--precision fp32 for fp32 throughout)"
        ),
    }
    let attention = attention_path()?;
    if attention != AttentionPath::Gemms {
        eprintln!("attention: {attention:?} ({ATTENTION_ENV})");
    }
    Ok(Box::new(
        CudaBackend::new(device)
            .with_attention(attention)
            .with_storage(storage),
    ))
}

/// Chooses the CUDA backend's gated attention path, for benchmarks: `gemms` (the default),
/// `fused` (the fused kernel, fp32 arithmetic in either storage), `tf32-tensor-cores` or
/// `bf16-tensor-cores` (the fused kernel on tensor cores; with bf16 storage both take its bf16
/// tensor-core variant; none yet timed on a GPU).
#[cfg(feature = "cuda")]
const ATTENTION_ENV: &str = "FERROFOLD_CUDA_ATTENTION";

#[cfg(feature = "cuda")]
fn attention_path() -> Result<ferrofold_kernels::cuda::AttentionPath> {
    parse_attention_path(std::env::var(ATTENTION_ENV).ok().as_deref())
}

/// [`ATTENTION_ENV`]'s value (`None`: unset) as an attention path.
#[cfg(feature = "cuda")]
fn parse_attention_path(value: Option<&str>) -> Result<ferrofold_kernels::cuda::AttentionPath> {
    use ferrofold_kernels::cuda::AttentionPath;
    match value {
        None | Some("gemms") => Ok(AttentionPath::Gemms),
        Some("fused") => Ok(AttentionPath::Fused),
        Some("tf32-tensor-cores") => Ok(AttentionPath::TensorCoresTf32),
        Some("bf16-tensor-cores") => Ok(AttentionPath::TensorCoresBf16),
        Some(other) => anyhow::bail!(
            "{ATTENTION_ENV}={other}: use gemms, fused, tf32-tensor-cores or bf16-tensor-cores"
        ),
    }
}

#[cfg(not(feature = "cuda"))]
fn cuda_backend(ordinal: usize, _precision: Precision) -> Result<Box<dyn Backend>> {
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
        assert_eq!("auto".parse(), Ok(DeviceSpec::Auto));
        assert_eq!("cpu".parse(), Ok(DeviceSpec::Cpu));
        assert_eq!("cuda".parse(), Ok(DeviceSpec::Cuda(0)));
        assert_eq!("cuda:3".parse(), Ok(DeviceSpec::Cuda(3)));
        for bad in ["gpu", "cuda:", "cuda:x", "cuda:-1", ""] {
            assert!(bad.parse::<DeviceSpec>().is_err(), "{bad}");
        }
    }

    #[cfg(feature = "cuda")]
    #[test]
    fn attention_paths_and_a_bad_one() {
        use ferrofold_kernels::cuda::AttentionPath;
        assert_eq!(parse_attention_path(None).unwrap(), AttentionPath::Gemms);
        assert_eq!(
            parse_attention_path(Some("bf16-tensor-cores")).unwrap(),
            AttentionPath::TensorCoresBf16
        );
        let err = parse_attention_path(Some("tensor-cores")).unwrap_err();
        assert!(
            err.to_string()
                .contains("FERROFOLD_CUDA_ATTENTION=tensor-cores: use"),
            "{err}"
        );
    }

    #[test]
    fn precisions_and_the_cpu() {
        assert_eq!("tf32".parse(), Ok(Precision::Tf32));
        assert_eq!("bf16".parse(), Ok(Precision::Bf16));
        assert!("fp16".parse::<Precision>().is_err());
        let err = backend(DeviceSpec::Cpu, Some(Precision::Tf32))
            .err()
            .unwrap();
        assert!(backend(DeviceSpec::Cpu, None).is_ok());
        assert!(backend(DeviceSpec::Cpu, Some(Precision::Fp32)).is_ok());
        assert!(err.to_string().contains("--device cuda"), "{err}");
    }
}

//! [`Device`] on a GPU through cudarc: the driver, NVRTC and cuBLAS, all loaded at run time.
//! Programs are compiled with NVRTC for the device's architecture on first use and cached.
//! Row-major GEMMs go to cuBLAS's column-major SGEMM as their transposes (to its
//! `GemmStridedBatchedEx` with a TF32 or bf16 compute type at [`GemmPrecision`] tf32 / bf16).

use std::collections::HashMap;
use std::ffi::c_void;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use cudarc::cublas::sys::{
    cublasComputeType_t, cublasGemmAlgo_t, cublasGemmStridedBatchedEx, cublasOperation_t,
    cublasStatus_t, cudaDataType,
};
use cudarc::cublas::{CudaBlas, Gemm as _, GemmConfig, StridedBatchedConfig};
use cudarc::driver::{
    CudaContext, CudaFunction, CudaModule, CudaSlice, CudaStream, DevicePtr, LaunchConfig,
    PushKernelArg,
};
use cudarc::nvrtc::Ptx;

use super::device::{Arg, Device, DeviceError, Gemm, Storage};
use super::nvrtc::{self, Output, Target};
use super::probe::{cuda_device, DeviceInfo};
use super::sources::Program;

/// A device buffer and the number of values it stands for (an empty one is backed by one
/// element: the driver refuses size 0).
pub struct GpuBuffer {
    slice: CudaSlice<f32>,
    len: usize,
}

impl Drop for GpuBuffer {
    /// A tensor that holds the buffer may be dropped on any thread: the free that follows
    /// (cudarc's, with the slice) needs the context current there, which cudarc does not set.
    fn drop(&mut self) {
        let _ = self.slice.stream().context().bind_to_thread();
    }
}

pub struct CudaDevice {
    info: DeviceInfo,
    context: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    blas: CudaBlas,
    modules: Mutex<HashMap<&'static str, Arc<CudaModule>>>,
    profile: Option<Profile>,
    precision: GemmPrecision,
}

/// How cuBLAS multiplies fp32 operands: fp32 sums always, the products' inputs rounded to
/// TF32 (10-bit mantissas, JAX's default for fp32 on NVIDIA GPUs) or bf16 (8 bits) on tensor
/// cores, or not rounded (`Fp32`, plain SGEMM). bf16 operands ([`Storage::Bf16`]) always run
/// on bf16 tensor cores with fp32 sums.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum GemmPrecision {
    #[default]
    Fp32,
    Tf32,
    Bf16,
}

/// `FERROFOLD_CUDA_PROFILE=1`: where the device's time goes, printed to stderr when the device
/// is dropped. Kernels and GEMMs then wait for the GPU after each call, so that each is timed.
const PROFILE_ENV: &str = "FERROFOLD_CUDA_PROFILE";

struct Profile {
    opened: Instant,
    /// [calls, nanoseconds, bytes] per kind of work.
    upload: [AtomicU64; 3],
    download: [AtomicU64; 3],
    kernels: [AtomicU64; 3],
    gemms: [AtomicU64; 3],
}

impl Profile {
    fn new() -> Profile {
        Profile {
            opened: Instant::now(),
            upload: Default::default(),
            download: Default::default(),
            kernels: Default::default(),
            gemms: Default::default(),
        }
    }

    fn add(counters: &[AtomicU64; 3], since: Instant, bytes: usize) {
        counters[0].fetch_add(1, Ordering::Relaxed);
        counters[1].fetch_add(since.elapsed().as_nanos() as u64, Ordering::Relaxed);
        counters[2].fetch_add(bytes as u64, Ordering::Relaxed);
    }
}

impl Drop for CudaDevice {
    fn drop(&mut self) {
        let Some(p) = &self.profile else { return };
        eprintln!("CUDA profile ({}):", self.info.name);
        let mut device_s = 0.0;
        for (what, c) in [
            ("host to device", &p.upload),
            ("device to host", &p.download),
            ("kernels", &p.kernels),
            ("GEMMs", &p.gemms),
        ] {
            let [calls, ns, bytes] = c.each_ref().map(|a| a.load(Ordering::Relaxed));
            let secs = ns as f64 * 1e-9;
            device_s += secs;
            let rate = if bytes > 0 && secs > 0.0 {
                format!(", {:.1} GB/s", bytes as f64 / secs * 1e-9)
            } else {
                String::new()
            };
            eprintln!(
                "  {what:<15} {calls:>8} calls {secs:>9.3} s {:>10.1} MB{rate}",
                bytes as f64 * 1e-6
            );
        }
        let open_s = p.opened.elapsed().as_secs_f64();
        eprintln!(
            "  device open {open_s:.3} s: {device_s:.3} s in the work above, {:.3} s elsewhere \
             (host code, compiling kernels, waiting)",
            open_s - device_s
        );
    }
}

fn driver(e: impl std::fmt::Debug) -> DeviceError {
    DeviceError::Driver(format!("{e:?}"))
}

impl CudaDevice {
    /// Device `ordinal`. The probe runs first, so a machine without a driver or a GPU gets
    /// an error, never cudarc's panic.
    pub fn new(ordinal: usize) -> Result<CudaDevice, DeviceError> {
        let info = cuda_device(ordinal)?;
        nvrtc::load_nvrtc().map_err(|e| DeviceError::Compile {
            program: "(all)",
            arch: info.nvrtc_arch(),
            log: e.to_string(),
        })?;
        // cudarc panics on first use of a library it cannot load: check cuBLAS first.
        // SAFETY: tries to dlopen cudarc's candidate names and drops them again.
        let blas_present =
            std::panic::catch_unwind(|| unsafe { cudarc::cublas::sys::is_culib_present() });
        if !blas_present.unwrap_or(false) {
            return Err(DeviceError::Blas(
                "the cuBLAS library (libcublas.so) could not be loaded; add its folder to LD_LIBRARY_PATH".into(),
            ));
        }
        let context = CudaContext::new(ordinal).map_err(driver)?;
        // SAFETY: every buffer, copy, kernel and GEMM goes to this one stream, so there is no
        // use on another stream to order. Without it cudarc creates two events per allocation
        // (thousands per iteration), which only multi-stream code needs.
        unsafe { context.disable_event_tracking() };
        let stream = context.default_stream();
        let blas =
            CudaBlas::new(stream.clone()).map_err(|e| DeviceError::Blas(format!("{e:?}")))?;
        Ok(CudaDevice {
            info,
            context,
            stream,
            blas,
            modules: Mutex::new(HashMap::new()),
            profile: std::env::var(PROFILE_ENV)
                .is_ok_and(|v| v == "1")
                .then(Profile::new),
            precision: GemmPrecision::Fp32,
        })
    }

    pub fn info(&self) -> &DeviceInfo {
        &self.info
    }

    /// The GEMMs' arithmetic ([`GemmPrecision`]; fp32 unless set).
    pub fn with_precision(mut self, precision: GemmPrecision) -> CudaDevice {
        self.precision = precision;
        self
    }

    /// With profiling on, waits for the GPU and adds the time since `since` to `counters`.
    fn profiled(
        &self,
        counters: impl Fn(&Profile) -> &[AtomicU64; 3],
        since: Instant,
        bytes: usize,
    ) -> Result<(), DeviceError> {
        if let Some(p) = &self.profile {
            self.stream.synchronize().map_err(driver)?;
            Profile::add(counters(p), since, bytes);
        }
        Ok(())
    }

    fn function(&self, program: &Program, kernel: &str) -> Result<CudaFunction, DeviceError> {
        let mut modules = self
            .modules
            .lock()
            .expect("no panic while the cache is held");
        let module = match modules.get(program.name) {
            Some(m) => m.clone(),
            None => {
                let (major, minor) = self.info.compute_capability;
                let target = Target {
                    arch: major * 10 + minor,
                    output: Output::Ptx,
                };
                let compiled =
                    nvrtc::compile(program, target, &[]).map_err(|e| DeviceError::Compile {
                        program: program.name,
                        arch: e.arch,
                        log: e.log,
                    })?;
                let ptx = String::from_utf8_lossy(&compiled.image).into_owned();
                let module = self
                    .context
                    .load_module(Ptx::from_src(ptx))
                    .map_err(driver)?;
                modules.insert(program.name, module.clone());
                module
            }
        };
        module.load_function(kernel).map_err(driver)
    }
}

impl Device for CudaDevice {
    type Buffer = GpuBuffer;

    fn upload(&self, data: &[f32]) -> Result<GpuBuffer, DeviceError> {
        if data.is_empty() {
            return self.zeros(0);
        }
        let since = Instant::now();
        let slice = self.stream.clone_htod(data).map_err(driver)?;
        self.profiled(|p| &p.upload, since, std::mem::size_of_val(data))?;
        Ok(GpuBuffer {
            slice,
            len: data.len(),
        })
    }

    fn zeros(&self, len: usize) -> Result<GpuBuffer, DeviceError> {
        let slice = self.stream.alloc_zeros::<f32>(len.max(1)).map_err(driver)?;
        Ok(GpuBuffer { slice, len })
    }

    fn uninit(&self, len: usize) -> Result<GpuBuffer, DeviceError> {
        // SAFETY: f32 has no invalid bit patterns, and the trait's contract has every value
        // written before it is read.
        let slice = unsafe { self.stream.alloc::<f32>(len.max(1)) }.map_err(driver)?;
        Ok(GpuBuffer { slice, len })
    }

    fn download(&self, buffer: &GpuBuffer) -> Result<Vec<f32>, DeviceError> {
        if buffer.len == 0 {
            return Ok(Vec::new());
        }
        let since = Instant::now();
        let values = self.stream.clone_dtoh(&buffer.slice).map_err(driver)?;
        self.profiled(|p| &p.download, since, buffer.len * 4)?;
        Ok(values)
    }

    fn free_memory(&self) -> Option<usize> {
        self.context.bind_to_thread().ok()?;
        cudarc::driver::result::mem_get_info()
            .ok()
            .map(|(free, _total)| free)
    }

    fn address(&self, buffer: &GpuBuffer) -> u64 {
        // One stream: no events to record, so the guard may go at once.
        let (ptr, _sync) = buffer.slice.device_ptr(&self.stream);
        ptr
    }

    unsafe fn launch(
        &self,
        program: &Program,
        kernel: &str,
        grid: [u32; 3],
        block: [u32; 3],
        args: &[Arg],
    ) -> Result<(), DeviceError> {
        let function = self.function(program, kernel)?;
        let mut launch = self.stream.launch_builder(&function);
        for arg in args {
            match arg {
                Arg::Ptr(v) => launch.arg(v),
                Arg::I32(v) => launch.arg(v),
                Arg::I64(v) => launch.arg(v),
                Arg::F32(v) => launch.arg(v),
                Arg::Attention(v) => launch.arg(&**v),
            };
        }
        let config = LaunchConfig {
            grid_dim: (grid[0], grid[1], grid[2]),
            block_dim: (block[0], block[1], block[2]),
            shared_mem_bytes: 0,
        };
        let since = Instant::now();
        // SAFETY: the caller vouches for the arguments (the trait's contract).
        unsafe { launch.launch(config) }.map_err(driver)?;
        self.profiled(|p| &p.kernels, since, 0)
    }

    fn gemm(
        &self,
        g: &Gemm,
        a: &GpuBuffer,
        b: &GpuBuffer,
        c: &mut GpuBuffer,
    ) -> Result<(), DeviceError> {
        // cuBLAS runs in the thread's current context, which cudarc does not set here.
        self.context.bind_to_thread().map_err(driver)?;
        // Row-major C [m, n] is column-major C^T [n, m] = op(B)^T op(A)^T, and a row-major
        // operand read column-major is already its transpose: so B goes first, transposed
        // only where `trans_b` asks for the stored matrix's transpose.
        let op = |t: bool| {
            if t {
                cublasOperation_t::CUBLAS_OP_T
            } else {
                cublasOperation_t::CUBLAS_OP_N
            }
        };
        let int = |n: usize| {
            i32::try_from(n)
                .map_err(|_| DeviceError::Blas(format!("GEMM size {n} exceeds 32 bits")))
        };
        let config = StridedBatchedConfig {
            gemm: GemmConfig {
                transa: op(g.trans_b),
                transb: op(g.trans_a),
                m: int(g.n)?,
                n: int(g.m)?,
                k: int(g.k)?,
                alpha: 1.0f32,
                lda: int(if g.trans_b { g.k } else { g.n })?,
                ldb: int(if g.trans_a { g.m } else { g.k })?,
                beta: 0.0f32,
                ldc: int(g.n)?,
            },
            batch_size: int(g.batch)?,
            stride_a: g.stride_b as i64,
            stride_b: g.stride_a as i64,
            stride_c: (g.m * g.n) as i64,
        };
        let since = Instant::now();
        // bf16 operands: bf16 tensor-core products summed in fp32; fp32 ones as `precision`.
        let compute = match (g.storage, self.precision) {
            (Storage::Bf16, _) => Some(cublasComputeType_t::CUBLAS_COMPUTE_32F),
            (Storage::F32, GemmPrecision::Fp32) => None,
            (Storage::F32, GemmPrecision::Tf32) => {
                Some(cublasComputeType_t::CUBLAS_COMPUTE_32F_FAST_TF32)
            }
            (Storage::F32, GemmPrecision::Bf16) => {
                Some(cublasComputeType_t::CUBLAS_COMPUTE_32F_FAST_16BF)
            }
        };
        if let Some(compute) = compute {
            let at = |buffer: &GpuBuffer, offset: usize| {
                (self.address(buffer) + (offset * g.storage.bytes()) as u64) as *mut c_void
            };
            let GemmConfig {
                transa,
                transb,
                m,
                n,
                k,
                alpha,
                lda,
                ldb,
                beta,
                ldc,
            } = config.gemm;
            let data_type = match g.storage {
                Storage::F32 => cudaDataType::CUDA_R_32F,
                Storage::Bf16 => cudaDataType::CUDA_R_16BF,
            };
            // SAFETY: as the SGEMM below: the same operands, strides and sizes, in `storage`.
            let status = unsafe {
                cublasGemmStridedBatchedEx(
                    *self.blas.handle(),
                    transa,
                    transb,
                    m,
                    n,
                    k,
                    (&alpha as *const f32).cast(),
                    at(b, g.offset_b),
                    data_type,
                    lda,
                    config.stride_a,
                    at(a, g.offset_a),
                    data_type,
                    ldb,
                    config.stride_b,
                    (&beta as *const f32).cast(),
                    at(c, 0),
                    data_type,
                    ldc,
                    config.stride_c,
                    config.batch_size,
                    compute,
                    cublasGemmAlgo_t::CUBLAS_GEMM_DEFAULT_TENSOR_OP,
                )
            };
            if status != cublasStatus_t::CUBLAS_STATUS_SUCCESS {
                return Err(DeviceError::Blas(format!(
                    "cublasGemmStridedBatchedEx: {status:?}"
                )));
            }
        } else {
            // SAFETY: the backend sizes every buffer from the same dimensions.
            unsafe {
                self.blas.gemm_strided_batched(
                    config,
                    &b.slice.slice(g.offset_b..),
                    &a.slice.slice(g.offset_a..),
                    &mut c.slice,
                )
            }
            .map_err(|e| DeviceError::Blas(format!("{e:?}")))?;
        }
        self.profiled(|p| &p.gemms, since, 0)
    }
}

//! Run-time compilation of the backend's CUDA C programs with NVRTC (no GPU needed).
//!
//! cudarc loads `libnvrtc` by name (`libnvrtc.so`, `libnvrtc.so.12`, ...) through the
//! dynamic loader, so it finds only libraries on `LD_LIBRARY_PATH` (read when the process
//! starts) or in the system folders. `FERROFOLD_NVRTC_LIB` names a library file, or a folder
//! holding `libnvrtc.so.*` (such as the `nvidia/cuda_nvrtc/lib` folder of PyPI's
//! `nvidia-cuda-nvrtc-cu12` wheel): [`load_nvrtc`] opens it by path first, and the loader
//! then hands that already-loaded library (same soname) to cudarc.

use std::ffi::{CStr, CString};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use cudarc::nvrtc::{result, sys};

use super::sources::Program;

/// The environment variable naming libnvrtc's file or folder.
pub const NVRTC_LIB_ENV: &str = "FERROFOLD_NVRTC_LIB";

/// NVRTC as loaded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NvrtcInfo {
    /// NVRTC's version (major, minor), e.g. (12, 9).
    pub version: (i32, i32),
    /// The file opened through [`NVRTC_LIB_ENV`], if any (else the loader's search found it).
    pub preloaded: Option<PathBuf>,
}

/// Why NVRTC cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NvrtcUnavailable {
    #[error("{NVRTC_LIB_ENV}={path}: {message}")]
    BadPath { path: String, message: String },
    #[error(
        "libnvrtc not found (set {NVRTC_LIB_ENV} to the library or its folder, e.g. the \
         nvidia/cuda_nvrtc/lib folder of `pip install nvidia-cuda-nvrtc-cu12`, or add it to \
         LD_LIBRARY_PATH)"
    )]
    NotFound,
}

/// What a compilation produces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    /// PTX for the virtual architecture `compute_XY` (what the backend loads: the driver
    /// JIT-compiles it for the device).
    Ptx,
    /// A cubin for the real architecture `sm_XY`, compiled by NVRTC's built-in ptxas with
    /// `-v`, so the log reports registers and spills per kernel.
    Cubin,
}

/// A compile request: architecture as `major * 10 + minor` (80, 90) and output kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Target {
    pub arch: u32,
    pub output: Output,
}

impl Target {
    pub fn arch_flag(&self) -> String {
        match self.output {
            Output::Ptx => format!("--gpu-architecture=compute_{}", self.arch),
            Output::Cubin => format!("--gpu-architecture=sm_{}", self.arch),
        }
    }
}

/// Resources ptxas reports for one kernel (cubin compiles only).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KernelResources {
    pub kernel: String,
    pub registers: u32,
    pub spill_stores: u32,
    pub spill_loads: u32,
    pub stack_frame: u32,
    pub shared_memory: u32,
}

/// A compiled program.
#[derive(Clone, Debug)]
pub struct Compiled {
    pub program: &'static str,
    pub target: Target,
    /// PTX text (PTX compiles) or the cubin (cubin compiles).
    pub image: Vec<u8>,
    /// NVRTC's log (warnings; ptxas' report for cubins).
    pub log: String,
    /// Per-kernel resources parsed from the log (cubin compiles).
    pub resources: Vec<KernelResources>,
}

/// Bytes of the PTX text from `.entry <kernel>(` to the next `.entry` (or the end): the
/// size of one kernel's code within a program's PTX.
pub fn ptx_entry_size(ptx: &str, kernel: &str) -> Option<usize> {
    let start = ptx.find(&format!(".entry {kernel}("))?;
    let rest = &ptx[start + 1..];
    Some(rest.find(".entry ").map_or(ptx.len() - start, |n| n + 1))
}

/// A program that failed to compile.
#[derive(Clone, Debug, thiserror::Error)]
#[error("NVRTC failed on {program}.cu for {arch}: {status}\n{log}")]
pub struct CompileFailure {
    pub program: &'static str,
    pub arch: String,
    pub status: String,
    pub log: String,
}

/// Options every compile gets: C++17, IEEE division and square root, no fast math (the
/// fp32 path must stay within 1e-4 of the CPU backend). Pass `--generate-line-info` as an
/// extra option for profiling (it makes the PTX several times larger).
pub fn base_options() -> Vec<String> {
    ["--std=c++17", "-default-device"]
        .map(String::from)
        .to_vec()
}

/// Makes NVRTC loadable (honouring [`NVRTC_LIB_ENV`]) and reports its version. Idempotent;
/// never panics.
pub fn load_nvrtc() -> Result<NvrtcInfo, NvrtcUnavailable> {
    static PRELOADED: OnceLock<Result<Option<PathBuf>, NvrtcUnavailable>> = OnceLock::new();
    let preloaded = PRELOADED.get_or_init(preload_from_env).clone()?;
    // SAFETY: tries to dlopen cudarc's candidate names and drops them again.
    let present = std::panic::catch_unwind(|| unsafe { sys::is_culib_present() }).unwrap_or(false);
    if !present {
        return Err(NvrtcUnavailable::NotFound);
    }
    let (mut major, mut minor) = (0, 0);
    // SAFETY: writes two ints; the library is present.
    let ok = std::panic::catch_unwind(move || unsafe {
        sys::nvrtcVersion(&mut major, &mut minor);
        (major, minor)
    });
    let version = ok.map_err(|_| NvrtcUnavailable::NotFound)?;
    Ok(NvrtcInfo { version, preloaded })
}

fn preload_from_env() -> Result<Option<PathBuf>, NvrtcUnavailable> {
    let Some(value) = std::env::var_os(NVRTC_LIB_ENV).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    let bad = |message: String| NvrtcUnavailable::BadPath {
        path: Path::new(&value).display().to_string(),
        message,
    };
    let path = PathBuf::from(&value);
    let file = if path.is_dir() {
        find_library_in(&path).ok_or_else(|| bad("no libnvrtc.so* in this folder".into()))?
    } else if path.is_file() {
        path
    } else {
        return Err(bad("no such file or folder".into()));
    };
    // RTLD_GLOBAL | RTLD_NOW: the library stays loaded for the life of the process, and a
    // later dlopen by its soname (what cudarc does) returns this copy.
    let flags = libloading::os::unix::RTLD_NOW | libloading::os::unix::RTLD_GLOBAL;
    // SAFETY: loading libnvrtc runs only its initialisers.
    let lib = unsafe { libloading::os::unix::Library::open(Some(&file), flags) }
        .map_err(|e| bad(e.to_string()))?;
    std::mem::forget(lib);
    Ok(Some(file))
}

/// `libnvrtc.so.<major>` (or another `libnvrtc.so*`, not the builtins) in `dir`.
fn find_library_in(dir: &Path) -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("libnvrtc.so"))
        })
        .collect();
    found.sort();
    found.into_iter().next()
}

/// Compiles `program` for `target` with [`base_options`] plus `extra`. Call [`load_nvrtc`]
/// first (it panics in cudarc if NVRTC is missing).
pub fn compile(
    program: &Program,
    target: Target,
    extra: &[String],
) -> Result<Compiled, CompileFailure> {
    let mut options = base_options();
    options.push(target.arch_flag());
    if target.output == Output::Cubin {
        options.push("--ptxas-options=-v".into());
    }
    options.extend_from_slice(extra);
    let fail = |status: String, log: String| CompileFailure {
        program: program.name,
        arch: target.arch_flag(),
        status,
        log,
    };
    let src = CString::new(program.source).expect("sources hold no NUL");
    let name = CString::new(format!("{}.cu", program.name)).expect("no NUL");
    let prog = result::create_program(&src, Some(&name))
        .map_err(|e| fail(format!("{e:?}"), String::new()))?;
    // SAFETY: `prog` is a live program until destroyed below; the buffers are sized by NVRTC.
    unsafe {
        let status = result::compile_program(prog, &options);
        let log = result::get_program_log(prog)
            .map(|l| CStr::from_ptr(l.as_ptr()).to_string_lossy().into_owned())
            .unwrap_or_default();
        let image = match status {
            Err(e) => Err(fail(format!("{e:?}"), log.clone())),
            Ok(()) => match target.output {
                Output::Ptx => result::get_ptx(prog)
                    .map(|p| CStr::from_ptr(p.as_ptr()).to_bytes().to_vec())
                    .map_err(|e| fail(format!("nvrtcGetPTX: {e:?}"), log.clone())),
                Output::Cubin => get_cubin(prog).map_err(|e| fail(e, log.clone())),
            },
        };
        let _ = result::destroy_program(prog);
        let image = image?;
        let resources = parse_ptxas_log(&log);
        Ok(Compiled {
            program: program.name,
            target,
            image,
            log,
            resources,
        })
    }
}

/// # Safety
/// `prog` must be a successfully compiled program for a real (`sm_XY`) architecture.
unsafe fn get_cubin(prog: sys::nvrtcProgram) -> Result<Vec<u8>, String> {
    let mut size = 0usize;
    sys::nvrtcGetCUBINSize(prog, &mut size)
        .result()
        .map_err(|e| format!("nvrtcGetCUBINSize: {e:?}"))?;
    let mut cubin = vec![0u8; size];
    sys::nvrtcGetCUBIN(prog, cubin.as_mut_ptr().cast())
        .result()
        .map_err(|e| format!("nvrtcGetCUBIN: {e:?}"))?;
    Ok(cubin)
}

/// Registers, spills, stack and shared memory per kernel from ptxas' `-v` report:
///
/// ```text
/// ptxas info    : Compiling entry function 'layer_norm_f32' for 'sm_80'
/// ptxas info    : Function properties for layer_norm_f32
///     0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
/// ptxas info    : Used 14 registers, 380 bytes cmem[0]
/// ```
pub fn parse_ptxas_log(log: &str) -> Vec<KernelResources> {
    let mut out: Vec<KernelResources> = Vec::new();
    let number_before = |line: &str, unit: &str| -> Option<u32> {
        let at = line.find(unit)?;
        line[..at].split_whitespace().last()?.parse().ok()
    };
    for line in log.lines() {
        if let Some(rest) = line.split("Compiling entry function '").nth(1) {
            let name = rest.split('\'').next().unwrap_or_default();
            out.push(KernelResources {
                kernel: name.to_string(),
                ..Default::default()
            });
            continue;
        }
        let Some(cur) = out.last_mut() else { continue };
        if line.contains("bytes stack frame") {
            for part in line.split(',') {
                if let Some(n) = number_before(part, "bytes stack frame") {
                    cur.stack_frame = n;
                } else if let Some(n) = number_before(part, "bytes spill stores") {
                    cur.spill_stores = n;
                } else if let Some(n) = number_before(part, "bytes spill loads") {
                    cur.spill_loads = n;
                }
            }
        } else if line.contains("Used ") && line.contains("registers") {
            for part in line.split(',') {
                if let Some(n) = number_before(part, "registers") {
                    cur.registers = n;
                } else if let Some(n) = number_before(part, "bytes smem") {
                    cur.shared_memory = n;
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ptxas_reports() {
        let log = "ptxas info    : 0 bytes gmem\n\
            ptxas info    : Compiling entry function 'gated_attention_f32_d64' for 'sm_80'\n\
            ptxas info    : Function properties for gated_attention_f32_d64\n\
            \x20   8 bytes stack frame, 4 bytes spill stores, 12 bytes spill loads\n\
            ptxas info    : Used 96 registers, 20992 bytes smem, 592 bytes cmem[0]\n\
            ptxas info    : Compiling entry function 'k2' for 'sm_80'\n\
            ptxas info    : Used 10 registers, 380 bytes cmem[0]\n";
        let r = parse_ptxas_log(log);
        assert_eq!(r.len(), 2);
        assert_eq!(
            r[0],
            KernelResources {
                kernel: "gated_attention_f32_d64".into(),
                registers: 96,
                spill_stores: 4,
                spill_loads: 12,
                stack_frame: 8,
                shared_memory: 20992,
            }
        );
        assert_eq!((r[1].kernel.as_str(), r[1].registers), ("k2", 10));
    }
}

//! Runs the CUDA backend's kernels on the CPU: a program's source (`kernels/cuda/*.cu`, as
//! NVRTC gets it) behind the shim `host_cuda.h` and a registry of its kernels, built by the
//! system's C++ compiler (`$CXX`, else `c++`) into a shared library and launched the way
//! cuLaunchKernel is: grid, block and one pointer per kernel parameter. "Device" pointers are
//! host addresses. Each program is built once per test binary.

pub mod device;

pub use device::EmulatedDevice;

use std::collections::HashMap;
use std::ffi::{c_char, c_void, CString};
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Mutex, OnceLock};

use ferrofold_kernels::cuda::sources::Program;

type LaunchFn =
    unsafe extern "C" fn(*const c_char, *const u32, *const u32, *mut *mut c_void) -> i32;

/// One program built for the CPU.
pub struct EmulatedProgram {
    name: &'static str,
    // Keeps the library loaded for `launch`.
    _library: libloading::Library,
    launch: LaunchFn,
    /// The emulation's state is the library's globals: one launch at a time.
    running: Mutex<()>,
}

/// The program built for the CPU (once per test binary; later calls reuse it).
pub fn emulated(program: &Program) -> &'static EmulatedProgram {
    static BUILT: OnceLock<Mutex<HashMap<&'static str, &'static EmulatedProgram>>> =
        OnceLock::new();
    let mut built = BUILT.get_or_init(Default::default).lock().unwrap();
    built
        .entry(program.name)
        .or_insert_with(|| Box::leak(Box::new(build(program))))
}

fn build(program: &Program) -> EmulatedProgram {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("cuda-emulation");
    std::fs::create_dir_all(&dir).unwrap();
    let source = dir.join(format!("{}.cpp", program.name));
    let library = dir.join(format!("lib{}.so", program.name));
    let registry: String = program
        .kernels
        .iter()
        .map(|k| format!("        {{\"{k}\", &ff_emu::entry<{k}>}},\n"))
        .collect();
    let text = format!(
        "{shim}\n#line 1 \"{name} (common.cuh, then {name}.cu)\"\n{body}\n\
         extern \"C\" __attribute__((visibility(\"default\"))) int ff_emu_launch(const char* name, const unsigned* grid,\n\
                                      const unsigned* block, void** params) {{\n\
             static const struct {{ const char* name; void (*entry)(void**); }} kernels[] = {{\n\
         {registry}    }};\n\
             for (const auto& k : kernels)\n\
                 if (strcmp(k.name, name) == 0) {{\n\
                     ff_emu::launch(k.entry, grid, block, params);\n\
                     return 0;\n\
                 }}\n\
             return -1;\n\
         }}\n",
        shim = include_str!("host_cuda.h"),
        name = program.name,
        body = program.source,
    );
    std::fs::write(&source, text).unwrap();
    let compiler = std::env::var("CXX").unwrap_or_else(|_| "c++".into());
    let out = Command::new(&compiler)
        .args([
            "-std=c++17",
            "-O2",
            "-shared",
            "-fPIC",
            "-Wall",
            "-Wno-unknown-pragmas",
            // _longjmp between fiber stacks is the emulation's switch; fortified longjmp
            // refuses it.
            "-U_FORTIFY_SOURCE",
            // Each program's library keeps its own emulation state: nothing but the launch
            // function is exported, and no symbol is merged across libraries.
            "-fvisibility=hidden",
            "-fno-gnu-unique",
        ])
        .args(["-Wno-unused-function", "-o"])
        .arg(&library)
        .arg(&source)
        .output()
        .unwrap_or_else(|e| panic!("running the C++ compiler `{compiler}` (set CXX): {e}"));
    assert!(
        out.status.success(),
        "{} failed to build for the CPU emulation ({}):\n{}",
        program.name,
        source.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    // SAFETY: the library is ours, built just now; its initialisers only set up statics.
    let lib = unsafe { libloading::Library::new(&library) }.unwrap();
    // SAFETY: `ff_emu_launch` has exactly this signature in the generated registry.
    let launch = unsafe { *lib.get::<LaunchFn>(b"ff_emu_launch\0").unwrap() };
    EmulatedProgram {
        name: program.name,
        _library: lib,
        launch,
        running: Mutex::new(()),
    }
}

impl EmulatedProgram {
    /// Runs `kernel` over `grid` blocks of `block` threads; `params` point at the kernel's
    /// arguments, in order, each of its parameter's exact type.
    ///
    /// # Safety
    /// As for cuLaunchKernel: every parameter pointer must point at a value of the kernel's
    /// parameter type, and every buffer the kernel reads or writes must be large enough.
    pub unsafe fn launch(
        &self,
        kernel: &str,
        grid: [u32; 3],
        block: [u32; 3],
        params: &mut [*mut c_void],
    ) {
        let _one_at_a_time = self.running.lock().unwrap();
        let name = CString::new(kernel).unwrap();
        // SAFETY: the caller vouches for the parameters; the registry checks the name.
        let status = unsafe {
            (self.launch)(
                name.as_ptr(),
                grid.as_ptr(),
                block.as_ptr(),
                params.as_mut_ptr(),
            )
        };
        assert_eq!(status, 0, "{kernel} is not a kernel of {}", self.name);
    }
}

/// A value as a kernel parameter pointer.
pub fn param<T>(value: &mut T) -> *mut c_void {
    (value as *mut T).cast()
}

//! Compiles every CUDA program of the backend with NVRTC for sm_80 (A100) and sm_90
//! (H100/H200): PTX for the virtual architectures (what the backend loads) and cubins for
//! the real ones, whose ptxas report gives registers and spills per kernel. No GPU is needed.
//!
//! NVRTC comes from `FERROFOLD_NVRTC_LIB` (the library or its folder) or the loader's
//! search path. Without it the test is skipped with the reason printed, unless
//! `FERROFOLD_REQUIRE_NVRTC=1` (CI: tools/test.sh installs `nvidia-cuda-nvrtc-cu12`), where a
//! missing library fails. The report goes to stdout and to
//! `target/tmp/nvrtc-kernels.md` (or `$FERROFOLD_NVRTC_REPORT`).
#![cfg(feature = "cuda")]

use ferrofold_kernels::cuda::nvrtc::{self, Output, Target};
use ferrofold_kernels::cuda::sources::PROGRAMS;
use std::fmt::Write as _;

const ARCHS: [u32; 2] = [80, 90];

#[test]
fn every_kernel_compiles_for_sm80_and_sm90() {
    let info = match nvrtc::load_nvrtc() {
        Ok(info) => info,
        Err(e) => {
            let required = std::env::var("FERROFOLD_REQUIRE_NVRTC").is_ok_and(|v| v == "1");
            assert!(
                !required,
                "FERROFOLD_REQUIRE_NVRTC=1 but NVRTC is unavailable: {e}"
            );
            eprintln!("SKIPPED every_kernel_compiles_for_sm80_and_sm90: {e}");
            return;
        }
    };
    let mut report = String::new();
    writeln!(
        report,
        "# NVRTC compile report\n\nNVRTC {}.{} ({})\n",
        info.version.0,
        info.version.1,
        info.preloaded
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "found on the loader's search path".into())
    )
    .unwrap();
    writeln!(
        report,
        "| program | kernel | arch | PTX bytes (kernel / program) | cubin bytes (program) | \
         registers | spill stores/loads (bytes) | stack | static smem |\n\
         |---|---|---|---|---|---|---|---|---|"
    )
    .unwrap();
    let mut failures = Vec::new();
    for program in PROGRAMS {
        for arch in ARCHS {
            let compile = |output| nvrtc::compile(program, Target { arch, output }, &[]);
            let (ptx, cubin) = match (compile(Output::Ptx), compile(Output::Cubin)) {
                (Ok(p), Ok(c)) => (p, c),
                (p, c) => {
                    for e in [p.err(), c.err()].into_iter().flatten() {
                        failures.push(e.to_string());
                    }
                    continue;
                }
            };
            let text = String::from_utf8_lossy(&ptx.image);
            for kernel in program.kernels {
                let Some(entry_bytes) = nvrtc::ptx_entry_size(&text, kernel) else {
                    failures.push(format!(
                        "{}.cu for compute_{arch}: no .entry {kernel} in the PTX",
                        program.name
                    ));
                    continue;
                };
                let Some(res) = cubin.resources.iter().find(|r| r.kernel == *kernel) else {
                    failures.push(format!(
                        "{}.cu for sm_{arch}: ptxas reported nothing for {kernel}:\n{}",
                        program.name, cubin.log
                    ));
                    continue;
                };
                writeln!(
                    report,
                    "| {} | {kernel} | sm_{arch} | {entry_bytes} / {} | {} | {} | {}/{} | {} | {} |",
                    program.name,
                    ptx.image.len(),
                    cubin.image.len(),
                    res.registers,
                    res.spill_stores,
                    res.spill_loads,
                    res.stack_frame,
                    res.shared_memory
                )
                .unwrap();
            }
            for log in [&ptx.log, &cubin.log] {
                if log.contains("warning") {
                    failures.push(format!("{}.cu sm_{arch}: warnings\n{log}", program.name));
                }
            }
        }
    }
    println!("{report}");
    let path = std::env::var_os("FERROFOLD_NVRTC_REPORT")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("nvrtc-kernels.md")
        });
    std::fs::write(&path, &report).expect("writing the NVRTC report");
    println!("report written to {}", path.display());
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

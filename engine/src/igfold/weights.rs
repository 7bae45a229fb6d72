//! Fetching the IgFold and AntiBERTy weights from their PyPI wheels into the cache
//! folder, checked by sha256, with AntiBERTy converted from its pickle checkpoint to
//! safetensors (read by our restricted unpickler: nothing in it is executed).

use ferrofold_io::weights::{load_torch_checkpoint, save_safetensors};
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A wheel we take weights from, pinned by version and digest.
struct Wheel {
    requirement: &'static str,
    file: &'static str,
    sha256: &'static str,
}

const IGFOLD_WHEEL: Wheel = Wheel {
    requirement: "igfold==1.0.1",
    file: "igfold-1.0.1-py3-none-any.whl",
    sha256: "d939ebd6c6f67b0495eb605b2d0187eb1e49bdfeabf278dac0678b649edb7c4c",
};
const ANTIBERTY_WHEEL: Wheel = Wheel {
    requirement: "antiberty==0.1.3",
    file: "antiberty-0.1.3-py3-none-any.whl",
    sha256: "30d910992b190013871bac49cdc032e01a19339f7d2b958ab99b0eb44638352a",
};

/// The ensemble members shipped in the wheel (there is no igfold_4), in load order.
pub const MEMBERS: [&str; 4] = ["igfold_1", "igfold_2", "igfold_3", "igfold_5"];
pub const ANTIBERTY_FILE: &str = "antiberty.safetensors";
const MEMBER_DIR_IN_WHEEL: &str = "igfold/trained_models/IgFold";
const ANTIBERTY_IN_WHEEL: &str = "antiberty/trained_models/AntiBERTy_md_smooth/pytorch_model.bin";
/// Largest wheel entry we agree to read into memory.
const MAX_ENTRY_BYTES: u64 = 256 << 20;

pub const LICENCE_NOTICE: &str = "IgFold weights: (c) Johns Hopkins University, academic \
software licence, non-commercial use only (text in IGFOLD_LICENSE.md beside the weights). \
AntiBERTy 0.1.3: MIT licence.";

/// `$FERROFOLD_HOME`, else `$XDG_CACHE_HOME/ferrofold`, else `~/.cache/ferrofold`.
pub fn ferrofold_home() -> PathBuf {
    if let Some(h) = std::env::var_os("FERROFOLD_HOME") {
        return PathBuf::from(h);
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    cache.join("ferrofold")
}

/// Folder holding the converted IgFold weights.
pub fn igfold_dir(home: &Path) -> PathBuf {
    home.join("igfold-1.0.1")
}

/// True when every file the model loads is present.
pub fn igfold_weights_present(dir: &Path) -> bool {
    MEMBERS
        .iter()
        .map(|m| format!("{m}.safetensors"))
        .chain(std::iter::once(ANTIBERTY_FILE.to_string()))
        .all(|f| dir.join(f).is_file())
}

/// Downloads both wheels with pip (or takes them from `wheel_dir`), checks their digests
/// and writes the weights into `dest` atomically (a temporary sibling folder renamed into
/// place). Progress goes to stderr.
pub fn fetch_igfold(dest: &Path, wheel_dir: Option<&Path>) -> anyhow::Result<()> {
    let parent = dest
        .parent()
        .ok_or_else(|| anyhow::anyhow!("{} has no parent folder", dest.display()))?;
    std::fs::create_dir_all(parent)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", parent.display()))?;
    let download = tempfile::tempdir_in(parent)?;
    let wheels = match wheel_dir {
        Some(d) => d.to_path_buf(),
        None => {
            pip_download(download.path())?;
            download.path().to_path_buf()
        }
    };
    let staging = tempfile::tempdir_in(parent)?;
    let mut igfold = open_wheel(&wheels, &IGFOLD_WHEEL)?;
    let mut antiberty = open_wheel(&wheels, &ANTIBERTY_WHEEL)?;
    eprintln!("{LICENCE_NOTICE}");
    for m in MEMBERS {
        let bytes = read_entry(
            &mut igfold,
            &format!("{MEMBER_DIR_IN_WHEEL}/{m}.safetensors"),
        )?;
        std::fs::write(staging.path().join(format!("{m}.safetensors")), bytes)?;
    }
    let licence = read_entry(&mut igfold, &format!("{MEMBER_DIR_IN_WHEEL}/LICENSE.md"))?;
    std::fs::write(staging.path().join("IGFOLD_LICENSE.md"), licence)?;
    let ckpt = staging.path().join("pytorch_model.bin");
    std::fs::write(&ckpt, read_entry(&mut antiberty, ANTIBERTY_IN_WHEEL)?)?;
    let store = load_torch_checkpoint(&ckpt)?;
    let tensors: Vec<_> = store.iter().collect();
    save_safetensors(
        staging.path().join(ANTIBERTY_FILE),
        &tensors,
        &Default::default(),
    )?;
    std::fs::remove_file(&ckpt)?;
    if dest.exists() {
        std::fs::remove_dir_all(dest)?;
    }
    std::fs::rename(staging.keep(), dest)
        .map_err(|e| anyhow::anyhow!("cannot move weights into {}: {e}", dest.display()))?;
    eprintln!("IgFold weights written to {}", dest.display());
    Ok(())
}

fn pip_download(into: &Path) -> anyhow::Result<()> {
    eprintln!(
        "downloading {} and {} with pip ...",
        IGFOLD_WHEEL.requirement, ANTIBERTY_WHEEL.requirement
    );
    let hint = "run `ferrofold weights fetch igfold` where python3 with pip can reach PyPI, \
        or pass --wheel-dir with the two wheels downloaded by `python3 -m pip download --no-deps \
        igfold==1.0.1 antiberty==0.1.3`";
    let out = Command::new("python3")
        .args([
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary",
            ":all:",
            "-d",
        ])
        .arg(into)
        .args([IGFOLD_WHEEL.requirement, ANTIBERTY_WHEEL.requirement])
        .output()
        .map_err(|e| anyhow::anyhow!("cannot run python3 -m pip ({e}); {hint}"))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let last = err
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        anyhow::bail!("pip download failed: {last}; {hint}");
    }
    Ok(())
}

/// Opens a wheel after checking its sha256 against the pinned digest.
fn open_wheel(dir: &Path, wheel: &Wheel) -> anyhow::Result<zip::ZipArchive<std::fs::File>> {
    let path = dir.join(wheel.file);
    let bytes =
        std::fs::read(&path).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    let digest = format!("{:x}", Sha256::digest(&bytes));
    if digest != wheel.sha256 {
        anyhow::bail!(
            "{} has sha256 {digest}, expected {}: refusing a wheel that is not the pinned release",
            path.display(),
            wheel.sha256
        );
    }
    let file = std::fs::File::open(&path)?;
    zip::ZipArchive::new(file).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

/// Reads one named entry, refusing anything larger than [`MAX_ENTRY_BYTES`].
fn read_entry(zip: &mut zip::ZipArchive<std::fs::File>, name: &str) -> anyhow::Result<Vec<u8>> {
    let entry = zip
        .by_name(name)
        .map_err(|e| anyhow::anyhow!("wheel entry {name}: {e}"))?;
    if entry.size() > MAX_ENTRY_BYTES {
        anyhow::bail!(
            "wheel entry {name} is {} bytes, over the limit",
            entry.size()
        );
    }
    let mut out = Vec::with_capacity(entry.size() as usize);
    entry.take(MAX_ENTRY_BYTES).read_to_end(&mut out)?;
    Ok(out)
}

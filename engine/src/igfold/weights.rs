//! Fetching the IgFold and AntiBERTy weights from their PyPI wheels into the cache
//! folder, checked by sha256, with AntiBERTy converted from its pickle checkpoint to
//! safetensors (read by our restricted unpickler: nothing in it is executed).

use ferrofold_io::weights::{load_torch_checkpoint, read_zip_entry, save_safetensors};
use sha2::{Digest, Sha256};
use std::io::Cursor;
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

/// `$FERROFOLD_HOME`, else `$XDG_CACHE_HOME/ferrofold`, else `~/.cache/ferrofold`. No
/// shared temporary folder is ever used: weights found there could be anyone's.
pub fn ferrofold_home() -> anyhow::Result<PathBuf> {
    let nonempty = |v: &str| {
        std::env::var_os(v)
            .filter(|s| !s.is_empty())
            .map(PathBuf::from)
    };
    nonempty("FERROFOLD_HOME")
        .or_else(|| nonempty("XDG_CACHE_HOME").map(|c| c.join("ferrofold")))
        .or_else(|| nonempty("HOME").map(|h| h.join(".cache").join("ferrofold")))
        .ok_or_else(|| anyhow::anyhow!("no cache folder: set FERROFOLD_HOME (or HOME)"))
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
/// and installs the weights into `dest` atomically: they are written to a temporary
/// sibling folder, any previous `dest` is renamed aside, the new folder renamed in, and
/// only then the old one deleted. Progress goes to stderr.
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
        let name = format!("{MEMBER_DIR_IN_WHEEL}/{m}.safetensors");
        let bytes = read_zip_entry(&mut igfold, &name, MAX_ENTRY_BYTES, IGFOLD_WHEEL.file)?;
        std::fs::write(staging.path().join(format!("{m}.safetensors")), bytes)?;
    }
    let name = format!("{MEMBER_DIR_IN_WHEEL}/LICENSE.md");
    let licence = read_zip_entry(&mut igfold, &name, MAX_ENTRY_BYTES, IGFOLD_WHEEL.file)?;
    std::fs::write(staging.path().join("IGFOLD_LICENSE.md"), licence)?;
    let ckpt = staging.path().join("pytorch_model.bin");
    let bytes = read_zip_entry(
        &mut antiberty,
        ANTIBERTY_IN_WHEEL,
        MAX_ENTRY_BYTES,
        ANTIBERTY_WHEEL.file,
    )?;
    std::fs::write(&ckpt, bytes)?;
    let store = load_torch_checkpoint(&ckpt)?;
    let tensors: Vec<_> = store.iter()?.collect();
    save_safetensors(
        staging.path().join(ANTIBERTY_FILE),
        &tensors,
        &Default::default(),
    )?;
    std::fs::remove_file(&ckpt)?;
    let old = tempfile::tempdir_in(parent)?;
    let previous = old.path().join("previous");
    let had_previous = dest.exists();
    if had_previous {
        std::fs::rename(dest, &previous)?;
    }
    if let Err(e) = std::fs::rename(staging.path(), dest) {
        if had_previous {
            let _ = std::fs::rename(&previous, dest);
        }
        anyhow::bail!("cannot move weights into {}: {e}", dest.display());
    }
    let _ = staging.keep(); // renamed away: nothing left to clean up
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

/// Opens a wheel after checking its sha256 against the pinned digest; the archive is read
/// from the very bytes that were hashed.
fn open_wheel(dir: &Path, wheel: &Wheel) -> anyhow::Result<zip::ZipArchive<Cursor<Vec<u8>>>> {
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
    zip::ZipArchive::new(Cursor::new(bytes)).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

//! NumPy `.npz` archives (AlphaFold's parameter files): a zip of `.npy` arrays, read in
//! memory (nothing is extracted) with the same size budget as PyTorch checkpoints.

use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use zip::ZipArchive;

use super::dtype::ElemType;
use super::torch_zip::{read_entry, MAX_CHECKPOINT_BYTES};
use super::TensorStore;
use crate::{IoError, Result};
use ferrofold_kernels::Tensor;

/// Loads every array of an `.npz` file as f32, named by its entry without `.npy`
/// (AlphaFold keys such as `alphafold/.../attention//query_w` keep their slashes).
pub fn load_npz(path: impl AsRef<Path>) -> Result<TensorStore> {
    let path = path.as_ref();
    let origin = path.display().to_string();
    let file = File::open(path).map_err(|e| IoError::file(path, e))?;
    let mut zip = ZipArchive::new(BufReader::new(file))
        .map_err(|e| IoError::weights(&origin, format!("not a readable npz (zip) archive: {e}")))?;
    let names = zip
        .file_names()
        .map(|n| n.map(|n| n.into_owned()))
        .collect::<std::result::Result<Vec<String>, _>>()
        .map_err(|e| IoError::weights(&origin, format!("bad entry name: {e}")))?;
    let mut store = TensorStore::new(&origin);
    let mut budget = MAX_CHECKPOINT_BYTES;
    for entry in names {
        let Some(name) = entry.strip_suffix(".npy") else {
            continue;
        };
        let bytes = read_entry(&mut zip, &entry, budget, &origin)?;
        budget -= bytes.len() as u64;
        let tensor = parse_npy(&bytes)
            .map_err(|m| IoError::weights(&origin, format!("array `{name}`: {m}")))?;
        store.insert(name.to_string(), tensor);
    }
    if store.is_empty() {
        return Err(IoError::weights(&origin, "holds no .npy arrays"));
    }
    Ok(store)
}

/// Writes `arrays` as an uncompressed `.npz` of little-endian f32 `.npy` entries (what
/// `numpy.load` reads), atomically.
pub fn save_npz(path: impl AsRef<Path>, arrays: &[(&str, &Tensor)]) -> Result<()> {
    let path = path.as_ref();
    crate::atomic::write_atomic(path, &npz_bytes(arrays)?)
}

/// The bytes of an `.npz` holding `arrays` (see [`save_npz`]).
pub fn npz_bytes(arrays: &[(&str, &Tensor)]) -> Result<Vec<u8>> {
    use std::io::Write;
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .large_file(true);
    let fail = |e: &dyn std::fmt::Display| IoError::weights("npz output", e.to_string());
    for (name, t) in arrays {
        zip.start_file(format!("{name}.npy"), opts)
            .map_err(|e| fail(&e))?;
        zip.write_all(&npy_bytes(t)).map_err(|e| fail(&e))?;
    }
    Ok(zip.finish().map_err(|e| fail(&e))?.into_inner())
}

/// One `.npy` (format 1.0) holding `t` as little-endian f32.
fn npy_bytes(t: &Tensor) -> Vec<u8> {
    let dims: Vec<String> = t.shape().iter().map(|d| d.to_string()).collect();
    let shape = match dims.len() {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}");
    // Pad so that the data starts on a 64-byte boundary, ending the header with '\n'.
    let unpadded = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - unpadded % 64) % 64));
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend(t.data().iter().flat_map(|v| v.to_le_bytes()));
    out
}

/// Parses one `.npy` file (format versions 1–3, little-endian, C order).
pub(crate) fn parse_npy(bytes: &[u8]) -> std::result::Result<Tensor, String> {
    let rest = bytes
        .strip_prefix(b"\x93NUMPY")
        .ok_or("not an .npy array (bad magic)")?;
    let (&major, rest) = rest.split_first().ok_or("truncated header")?;
    let rest = rest.get(1..).ok_or("truncated header")?;
    let (len, rest) = match major {
        1 => (u16::from_le_bytes([rest[0], rest[1]]) as usize, &rest[2..]),
        2 | 3 if rest.len() >= 4 => (
            u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize,
            &rest[4..],
        ),
        _ => return Err(format!("unsupported .npy version {major}")),
    };
    let header = std::str::from_utf8(rest.get(..len).ok_or("truncated header")?)
        .map_err(|_| "header is not text")?;
    let data = &rest[len..];
    let descr = dict_value(header, "descr").ok_or("header has no descr")?;
    let descr = descr.trim_matches(|c| c == '\'' || c == '"');
    let elem = match descr {
        "<f4" => ElemType::F32,
        "<f8" => ElemType::F64,
        "<f2" => ElemType::F16,
        "<i8" => ElemType::I64,
        "<i4" => ElemType::I32,
        "<i2" => ElemType::I16,
        "|i1" => ElemType::I8,
        "|u1" => ElemType::U8,
        "|b1" => ElemType::Bool,
        other => {
            return Err(format!(
                "unsupported dtype {other} (only little-endian numbers)"
            ))
        }
    };
    if dict_value(header, "fortran_order").map(str::trim) != Some("False") {
        return Err("Fortran-ordered arrays are not supported".into());
    }
    let shape_text = dict_value(header, "shape").ok_or("header has no shape")?;
    let shape = shape_text
        .trim_matches(|c| c == '(' || c == ')')
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<usize>()
                .map_err(|_| format!("bad shape {shape_text}"))
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let numel = shape
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .ok_or("shape overflows")?;
    if numel.checked_mul(elem.size()) != Some(data.len()) {
        return Err(format!(
            "shape {shape:?} of {descr} needs {} bytes but {} follow the header",
            numel.saturating_mul(elem.size()),
            data.len()
        ));
    }
    Tensor::new(&shape, elem.decode(data)).map_err(|e| e.to_string())
}

/// The text of `'key': value` in a NumPy header dict (values are scalars, strings or
/// tuples; a tuple ends at its closing parenthesis).
fn dict_value<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let start = header.find(&format!("'{key}':"))? + key.len() + 3;
    let rest = header[start..].trim_start();
    let end = if rest.starts_with('(') {
        rest.find(')')? + 1
    } else {
        rest.find([',', '}'])?
    };
    Some(&rest[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn npy(descr: &str, shape: &str, data: &[u8]) -> Vec<u8> {
        let header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
        let mut out = b"\x93NUMPY\x01\x00".to_vec();
        out.extend_from_slice(&(header.len() as u16).to_le_bytes());
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(data);
        out
    }

    #[test]
    fn parses_arrays_and_scalars() {
        let data: Vec<u8> = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let t = parse_npy(&npy("<f4", "(2, 3)", &data)).unwrap();
        assert_eq!(t.shape(), &[2, 3]);
        assert_eq!(t.data()[5], 6.0);
        let s = parse_npy(&npy("<i4", "()", &7i32.to_le_bytes())).unwrap();
        assert_eq!((s.shape(), s.data()), (&[][..], &[7.0][..]));
        let v = parse_npy(&npy("<f8", "(1,)", &2.5f64.to_le_bytes())).unwrap();
        assert_eq!(v.data(), &[2.5]);
    }

    #[test]
    fn refuses_bad_arrays() {
        let err = parse_npy(&npy("<f4", "(2, 3)", &[0u8; 20])).unwrap_err();
        assert!(err.contains("needs 24 bytes"), "{err}");
        assert!(parse_npy(&npy(">f4", "(1,)", &[0; 4]))
            .unwrap_err()
            .contains("unsupported dtype"));
        assert!(parse_npy(b"\x93NUMPY").is_err());
        assert!(parse_npy(b"garbage").unwrap_err().contains("magic"));
        let huge = npy("<f4", "(4294967296, 4294967296, 16)", &[]);
        assert!(parse_npy(&huge).is_err());
    }

    #[test]
    fn saved_npz_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.npz");
        let a = Tensor::from_fn(&[2, 3], |i| i as f32 * 0.5);
        let s = Tensor::new(&[], vec![7.0]).unwrap();
        let v = Tensor::new(&[1], vec![2.0]).unwrap();
        save_npz(&path, &[("a", &a), ("scalar", &s), ("v", &v)]).unwrap();
        let store = load_npz(&path).unwrap();
        assert_eq!(store.root().get_any("a").unwrap(), &a);
        assert_eq!(store.root().get_any("scalar").unwrap(), &s);
        assert_eq!(store.root().get_any("v").unwrap(), &v);
    }

    #[test]
    fn loads_an_npz_archive() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.npz");
        let mut zip = zip::ZipWriter::new(File::create(&path).unwrap());
        let opts = zip::write::SimpleFileOptions::default();
        zip.start_file("alphafold/evoformer//weights.npy", opts)
            .unwrap();
        zip.write_all(&npy("<f4", "(1,)", &1.5f32.to_le_bytes()))
            .unwrap();
        zip.finish().unwrap();
        let store = load_npz(&path).unwrap();
        assert_eq!(
            store
                .root()
                .get_any("alphafold/evoformer//weights")
                .unwrap()
                .data(),
            &[1.5]
        );
    }
}

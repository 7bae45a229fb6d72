//! NumPy `.npz` archives (AlphaFold's parameter files): a zip of `.npy` arrays, read
//! without extracting anything and with the same size budget as PyTorch checkpoints.
//!
//! Uncompressed members (what `numpy.savez` writes, and the official AlphaFold files) are
//! not loaded: the store keeps each array's shape and offset and reads an array, or one
//! layer of a stacked array, straight into the tensor that asks for it. Compressed members
//! (`numpy.savez_compressed`) are decompressed and decoded on opening.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use zip::{CompressionMethod, ZipArchive};

use super::dtype::ElemType;
use super::store::InFile;
use super::torch_zip::{charge_f32, read_entry, MAX_CHECKPOINT_BYTES};
use super::TensorStore;
use crate::{IoError, Result};
use ferrofold_kernels::Tensor;

/// Largest `.npy` header read (NumPy writes well under 1 KiB).
const MAX_HEADER_BYTES: u64 = 1 << 20;

/// Opens an `.npz` file as f32 arrays, named by their entries without `.npy` (AlphaFold
/// keys such as `alphafold/.../attention//query_w` keep their slashes). Every header is
/// checked and every member's checksum verified here; uncompressed arrays are then read on
/// request (see the module documentation), so the file must stay in place while the store
/// is used.
pub fn load_npz(path: impl AsRef<Path>) -> Result<TensorStore> {
    let path = path.as_ref();
    let origin = path.display().to_string();
    let file = File::open(path).map_err(|e| IoError::file(path, e))?;
    let reader = file.try_clone().map_err(|e| IoError::file(path, e))?;
    let mut zip = ZipArchive::new(BufReader::new(reader))
        .map_err(|e| IoError::weights(&origin, format!("not a readable npz (zip) archive: {e}")))?;
    let names = zip
        .file_names()
        .map(|n| n.map(|n| n.into_owned()))
        .collect::<std::result::Result<Vec<String>, _>>()
        .map_err(|e| IoError::weights(&origin, format!("bad entry name: {e}")))?;
    let mut store = TensorStore::with_file(&origin, file);
    // As for PyTorch checkpoints: the bytes read, and apart the f32 values they make.
    let (mut read_budget, mut produced_budget) = (MAX_CHECKPOINT_BYTES, MAX_CHECKPOINT_BYTES);
    for entry in names {
        let Some(name) = entry.strip_suffix(".npy") else {
            continue;
        };
        let array_error = |m: String| IoError::weights(&origin, format!("array `{name}`: {m}"));
        if let Some((array, bytes)) = stored_array(&mut zip, &entry, read_budget, &origin)? {
            read_budget -= bytes;
            let array = array.map_err(array_error)?;
            store.insert_in_file(name, array);
            continue;
        }
        let bytes = read_entry(&mut zip, &entry, read_budget, &origin)?;
        read_budget -= bytes.len() as u64;
        let tensor = parse_npy(&bytes, &mut produced_budget).map_err(array_error)?;
        store.insert(name.to_string(), tensor);
    }
    if store.is_empty() {
        return Err(IoError::weights(&origin, "holds no .npy arrays"));
    }
    Ok(store)
}

/// For an uncompressed member `entry`: its array's place in the file (or what is wrong
/// with its header) and the member's size, after checking the size against `limit` and
/// the data against the member's CRC-32. `None` for compressed or encrypted members.
fn stored_array(
    zip: &mut ZipArchive<BufReader<File>>,
    entry: &str,
    limit: u64,
    origin: &str,
) -> Result<Option<(std::result::Result<InFile, String>, u64)>> {
    let fail = |message: String| IoError::weights(origin, format!("entry `{entry}`: {message}"));
    let index = zip
        .index_for_name(entry)
        .ok_or_else(|| fail("missing from the archive".into()))?;
    let mut member = zip.by_index_raw(index).map_err(|e| fail(e.to_string()))?;
    if member.compression() != CompressionMethod::Stored || member.encrypted() {
        return Ok(None);
    }
    let (size, crc) = (member.size(), member.crc32());
    if member.compressed_size() != size {
        return Err(fail(format!(
            "stored uncompressed, but {} bytes in the archive hold {size}",
            member.compressed_size()
        )));
    }
    if size > limit {
        return Err(fail(format!("{size} bytes is over the limit of {limit}")));
    }
    let data_start = member
        .data_start()
        .ok_or_else(|| fail("no data offset".into()))?;
    // The header, then the rest of the member through the checksum without keeping it.
    let mut hasher = crc32fast::Hasher::new();
    let mut header = vec![0u8; size.min(12) as usize];
    member
        .read_exact(&mut header)
        .map_err(|e| fail(e.to_string()))?;
    let parsed = npy_header_len(&header).and_then(|len| {
        if len < header.len() || len as u64 > size.min(MAX_HEADER_BYTES) {
            return Err(format!("truncated or oversized header ({len} bytes)"));
        }
        let mut rest = vec![0u8; len - header.len()];
        member
            .read_exact(&mut rest)
            .map_err(|e| format!("cannot read header: {e}"))?;
        header.extend_from_slice(&rest);
        let h = parse_npy_header(&header)?;
        h.check_data_len(size as usize - len)?;
        Ok(InFile {
            shape: h.shape,
            elem: h.elem,
            offset: data_start + len as u64,
        })
    });
    hasher.update(&header);
    let mut buf = vec![0u8; 1 << 20];
    let mut read = header.len() as u64;
    loop {
        let n = member.read(&mut buf).map_err(|e| fail(e.to_string()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        read += n as u64;
    }
    if read != size {
        return Err(fail(format!(
            "holds {read} bytes but its header says {size}"
        )));
    }
    if hasher.finalize() != crc {
        return Err(fail("checksum mismatch (corrupt file)".into()));
    }
    Ok(Some((parsed, size)))
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

/// Parses one `.npy` file (format versions 1–3, little-endian, C order), taking its f32
/// values from `budget` (bytes) first: a compressed member of one-byte elements would
/// otherwise grow fourfold past the checkpoint limit.
pub(crate) fn parse_npy(bytes: &[u8], budget: &mut u64) -> std::result::Result<Tensor, String> {
    let len = npy_header_len(bytes)?;
    let header = parse_npy_header(bytes)?;
    let data = &bytes[len..];
    charge_f32(header.check_data_len(data.len())?, budget)?;
    Tensor::new(&header.shape, header.elem.decode(data)).map_err(|e| e.to_string())
}

/// What an `.npy` header declares.
struct NpyHeader {
    descr: String,
    elem: ElemType,
    shape: Vec<usize>,
}

impl NpyHeader {
    /// Checks that `len` data bytes are exactly the declared array; its element count.
    fn check_data_len(&self, len: usize) -> std::result::Result<usize, String> {
        let numel = self
            .shape
            .iter()
            .try_fold(1usize, |n, &d| n.checked_mul(d))
            .ok_or("shape overflows")?;
        if numel.checked_mul(self.elem.size()) != Some(len) {
            return Err(format!(
                "shape {:?} of {} needs {} bytes but {len} follow the header",
                self.shape,
                self.descr,
                numel.saturating_mul(self.elem.size()),
            ));
        }
        Ok(numel)
    }
}

/// Where the data of an `.npy` file starts (magic, version and header length read from
/// the first 10 or 12 bytes of `bytes`).
fn npy_header_len(bytes: &[u8]) -> std::result::Result<usize, String> {
    let rest = bytes
        .strip_prefix(b"\x93NUMPY")
        .ok_or("not an .npy array (bad magic)")?;
    let (&major, rest) = rest.split_first().ok_or("truncated header")?;
    let rest = rest.get(1..).ok_or("truncated header")?;
    match major {
        1 if rest.len() >= 2 => Ok(10 + u16::from_le_bytes([rest[0], rest[1]]) as usize),
        2 | 3 if rest.len() >= 4 => {
            let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
            Ok(12 + len)
        }
        1..=3 => Err("truncated header".into()),
        _ => Err(format!("unsupported .npy version {major}")),
    }
}

/// The header of the `.npy` file that `bytes` starts with (`bytes` holds at least the
/// whole header).
fn parse_npy_header(bytes: &[u8]) -> std::result::Result<NpyHeader, String> {
    let end = npy_header_len(bytes)?;
    let start = if bytes[6] == 1 { 10 } else { 12 };
    let header = std::str::from_utf8(bytes.get(start..end).ok_or("truncated header")?)
        .map_err(|_| "header is not text")?;
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
    Ok(NpyHeader {
        descr: descr.to_string(),
        elem,
        shape,
    })
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

    fn parse_unlimited(bytes: &[u8]) -> std::result::Result<Tensor, String> {
        let mut budget = u64::MAX;
        parse_npy(bytes, &mut budget)
    }

    #[test]
    fn parses_arrays_and_scalars() {
        let data: Vec<u8> = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let t = parse_unlimited(&npy("<f4", "(2, 3)", &data)).unwrap();
        assert_eq!(t.shape(), &[2, 3]);
        assert_eq!(t.data()[5], 6.0);
        let s = parse_unlimited(&npy("<i4", "()", &7i32.to_le_bytes())).unwrap();
        assert_eq!((s.shape(), s.data()), (&[][..], &[7.0][..]));
        let v = parse_unlimited(&npy("<f8", "(1,)", &2.5f64.to_le_bytes())).unwrap();
        assert_eq!(v.data(), &[2.5]);
    }

    #[test]
    fn refuses_bad_arrays() {
        let err = parse_unlimited(&npy("<f4", "(2, 3)", &[0u8; 20])).unwrap_err();
        assert!(err.contains("needs 24 bytes"), "{err}");
        assert!(parse_unlimited(&npy(">f4", "(1,)", &[0; 4]))
            .unwrap_err()
            .contains("unsupported dtype"));
        assert!(parse_unlimited(b"\x93NUMPY").is_err());
        assert!(parse_unlimited(b"garbage").unwrap_err().contains("magic"));
        let huge = npy("<f4", "(4294967296, 4294967296, 16)", &[]);
        assert!(parse_unlimited(&huge).is_err());
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

    /// A stored (uncompressed) npz: arrays are read from the file on request, a layer of a
    /// stacked array alone, transposed while read, and every use is tracked.
    #[test]
    fn stored_arrays_are_read_on_request() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("params.npz");
        let stack = Tensor::from_fn(&[3, 2, 4], |i| i as f32);
        let b = Tensor::from_fn(&[5], |i| -(i as f32));
        save_npz(&path, &[("m/stack//w", &stack), ("m//b", &b)]).unwrap();
        let store = load_npz(&path).unwrap();
        let p = store.root_haiku().sub("m");
        let w1 = p.sub("stack").layer(1).get_owned("w", &[2, 4]).unwrap();
        assert_eq!(w1.data(), &stack.data()[8..16]);
        let t = p
            .sub("stack")
            .layer(2)
            .get_owned_transposed("w", &[2, 4], 1)
            .unwrap();
        assert_eq!(t.shape(), [4, 2]);
        assert_eq!(t.data(), &[16.0, 20.0, 17.0, 21.0, 18.0, 22.0, 19.0, 23.0]);
        assert_eq!(store.unused(), ["m//b"]);
        let err = p.get_owned("b", &[4]).unwrap_err().to_string();
        assert!(err.contains("`m//b`") && err.contains("[5]"), "{err}");
        assert_eq!(p.get_any("b").unwrap(), &b);
        assert_eq!(p.get("b", &[5]).unwrap(), &b);
        let all: Vec<_> = store.iter().unwrap().map(|(n, t)| (n, t.len())).collect();
        assert_eq!(all, [("m//b", 5), ("m/stack//w", 24)]);
    }

    #[test]
    fn stored_arrays_are_checked_on_opening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("params.npz");
        let a = Tensor::from_fn(&[64], |i| i as f32);
        let bytes = npz_bytes(&[("a", &a)]).unwrap();
        // A flipped data byte: the member's CRC-32 no longer matches.
        let mut corrupt = bytes.clone();
        let at = corrupt.windows(6).position(|w| w == b"\x93NUMPY").unwrap() + 128 + 100;
        corrupt[at] ^= 1;
        std::fs::write(&path, &corrupt).unwrap();
        let err = load_npz(&path).unwrap_err().to_string();
        assert!(
            err.contains("entry `a.npy`") && err.contains("checksum"),
            "{err}"
        );
        // A header whose shape does not match the data that follows it.
        let header = bytes.windows(5).position(|w| w == b"(64,)").unwrap();
        let mut lying = bytes.clone();
        lying[header..header + 5].copy_from_slice(b"(65,)");
        // Keep the CRC right so that only the shape is wrong.
        let member = lying.windows(6).position(|w| w == b"\x93NUMPY").unwrap();
        let crc = crc32fast::hash(&lying[member..member + 128 + 256]);
        for pos in [
            14,
            lying.windows(4).position(|w| w == b"PK\x01\x02").unwrap() + 16,
        ] {
            lying[pos..pos + 4].copy_from_slice(&crc.to_le_bytes());
        }
        std::fs::write(&path, &lying).unwrap();
        let err = load_npz(&path).unwrap_err().to_string();
        assert!(err.contains("array `a`: shape [65]"), "{err}");
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

    /// Writes one member `name` holding `bytes`, stored or deflated.
    fn one_member_npz(path: &Path, name: &str, bytes: &[u8], stored: bool) {
        use std::io::Write;
        let mut zip = zip::ZipWriter::new(File::create(path).unwrap());
        let method = if stored {
            CompressionMethod::Stored
        } else {
            CompressionMethod::Deflated
        };
        let opts = zip::write::SimpleFileOptions::default().compression_method(method);
        zip.start_file(name, opts).unwrap();
        zip.write_all(bytes).unwrap();
        zip.finish().unwrap();
    }

    #[test]
    fn a_header_shorter_than_its_prefix_is_refused() {
        // Version 1 declaring a 0-byte header: it would end before the 12 bytes read first.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.npz");
        let mut bytes = b"\x93NUMPY\x01\x00\x00\x00".to_vec();
        bytes.extend_from_slice(&[0; 16]);
        one_member_npz(&path, "a.npy", &bytes, true);
        let err = load_npz(&path).unwrap_err().to_string();
        assert!(err.contains("array `a`") && err.contains("header"), "{err}");
    }

    #[test]
    fn decoded_values_count_against_the_limit() {
        // One-byte elements grow fourfold as f32: the budget sees the f32 size first.
        let bytes = npy("|u1", "(1000,)", &[0; 1000]);
        let err = parse_npy(&bytes, &mut 3999).unwrap_err();
        assert!(err.contains("1000 elements exceed"), "{err}");
        let mut budget = 4000;
        assert_eq!(parse_npy(&bytes, &mut budget).unwrap().len(), 1000);
        assert_eq!(budget, 0);
        // Through a deflated member too.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.npz");
        one_member_npz(&path, "a.npy", &bytes, false);
        assert_eq!(
            load_npz(&path).unwrap().root().get_any("a").unwrap().len(),
            1000
        );
    }
}

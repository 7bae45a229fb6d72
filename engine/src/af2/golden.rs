//! Test access to the module goldens in tests/data/af2 (see tools/reference/af2/README.md):
//! `input/<name>`, `output` or `output/<name>`, and `params/<official key>` with the layer
//! axis dropped, so that `params().sub("alphafold")...` reads them like the real npz.

use ferrofold_io::weights::{load_safetensors, Scope, TensorStore};
use ferrofold_kernels::Tensor;

pub struct Golden {
    store: TensorStore,
    /// Parameters, when the golden borrows them from another file.
    params: Option<TensorStore>,
}

impl Golden {
    /// Loads `tests/data/af2/<name>.safetensors` (and the file its parameters live in).
    pub fn load(name: &str) -> Self {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/data/af2");
        let open = |n: &str| {
            load_safetensors(format!("{dir}/{n}.safetensors"))
                .unwrap_or_else(|e| panic!("golden {n}: {e}"))
        };
        let store = open(name);
        let meta: serde_json::Value =
            serde_json::from_str(&store.metadata()["af2_golden"]).expect("golden metadata");
        let params = meta["params_file"]
            .as_str()
            .map(|f| f.trim_end_matches(".safetensors"))
            .filter(|f| *f != "self" && *f != name)
            .map(open);
        Self { store, params }
    }

    pub fn input(&self, name: &str) -> Tensor {
        self.get(&format!("input/{name}"))
    }

    /// `output` or `output/<name>`.
    pub fn output(&self, name: Option<&str>) -> Tensor {
        self.get(&name.map_or("output".to_string(), |n| format!("output/{n}")))
    }

    /// The root of the official key space (`alphafold/...`).
    pub fn params(&self) -> Scope<'_> {
        self.params
            .as_ref()
            .unwrap_or(&self.store)
            .root_haiku()
            .sub("params")
    }

    fn get(&self, name: &str) -> Tensor {
        self.store
            .root()
            .get_any(name)
            .unwrap_or_else(|e| panic!("{e}"))
            .clone()
    }
}

/// Largest absolute difference within `tol` x max(1, max |want|), after checking shapes
/// agree and that `got` is finite (`max_abs_diff` would pass over a NaN).
pub fn assert_close(got: &Tensor, want: &Tensor, tol: f32, what: &str) {
    assert_eq!(got.shape(), want.shape(), "{what}: shape");
    assert!(
        got.data().iter().all(|v| v.is_finite()),
        "{what}: non-finite output"
    );
    let err = got.max_abs_diff(want);
    let scale = want.data().iter().fold(0f32, |m, v| m.max(v.abs()));
    eprintln!("{what}: max abs diff {err:.2e} (max |value| {scale:.2})");
    assert!(
        err <= tol * scale.max(1.0),
        "{what}: max abs diff {err} > {tol} x {scale}"
    );
}

/// [`assert_close`], and also strictly within `tol` x max |want| (no floor at 1).
pub fn assert_close_strict(got: &Tensor, want: &Tensor, tol: f32, what: &str) {
    assert_close(got, want, tol, what);
    let scale = want.data().iter().fold(0f32, |m, v| m.max(v.abs()));
    let err = got.max_abs_diff(want);
    assert!(err <= tol * scale, "{what}: {err} > {tol} x {scale}");
}

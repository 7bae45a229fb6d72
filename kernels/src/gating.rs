//! Global attention's gating on the host: the CPU twin of the CUDA kernel
//! `broadcast_sigmoid_gate_f32` ([`crate::Backend::broadcast_sigmoid_gate`]).

use rayon::prelude::*;

use crate::{sigmoid, Tensor};

/// `gate[b, n, c] = sigmoid(gate[b, n, c]) * values[b, c]` in place: gate `[B, N, C]`, values
/// `[B, C]`.
pub fn broadcast_sigmoid_gate(gate: &mut Tensor, values: &Tensor) {
    let (_, n, c) = broadcast_gate_dims(gate, values);
    let values = values.data();
    gate.data_mut()
        .par_chunks_mut((n * c).max(1))
        .zip(values.par_chunks(c.max(1)))
        .for_each(|(rows, v)| {
            for row in rows.chunks_mut(c.max(1)) {
                row.iter_mut()
                    .zip(v)
                    .for_each(|(g, v)| *g = sigmoid(*g) * v);
            }
        });
}

/// `(B, N, C)` of [`broadcast_sigmoid_gate`]'s gate, after checking the values' shape
/// against it.
pub(crate) fn broadcast_gate_dims(gate: &Tensor, values: &Tensor) -> (usize, usize, usize) {
    let s = gate.shape();
    assert_eq!(
        s.len(),
        3,
        "broadcast_sigmoid_gate: the gate must be [B, N, C]"
    );
    assert_eq!(
        values.shape(),
        &[s[0], s[2]],
        "broadcast_sigmoid_gate: values for gate {s:?}"
    );
    (s[0], s[1], s[2])
}

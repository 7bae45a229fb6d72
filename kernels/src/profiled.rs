//! `FERROFOLD_PROFILE=1`: every op a model calls, timed. [`Profiled`] wraps a backend and adds
//! each call's wall time to its op, so a run can say how much of it went to which op and how
//! much to the model's own host code between them (printed to stderr when it is dropped, over
//! its whole life). Ops that a backend composes from others
//! count once, under the op the model called. A device backend queues its work, so on a GPU set
//! `FERROFOLD_CUDA_PROFILE=1` too: each op then waits for its kernels.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::backend::{
    Activation, AttentionParams, Backend, GatedAttention, LinearParams, MatView, NormParams,
    OuterProductMeanParams, TriangleDirection, TriangleMultiplicationParams,
};
use crate::{PointAttention, Tensor};

/// The environment variable that turns the op profile on.
pub const PROFILE_ENV: &str = "FERROFOLD_PROFILE";

pub struct Profiled {
    inner: Box<dyn Backend>,
    created: Instant,
    /// Calls and wall time per op.
    ops: Mutex<HashMap<&'static str, (u64, Duration)>>,
}

impl Drop for Profiled {
    fn drop(&mut self) {
        eprint!("{}", self.report(self.created.elapsed()));
    }
}

impl Profiled {
    pub fn new(inner: Box<dyn Backend>) -> Profiled {
        Profiled {
            inner,
            created: Instant::now(),
            ops: Mutex::new(HashMap::new()),
        }
    }

    fn timed<T>(&self, op: &'static str, f: impl FnOnce() -> T) -> T {
        let since = Instant::now();
        let out = f();
        let mut ops = self.ops.lock().expect("no panic while the table is held");
        let entry = ops.entry(op).or_default();
        entry.0 += 1;
        entry.1 += since.elapsed();
        out
    }

    /// The ops by time, with their share of `total` (the run's wall time), and what the ops
    /// leave of it.
    pub fn report(&self, total: Duration) -> String {
        let ops = self.ops.lock().expect("no panic while the table is held");
        let mut rows: Vec<_> = ops.iter().collect();
        rows.sort_by_key(|(_, (_, time))| std::cmp::Reverse(*time));
        let share = |d: Duration| 100.0 * d.as_secs_f64() / total.as_secs_f64().max(1e-9);
        let mut out = format!("op profile of {:.3} s:\n", total.as_secs_f64());
        for (op, (calls, time)) in &rows {
            out += &format!(
                "  {op:<24} {calls:>8} calls {:>9.3} s {:>5.1} %\n",
                time.as_secs_f64(),
                share(*time)
            );
        }
        let in_ops: Duration = rows.iter().map(|(_, (_, t))| *t).sum();
        let rest = total.saturating_sub(in_ops);
        out += &format!(
            "  {:<24} {:>8}       {:>9.3} s {:>5.1} %\n",
            "(between the ops)",
            "",
            rest.as_secs_f64(),
            share(rest)
        );
        out
    }
}

impl Backend for Profiled {
    fn linear(&self, x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> Tensor {
        self.timed("linear", || self.inner.linear(x, w, b))
    }

    fn batched_matmul(&self, a: MatView<'_>, b: MatView<'_>) -> Tensor {
        self.timed("batched_matmul", || self.inner.batched_matmul(a, b))
    }

    fn layer_norm(&self, x: &Tensor, gamma: &Tensor, beta: &Tensor, eps: f32) -> Tensor {
        self.timed("layer_norm", || self.inner.layer_norm(x, gamma, beta, eps))
    }

    fn softmax(&self, x: &mut Tensor) {
        self.timed("softmax", || self.inner.softmax(x))
    }

    fn activate(&self, x: &mut Tensor, f: Activation) {
        self.timed("activate", || self.inner.activate(x, f))
    }

    fn add_assign(&self, x: &mut Tensor, y: &Tensor) {
        self.timed("add_assign", || self.inner.add_assign(x, y))
    }

    fn zeros(&self, shape: &[usize]) -> Tensor {
        self.timed("zeros", || self.inner.zeros(shape))
    }

    fn slice_rows(&self, x: &Tensor, range: Range<usize>) -> Tensor {
        self.timed("slice_rows", || self.inner.slice_rows(x, range))
    }

    fn write_rows(&self, out: &mut Tensor, start: usize, part: &Tensor) {
        self.timed("write_rows", || self.inner.write_rows(out, start, part))
    }

    fn keeps_layers(&self) -> bool {
        self.inner.keeps_layers()
    }

    fn chunk_elements(&self) -> usize {
        self.inner.chunk_elements()
    }

    fn swap_leading_axes(&self, x: &Tensor) -> Tensor {
        self.timed("swap_leading_axes", || self.inner.swap_leading_axes(x))
    }

    fn attention_probs(&self, q: &Tensor, k: &Tensor, bias: Option<&Tensor>, scale: f32) -> Tensor {
        self.timed("attention_probs", || {
            self.inner.attention_probs(q, k, bias, scale)
        })
    }

    fn masked_softmax(
        &self,
        x: &mut Tensor,
        bias: Option<&Tensor>,
        mask: Option<&Tensor>,
        scale: f32,
    ) {
        self.timed("masked_softmax", || {
            self.inner.masked_softmax(x, bias, mask, scale)
        })
    }

    fn outer_sum(&self, a: &Tensor, b: &Tensor) -> Tensor {
        self.timed("outer_sum", || self.inner.outer_sum(a, b))
    }

    fn one_hot_linear(&self, classes: &Tensor, w: &Tensor, b: &Tensor) -> Tensor {
        self.timed("one_hot_linear", || {
            self.inner.one_hot_linear(classes, w, b)
        })
    }

    fn broadcast_sigmoid_gate(&self, gate: &mut Tensor, values: &Tensor) {
        self.timed("broadcast_sigmoid_gate", || {
            self.inner.broadcast_sigmoid_gate(gate, values)
        });
    }

    fn softmax_expectations(&self, logits: &Tensor, values: &Tensor) -> Tensor {
        self.timed("softmax_expectations", || {
            self.inner.softmax_expectations(logits, values)
        })
    }

    fn point_attention_weights(&self, x: &mut Tensor, a: &PointAttention<'_>) {
        self.timed("point_attention_weights", || {
            self.inner.point_attention_weights(x, a)
        });
    }

    fn gated_attention(&self, a: &GatedAttention<'_>) -> Tensor {
        self.timed("gated_attention", || self.inner.gated_attention(a))
    }

    fn attention(
        &self,
        p: &AttentionParams<'_>,
        q_data: &Tensor,
        m_data: &Tensor,
        key_mask: Option<&Tensor>,
        pair_bias: Option<&Tensor>,
    ) -> Tensor {
        self.timed("attention", || {
            self.inner.attention(p, q_data, m_data, key_mask, pair_bias)
        })
    }

    fn transition(
        &self,
        x: &Tensor,
        norm: &NormParams<'_>,
        first: &LinearParams<'_>,
        second: &LinearParams<'_>,
    ) -> Tensor {
        self.timed("transition", || {
            self.inner.transition(x, norm, first, second)
        })
    }

    fn outer_product_mean(
        &self,
        msa: &Tensor,
        mask: &Tensor,
        p: &OuterProductMeanParams<'_>,
    ) -> Option<Tensor> {
        self.timed("outer_product_mean", || {
            self.inner.outer_product_mean(msa, mask, p)
        })
    }

    fn triangle_multiplication(
        &self,
        z: &Tensor,
        p: &TriangleMultiplicationParams<'_>,
        mask: Option<&Tensor>,
        dir: TriangleDirection,
    ) -> Tensor {
        self.timed("triangle_multiplication", || {
            self.inner.triangle_multiplication(z, p, mask, dir)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CpuBackend;

    #[test]
    fn ops_are_counted_and_timed_and_results_unchanged() {
        let be = Profiled::new(Box::new(CpuBackend));
        let x = Tensor::from_fn(&[3, 4], |i| i as f32);
        let w = Tensor::from_fn(&[2, 4], |i| 0.5 - i as f32);
        let since = Instant::now();
        for _ in 0..3 {
            assert_eq!(be.linear(&x, &w, None), CpuBackend.linear(&x, &w, None));
        }
        let mut y = x.clone();
        be.add_assign(&mut y, &x);
        assert_eq!(y, Tensor::from_fn(&[3, 4], |i| 2.0 * i as f32));
        let report = be.report(since.elapsed());
        assert!(
            report.contains("linear") && report.contains("       3 calls"),
            "{report}"
        );
        assert!(report.contains("add_assign") && report.contains("(between the ops)"));
    }
}

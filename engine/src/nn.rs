//! Parameterised layers shared by the models, loaded by checkpoint name.

use ferrofold_io::weights::Scope;
use ferrofold_kernels::{Backend, LinearParams, NormParams, Tensor};

/// Errors from loading parameters (missing or misshaped tensors carry their full name).
pub type LoadResult<T> = ferrofold_io::Result<T>;

/// `y = x W^T + b` with `W` stored `[out, in]`.
#[derive(Debug)]
pub struct Linear {
    pub w: Tensor, // [out, in]
    pub b: Option<Tensor>,
}

impl Linear {
    pub fn load(p: &Scope<'_>, d_in: usize, d_out: usize) -> LoadResult<Self> {
        Ok(Self {
            w: p.get("weight", &[d_out, d_in]).cloned()?,
            b: Some(p.get("bias", &[d_out]).cloned()?),
        })
    }

    pub fn load_no_bias(p: &Scope<'_>, d_in: usize, d_out: usize) -> LoadResult<Self> {
        Ok(Self {
            w: p.get("weight", &[d_out, d_in]).cloned()?,
            b: None,
        })
    }

    /// Haiku's `hk.Linear` (AlphaFold): `weights` stored `[in, out]`, transposed here once;
    /// `bias` when `with_bias`. Works in a stacked-layer scope.
    pub fn load_haiku(
        p: &Scope<'_>,
        d_in: usize,
        d_out: usize,
        with_bias: bool,
    ) -> LoadResult<Self> {
        Ok(Self {
            w: p.get_owned_transposed("weights", &[d_in, d_out], 1)?,
            b: if with_bias {
                Some(p.get_owned("bias", &[d_out])?)
            } else {
                None
            },
        })
    }

    /// A Haiku projection stored `[in, heads, head_dim]` (AlphaFold's `query_w`,
    /// `gating_w`, ...) as a linear layer to `heads * head_dim` channels (head-major).
    pub fn load_heads(
        p: &Scope<'_>,
        name: &str,
        d_in: usize,
        heads: usize,
        head_dim: usize,
    ) -> LoadResult<Self> {
        Ok(Self {
            w: p.get_owned_transposed(name, &[d_in, heads, head_dim], 1)?,
            b: None,
        })
    }

    pub fn forward(&self, be: &dyn Backend, x: &Tensor) -> Tensor {
        be.linear(x, &self.w, self.b.as_ref())
    }

    /// The parameters as a fused op takes them; the layer must have a bias.
    pub fn params(&self) -> LinearParams<'_> {
        LinearParams {
            w: &self.w,
            b: self
                .b
                .as_ref()
                .expect("fused ops take linear layers with a bias"),
        }
    }
}

/// Layer normalisation over the last axis.
#[derive(Debug)]
pub struct LayerNorm {
    pub gamma: Tensor,
    pub beta: Tensor,
    pub eps: f32,
}

impl LayerNorm {
    pub fn load(p: &Scope<'_>, dim: usize, eps: f32) -> LoadResult<Self> {
        Ok(Self {
            gamma: p.get("weight", &[dim]).cloned()?,
            beta: p.get("bias", &[dim]).cloned()?,
            eps,
        })
    }

    /// Haiku's `hk.LayerNorm` (AlphaFold): `scale` and `offset`, eps 1e-5.
    pub fn load_haiku(p: &Scope<'_>, dim: usize) -> LoadResult<Self> {
        Ok(Self {
            gamma: p.get_owned("scale", &[dim])?,
            beta: p.get_owned("offset", &[dim])?,
            eps: 1e-5,
        })
    }

    pub fn forward(&self, be: &dyn Backend, x: &Tensor) -> Tensor {
        be.layer_norm(x, &self.gamma, &self.beta, self.eps)
    }

    pub fn params(&self) -> NormParams<'_> {
        NormParams {
            gamma: &self.gamma,
            beta: &self.beta,
            eps: self.eps,
        }
    }
}

/// `[N, H*D]` (channel = h*D + d) → `[H, N, D]`.
pub fn split_heads(x: &Tensor, heads: usize) -> Tensor {
    let (n, c) = (x.rows(), x.dim(-1));
    let d = c / heads;
    let src = x.data();
    Tensor::from_fn(&[heads, n, d], |idx| {
        let (h, rest) = (idx / (n * d), idx % (n * d));
        let (i, k) = (rest / d, rest % d);
        src[i * c + h * d + k]
    })
}

/// `[H, N, D]` → `[N, H*D]`.
pub fn merge_heads(x: &Tensor) -> Tensor {
    let (h, n, d) = (x.dim(0), x.dim(1), x.dim(2));
    let src = x.data();
    Tensor::from_fn(&[n, h * d], |idx| {
        let (i, rest) = (idx / (h * d), idx % (h * d));
        let (hh, k) = (rest / d, rest % d);
        src[(hh * n + i) * d + k]
    })
}

/// `x += f(x)`: a residual block whose update is freed as soon as it is added (updates
/// held in `let` bindings would all stay alive to the end of the caller's block).
pub fn add_update(be: &dyn Backend, x: &mut Tensor, f: impl FnOnce(&Tensor) -> Tensor) {
    let update = f(x);
    be.add_assign(x, &update);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_round_trip() {
        let x = Tensor::from_fn(&[5, 12], |i| i as f32);
        let s = split_heads(&x, 3);
        assert_eq!(s.shape(), &[3, 5, 4]);
        // head 1, row 2, dim 3 is channel 1*4+3 of row 2
        assert_eq!(s.data()[(5 + 2) * 4 + 3], x.data()[2 * 12 + 7]);
        assert_eq!(merge_heads(&s), x);
    }
}

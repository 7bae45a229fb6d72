//! One IgFold ensemble member: trunk (graph transformer + triangle updates), template IPA
//! (run without templates), IPA structure module, and the error-prediction branch.

use super::geometry::{quat_to_rot, Frames};
use super::graph_transformer::GraphTransformerLayer;
use super::ipa::IpaBlock;
use super::triangle::TriangleMultiplication;
use crate::nn::{LayerNorm, Linear, LoadResult};
use ferrofold_io::weights::Scope;
use ferrofold_kernels::{Activation, Backend, Tensor, TriangleDirection};
use serde::Deserialize;

const BERT_FEAT_DIM: usize = 512;
const BERT_ATTN_DIM: usize = 64;
const LN_EPS: f32 = 1e-5;

/// Architecture hyper-parameters, stored as JSON in each member's safetensors metadata.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct IgFoldConfig {
    pub node_dim: usize,
    pub depth: usize,
    pub gt_depth: usize,
    pub gt_heads: usize,
    pub temp_ipa_depth: usize,
    pub temp_ipa_heads: usize,
    pub str_ipa_depth: usize,
    pub str_ipa_heads: usize,
    pub dev_ipa_depth: usize,
    pub dev_ipa_heads: usize,
}

impl IgFoldConfig {
    /// The configuration of all four released members (the only one ported: the graph
    /// transformer's depth and heads are fixed in its code).
    pub const RELEASED: Self = Self {
        node_dim: 64,
        depth: 4,
        gt_depth: 1,
        gt_heads: 8,
        temp_ipa_depth: 2,
        temp_ipa_heads: 8,
        str_ipa_depth: 3,
        str_ipa_heads: 8,
        dev_ipa_depth: 2,
        dev_ipa_heads: 4,
    };
}

/// `Linear -> ReLU -> LayerNorm`, IgFold's node and edge input transforms.
struct InputTransform {
    linear: Linear,
    norm: LayerNorm,
}

impl InputTransform {
    fn load(p: &Scope<'_>, d_in: usize, d_out: usize) -> LoadResult<Self> {
        Ok(Self {
            linear: Linear::load(&p.sub("0"), d_in, d_out)?,
            norm: LayerNorm::load(&p.sub("2"), d_out, LN_EPS)?,
        })
    }

    fn forward(&self, be: &dyn Backend, x: &Tensor) -> Tensor {
        let mut h = self.linear.forward(be, x);
        be.activate(&mut h, Activation::Relu);
        self.norm.forward(be, &h)
    }
}

/// One layer of the `TriangleGraphTransformer` trunk.
struct TrunkLayer {
    graph_transformer: GraphTransformerLayer,
    outgoing: TriangleMultiplication,
    incoming: TriangleMultiplication,
}

/// Inputs of the error-prediction branch, computed once per antibody and member and
/// reused to score the refined frames.
pub struct DevInputs {
    nodes: Tensor, // [L, 64]
    edges: Tensor, // [L, L, 64]
}

/// Raw output of one member, before gradient refinement.
pub struct RawPrediction {
    pub frames: Frames,
    /// Predicted deviation of N, CA, C, CB in Å. // [L, 4]
    pub prmsd: Tensor,
    pub dev_inputs: DevInputs,
}

pub struct IgFoldNet {
    str_node_transform: InputTransform,
    str_edge_transform: InputTransform,
    trunk: Vec<TrunkLayer>,
    template_ipa: Vec<IpaBlock>,
    structure_ipa: Vec<(IpaBlock, Linear)>,
    dev_node_transform: InputTransform,
    dev_edge_transform: InputTransform,
    dev_ipa: Vec<IpaBlock>,
    dev_linear: Linear,
}

impl IgFoldNet {
    pub fn load(p: &Scope<'_>, cfg: &IgFoldConfig) -> LoadResult<Self> {
        let d = cfg.node_dim;
        let blocks = |scope: Scope<'_>, depth: usize, heads: usize| {
            (0..depth)
                .map(|i| IpaBlock::load(&scope.sub(i), d, heads))
                .collect::<LoadResult<Vec<_>>>()
        };
        let main = p.sub("main_block").sub("layers");
        let trunk = (0..cfg.depth)
            .map(|i| {
                let li = main.sub(i);
                Ok(TrunkLayer {
                    graph_transformer: GraphTransformerLayer::load(
                        &li.sub("0").sub("layers").sub("0"),
                        d,
                        d,
                    )?,
                    outgoing: TriangleMultiplication::load(
                        &li.sub("1"),
                        d,
                        2 * d,
                        TriangleDirection::Outgoing,
                    )?,
                    incoming: TriangleMultiplication::load(
                        &li.sub("2"),
                        d,
                        2 * d,
                        TriangleDirection::Incoming,
                    )?,
                })
            })
            .collect::<LoadResult<Vec<_>>>()?;
        let sl = p.sub("structure_ipa").sub("layers");
        let structure_ipa = (0..cfg.str_ipa_depth)
            .map(|i| {
                let li = sl.sub(i);
                Ok((
                    IpaBlock::load(&li.sub("0"), d, cfg.str_ipa_heads)?,
                    Linear::load(&li.sub("1"), d, 6)?,
                ))
            })
            .collect::<LoadResult<Vec<_>>>()?;
        Ok(Self {
            str_node_transform: InputTransform::load(
                &p.sub("str_node_transform"),
                BERT_FEAT_DIM,
                d,
            )?,
            str_edge_transform: InputTransform::load(
                &p.sub("str_edge_transform"),
                BERT_ATTN_DIM,
                d,
            )?,
            trunk,
            template_ipa: blocks(
                p.sub("template_ipa").sub("layers"),
                cfg.temp_ipa_depth,
                cfg.temp_ipa_heads,
            )?,
            structure_ipa,
            dev_node_transform: InputTransform::load(
                &p.sub("dev_node_transform"),
                BERT_FEAT_DIM,
                d,
            )?,
            dev_edge_transform: InputTransform::load(
                &p.sub("dev_edge_transform"),
                BERT_ATTN_DIM,
                d,
            )?,
            dev_ipa: blocks(
                p.sub("dev_ipa").sub("layers"),
                cfg.dev_ipa_depth,
                cfg.dev_ipa_heads,
            )?,
            dev_linear: Linear::load(&p.sub("dev_linear"), d, 4)?,
        })
    }

    /// feats `[L, 512]` and attn `[L, L, 64]` from AntiBERTy → raw frames and predicted error.
    pub fn forward(&self, be: &dyn Backend, feats: &Tensor, attn: &Tensor) -> RawPrediction {
        let l = feats.dim(0);
        let mut nodes = self.str_node_transform.forward(be, feats); // [L, 64]
        let mut edges = self.str_edge_transform.forward(be, attn); // [L, L, 64]
        for layer in &self.trunk {
            nodes = layer.graph_transformer.forward(be, &nodes, &edges);
            let upd = layer.outgoing.forward(be, &edges);
            be.add_assign(&mut edges, &upd);
            let upd = layer.incoming.forward(be, &edges);
            be.add_assign(&mut edges, &upd);
        }
        // Without templates every pair is masked: attention is uniform and frame-free.
        let no_template = vec![false; l];
        let identity = Frames::identity(l);
        for block in &self.template_ipa {
            nodes = block.forward(be, &nodes, &edges, &identity, Some(&no_template));
        }
        let frames = self.structure_module(be, nodes, &edges);
        let dev_inputs = DevInputs {
            nodes: self.dev_node_transform.forward(be, feats),
            edges: self.dev_edge_transform.forward(be, attn),
        };
        let prmsd = self.predict_error(be, &dev_inputs, &frames);
        RawPrediction {
            frames,
            prmsd,
            dev_inputs,
        }
    }

    /// IgFold's `IPATransformer`: frames start at identity; each layer runs an IPA block
    /// and composes a quaternion and translation update (rotations never renormalised).
    fn structure_module(&self, be: &dyn Backend, mut x: Tensor, pair: &Tensor) -> Frames {
        let l = x.dim(0);
        let mut quats = vec![[1f32, 0.0, 0.0, 0.0]; l];
        let mut frames = Frames::identity(l);
        for (block, to_update) in &self.structure_ipa {
            x = block.forward(be, &x, pair, &frames, None);
            let upd = to_update.forward(be, &x); // [L, 6]
            for (i, u) in upd.data().chunks(6).enumerate() {
                quats[i] = quaternion_multiply(quats[i], [1.0, u[0], u[1], u[2]]);
                let r = &frames.rot[i];
                for (c, t) in frames.trans[i].iter_mut().enumerate() {
                    *t += u[3] * r[0][c] + u[4] * r[1][c] + u[5] * r[2][c];
                }
            }
            frames.rot = quats.iter().map(|&q| quat_to_rot(q)).collect();
        }
        frames
    }

    /// The error-prediction branch on given frames → `[L, 4]` predicted deviations (Å).
    pub fn predict_error(&self, be: &dyn Backend, dev: &DevInputs, frames: &Frames) -> Tensor {
        let mut x = dev.nodes.clone();
        for block in &self.dev_ipa {
            x = block.forward(be, &x, &dev.edges, frames, None);
        }
        let mut out = self.dev_linear.forward(be, &x);
        be.activate(&mut out, Activation::Relu);
        out
    }
}

/// Hamilton product (real part first), standardised to a non-negative real part.
fn quaternion_multiply(a: [f32; 4], b: [f32; 4]) -> [f32; 4] {
    let [aw, ax, ay, az] = a;
    let [bw, bx, by, bz] = b;
    let q = [
        aw * bw - ax * bx - ay * by - az * bz,
        aw * bx + ax * bw + ay * bz - az * by,
        aw * by - ax * bz + ay * bw + az * bx,
        aw * bz + ax * by - ay * bx + az * bw,
    ];
    if q[0] < 0.0 {
        q.map(|v| -v)
    } else {
        q
    }
}

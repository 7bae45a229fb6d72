//! AntiBERTy: the 8-layer BERT antibody language model whose last hidden layer and
//! attention maps feed IgFold (post-LN BERT, exact GELU, LayerNorm eps 1e-12).

use crate::nn::{merge_heads, split_heads, LayerNorm, Linear, LoadResult};
use ferrofold_io::weights::Scope;
use ferrofold_kernels::{Activation, Backend, MatView, Tensor};

const HIDDEN: usize = 512;
const INTERMEDIATE: usize = 2048;
const LAYERS: usize = 8;
const HEADS: usize = 8;
const VOCAB: usize = 25;
const MAX_POSITIONS: usize = 512;
const LN_EPS: f32 = 1e-12;
const CLS: usize = 2;
const SEP: usize = 3;

/// The 20 amino acids in vocabulary order (token ids 5..=24).
pub const AMINO_ACIDS: &str = "ACDEFGHIKLMNPQRSTVWY";

/// Longest chain AntiBERTy embeds: 512 positions less `[CLS]` and `[SEP]`.
pub const MAX_RESIDUES: usize = MAX_POSITIONS - 2;

/// What IgFold takes from AntiBERTy for one chain.
#[derive(Debug)]
pub struct ChainEmbedding {
    /// Last hidden layer without `[CLS]`/`[SEP]`. // [l, 512]
    pub feats: Tensor,
    /// Attention probabilities of all layers and heads, channel = 8*layer + head, with the
    /// `[CLS]`/`[SEP]` rows and columns dropped and not renormalised. // [l, l, 64]
    pub attn: Tensor,
}

struct BertLayer {
    query: Linear,
    key: Linear,
    value: Linear,
    attn_out: Linear,
    attn_ln: LayerNorm,
    intermediate: Linear,
    output: Linear,
    out_ln: LayerNorm,
}

impl BertLayer {
    fn load(p: &Scope<'_>) -> LoadResult<Self> {
        let att = p.sub("attention");
        let sa = att.sub("self");
        Ok(Self {
            query: Linear::load(&sa.sub("query"), HIDDEN, HIDDEN)?,
            key: Linear::load(&sa.sub("key"), HIDDEN, HIDDEN)?,
            value: Linear::load(&sa.sub("value"), HIDDEN, HIDDEN)?,
            attn_out: Linear::load(&att.sub("output").sub("dense"), HIDDEN, HIDDEN)?,
            attn_ln: LayerNorm::load(&att.sub("output").sub("LayerNorm"), HIDDEN, LN_EPS)?,
            intermediate: Linear::load(&p.sub("intermediate").sub("dense"), HIDDEN, INTERMEDIATE)?,
            output: Linear::load(&p.sub("output").sub("dense"), INTERMEDIATE, HIDDEN)?,
            out_ln: LayerNorm::load(&p.sub("output").sub("LayerNorm"), HIDDEN, LN_EPS)?,
        })
    }

    /// One post-LN encoder layer; returns the new hidden state and the attention
    /// probabilities `[H, n, n]`.
    fn forward(&self, be: &dyn Backend, h: &Tensor) -> (Tensor, Tensor) {
        let q = split_heads(&self.query.forward(be, h), HEADS); // [H, n, 64]
        let k = split_heads(&self.key.forward(be, h), HEADS);
        let v = split_heads(&self.value.forward(be, h), HEADS);
        let probs = be.attention_probs(&q, &k, None, 1.0 / ((HIDDEN / HEADS) as f32).sqrt());
        let ctx = merge_heads(&be.batched_matmul(MatView::n(&probs), MatView::n(&v))); // [n, 512]
        let mut a = self.attn_out.forward(be, &ctx);
        be.add_assign(&mut a, h);
        let h1 = self.attn_ln.forward(be, &a);
        let mut f = self.intermediate.forward(be, &h1);
        be.activate(&mut f, Activation::Gelu);
        let mut f = self.output.forward(be, &f);
        be.add_assign(&mut f, &h1);
        (self.out_ln.forward(be, &f), probs)
    }
}

/// AntiBERTy encoder weights (embeddings and 8 layers; the heads IgFold ignores are not loaded).
pub struct AntiBerty {
    word: Tensor,       // [25, 512]
    position: Tensor,   // [512, 512]
    token_type: Tensor, // [2, 512]
    emb_ln: LayerNorm,
    layers: Vec<BertLayer>,
}

impl AntiBerty {
    /// Loads from the scope holding `bert.*` (the converted `pytorch_model.bin`).
    pub fn load(root: &Scope<'_>) -> LoadResult<Self> {
        let bert = root.sub("bert");
        let emb = bert.sub("embeddings");
        let enc = bert.sub("encoder").sub("layer");
        Ok(Self {
            word: emb
                .sub("word_embeddings")
                .get("weight", &[VOCAB, HIDDEN])
                .cloned()?,
            position: emb
                .sub("position_embeddings")
                .get("weight", &[MAX_POSITIONS, HIDDEN])
                .cloned()?,
            token_type: emb
                .sub("token_type_embeddings")
                .get("weight", &[2, HIDDEN])
                .cloned()?,
            emb_ln: LayerNorm::load(&emb.sub("LayerNorm"), HIDDEN, LN_EPS)?,
            layers: (0..LAYERS)
                .map(|i| BertLayer::load(&enc.sub(i)))
                .collect::<LoadResult<_>>()?,
        })
    }

    /// Embeds one chain of validated residues (upper-case, 20 amino acids, at most
    /// [`MAX_RESIDUES`]).
    pub fn embed(&self, be: &dyn Backend, chain: &str) -> ChainEmbedding {
        let ids = tokenize(chain);
        let n = ids.len();
        assert!(n <= MAX_POSITIONS, "chain longer than AntiBERTy's limit");
        let (w, p, t) = (
            self.word.data(),
            self.position.data(),
            self.token_type.data(),
        );
        let emb = Tensor::from_fn(&[n, HIDDEN], |idx| {
            let (i, c) = (idx / HIDDEN, idx % HIDDEN);
            w[ids[i] * HIDDEN + c] + t[c] + p[i * HIDDEN + c]
        });
        let mut h = self.emb_ln.forward(be, &emb);
        let mut maps = Vec::with_capacity(LAYERS);
        for layer in &self.layers {
            let (next, probs) = layer.forward(be, &h);
            h = next;
            maps.push(probs);
        }
        let l = n - 2;
        let feats = Tensor::new(&[l, HIDDEN], h.data()[HIDDEN..(n - 1) * HIDDEN].to_vec())
            .expect("feature slice matches its shape");
        let ch = LAYERS * HEADS;
        let attn = Tensor::from_fn(&[l, l, ch], |idx| {
            let (i, rest) = (idx / (l * ch), idx % (l * ch));
            let (j, c) = (rest / ch, rest % ch);
            let (layer, head) = (c / HEADS, c % HEADS);
            maps[layer].data()[(head * n + i + 1) * n + j + 1]
        });
        ChainEmbedding { feats, attn }
    }
}

/// `[CLS] residues [SEP]` token ids.
fn tokenize(chain: &str) -> Vec<usize> {
    std::iter::once(CLS)
        .chain(chain.bytes().map(|b| {
            AMINO_ACIDS
                .bytes()
                .position(|a| a == b)
                .map(|p| p + 5)
                .expect("residues are validated before embedding")
        }))
        .chain(std::iter::once(SEP))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_follow_the_vocabulary() {
        assert_eq!(tokenize("ACY"), vec![CLS, 5, 6, 24, SEP]);
    }
}

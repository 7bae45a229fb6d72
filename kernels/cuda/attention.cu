// Fused gated multi-head attention with pair bias and key mask (AlphaFold2's `Attention`
// core, used by MSA row attention with pair bias, MSA column attention, triangle attention
// around the starting and ending node and template pointwise attention; one width d for the
// queries, keys and values, so a launcher asserts Dk == Dv), FlashAttention-style: keys are
// streamed in tiles of 32 through shared memory with an online softmax, so the logits are never
// materialised (O(tile) memory per block, not O(L^3) for triangle attention).
//
// For every batch row b, head h, query i (channels d < D):
//   logit[j] = (scale * q[b,h,i,:]) . k[b,h,j,:] + 1e9 * (mask[b,j] - 1) + bias[b?,h,i,j]
//   o[b,h,i,:] = sigmoid(gate[b,h,i,:]) * sum_j softmax(logit)[j] v[b,h,j,:]
// with the additions in AF2's order (a fully masked row attends uniformly, as in AF2). mask
// ([batch, keys], fp32 0/1), bias (any strides; bias_sb = 0 broadcasts [heads, q, k] over the
// batch) and gate (pre-sigmoid logits) may each be null. Storage T is fp32 or bf16; every
// product and sum is fp32. Every tensor is addressed with element strides over (batch, head,
// row) and a contiguous channel (or key) axis, so q/k/v/gate/out may be [B, H, N, D] or the
// projections' own [B, N, H, D] layout without a transpose.
//
// Launch: blockDim = (FF_ATT_WARPS * 32), gridDim = (batch * heads, ceil(nq / FF_ATT_BQ)).
// Each warp owns FF_ATT_QPW queries; lane j scores key j of the tile for all of them, then the
// probabilities go through shared memory to the P.V product, where lane l owns channels
// l and l + 32. The `_dNN` entry points take head dims d <= NN.

#define FF_ATT_WARPS 4
#define FF_ATT_QPW 4
#define FF_ATT_BQ (FF_ATT_WARPS * FF_ATT_QPW)
#define FF_ATT_BK 32

struct AttentionArgs {
    const void* q;
    const void* k;
    const void* v;
    const void* gate;
    const void* bias;
    const float* mask;
    void* out;
    long long q_sb, q_sh, q_sq;
    long long k_sb, k_sh, k_sk;
    long long v_sb, v_sh, v_sk;
    long long g_sb, g_sh, g_sq;
    long long o_sb, o_sh, o_sq;
    long long bias_sb, bias_sh, bias_sq;
    long long mask_sb;
    int batch, heads, nq, nk, d;
    float scale;
};

template <typename T, int D_MAX>
__device__ __forceinline__ void gated_attention_tile(const AttentionArgs& a) {
    constexpr int DPL = (D_MAX + 31) / 32;  // output channels per lane
    __shared__ float qs[FF_ATT_BQ][D_MAX];
    __shared__ float ks[FF_ATT_BK][D_MAX + 1];  // +1: lane j reads row j, no bank conflicts
    __shared__ float vs[FF_ATT_BK][D_MAX];
    __shared__ __align__(16) float ps[FF_ATT_WARPS][FF_ATT_QPW][FF_ATT_BK];

    const int tid = threadIdx.x;
    const int lane = tid & 31;
    const int warp = tid >> 5;
    const int bh = blockIdx.x;
    const int b = bh / a.heads;
    const int h = bh % a.heads;
    const int q0 = blockIdx.y * FF_ATT_BQ;
    const int d = a.d;

    const T* qg = (const T*)a.q + b * a.q_sb + h * a.q_sh;
    const T* kg = (const T*)a.k + b * a.k_sb + h * a.k_sh;
    const T* vg = (const T*)a.v + b * a.v_sb + h * a.v_sh;
    const T* bg = a.bias ? (const T*)a.bias + b * a.bias_sb + h * a.bias_sh : nullptr;
    const float* mg = a.mask ? a.mask + b * a.mask_sb : nullptr;

    // Queries of this block, scaled first as AF2 does (q * key_dim^-0.5, then q . k).
    for (int idx = tid; idx < FF_ATT_BQ * D_MAX; idx += FF_ATT_WARPS * 32) {
        const int i = idx / D_MAX, c = idx % D_MAX;
        const int qi = q0 + i;
        qs[i][c] = (qi < a.nq && c < d) ? a.scale * to_f32(qg[qi * a.q_sq + c]) : 0.0f;
    }

    float m[FF_ATT_QPW], l[FF_ATT_QPW], o[FF_ATT_QPW][DPL];
#pragma unroll
    for (int r = 0; r < FF_ATT_QPW; ++r) {
        m[r] = FF_NEG_INF;
        l[r] = 0.0f;
#pragma unroll
        for (int c = 0; c < DPL; ++c) o[r][c] = 0.0f;
    }

    for (int k0 = 0; k0 < a.nk; k0 += FF_ATT_BK) {
        __syncthreads();  // the previous tile is consumed (and qs is written, first time)
        for (int idx = tid; idx < FF_ATT_BK * D_MAX; idx += FF_ATT_WARPS * 32) {
            const int j = idx / D_MAX, c = idx % D_MAX;
            const int key = k0 + j;
            const bool in = key < a.nk && c < d;
            ks[j][c] = in ? to_f32(kg[key * a.k_sk + c]) : 0.0f;
            vs[j][c] = in ? to_f32(vg[key * a.v_sk + c]) : 0.0f;
        }
        __syncthreads();

        const int key = k0 + lane;
        const bool key_in = key < a.nk;
        float s[FF_ATT_QPW];
#pragma unroll
        for (int r = 0; r < FF_ATT_QPW; ++r) s[r] = 0.0f;
#pragma unroll 8
        for (int c = 0; c < D_MAX; ++c) {
            const float kv = ks[lane][c];
#pragma unroll
            for (int r = 0; r < FF_ATT_QPW; ++r) s[r] = fmaf(qs[warp * FF_ATT_QPW + r][c], kv, s[r]);
        }
        const float key_bias = (key_in && mg) ? FF_MASK_BIAS * (mg[key] - 1.0f) : 0.0f;

#pragma unroll
        for (int r = 0; r < FF_ATT_QPW; ++r) {
            const int qi = q0 + warp * FF_ATT_QPW + r;
            float x = FF_NEG_INF;
            if (key_in) {
                x = s[r];
                if (mg) x += key_bias;
                if (bg && qi < a.nq) x += to_f32(bg[qi * a.bias_sq + key]);
            }
            // Every tile holds at least one key in range, so m_new is finite.
            const float m_new = fmaxf(m[r], warp_max(x));
            const float corr = expf(m[r] - m_new);  // 0 on the first tile
            const float p = key_in ? expf(x - m_new) : 0.0f;
            m[r] = m_new;
            l[r] = l[r] * corr + p;  // this lane's share; summed over the warp at the end
#pragma unroll
            for (int c = 0; c < DPL; ++c) o[r][c] *= corr;
            ps[warp][r][lane] = p;
        }
        __syncwarp();
#pragma unroll 2
        for (int j = 0; j < FF_ATT_BK; j += 4) {
            float vj[4][DPL];
#pragma unroll
            for (int u = 0; u < 4; ++u) {
#pragma unroll
                for (int c = 0; c < DPL; ++c) {
                    const int ch = lane + 32 * c;
                    vj[u][c] = ch < D_MAX ? vs[j + u][ch] : 0.0f;
                }
            }
#pragma unroll
            for (int r = 0; r < FF_ATT_QPW; ++r) {
                const float4 p4 = *reinterpret_cast<const float4*>(&ps[warp][r][j]);
#pragma unroll
                for (int c = 0; c < DPL; ++c) {
                    o[r][c] = fmaf(p4.x, vj[0][c], o[r][c]);
                    o[r][c] = fmaf(p4.y, vj[1][c], o[r][c]);
                    o[r][c] = fmaf(p4.z, vj[2][c], o[r][c]);
                    o[r][c] = fmaf(p4.w, vj[3][c], o[r][c]);
                }
            }
        }
        __syncwarp();  // ps is rewritten by the next tile
    }

    const T* gg = a.gate ? (const T*)a.gate + b * a.g_sb + h * a.g_sh : nullptr;
    T* og = (T*)a.out + b * a.o_sb + h * a.o_sh;
#pragma unroll
    for (int r = 0; r < FF_ATT_QPW; ++r) {
        const int qi = q0 + warp * FF_ATT_QPW + r;
        const float sum = warp_sum(l[r]);
        const float inv = sum > 0.0f ? 1.0f / sum : 0.0f;  // sum == 0 only when nk == 0
        if (qi >= a.nq) continue;
#pragma unroll
        for (int c = 0; c < DPL; ++c) {
            const int ch = lane + 32 * c;
            if (ch >= d) continue;
            float val = o[r][c] * inv;
            if (gg) val *= sigmoid_f32(to_f32(gg[qi * a.g_sq + ch]));
            og[qi * a.o_sq + ch] = from_f32<T>(val);
        }
    }
}

#define FF_ATTENTION_ENTRY(NAME, T, D_MAX)                                                   \
    extern "C" __global__ void __launch_bounds__(FF_ATT_WARPS * 32) NAME(AttentionArgs a) { \
        gated_attention_tile<T, D_MAX>(a);                                                   \
    }

FF_ATTENTION_ENTRY(gated_attention_f32_d16, float, 16)
FF_ATTENTION_ENTRY(gated_attention_f32_d32, float, 32)
FF_ATTENTION_ENTRY(gated_attention_f32_d64, float, 64)
FF_ATTENTION_ENTRY(gated_attention_bf16_d16, bf16_t, 16)
FF_ATTENTION_ENTRY(gated_attention_bf16_d32, bf16_t, 32)
FF_ATTENTION_ENTRY(gated_attention_bf16_d64, bf16_t, 64)

// The same attention with q.k and p.v on tensor cores (sm_80+): in TF32 (`mma_tf32_16x8x8`, fp32
// storage; q (scaled), k, v and the probabilities rounded to TF32 as cuBLAS's TF32 mode rounds
// its inputs) or in bf16 (`mma_bf16_16x8x16`, fp32 or bf16 storage T, rounded to bf16); the
// logits, softmax and sums in fp32. Each warp owns 16 queries of the block's FF_TC_BQ; keys stream in tiles of
// FF_TC_BK through shared memory with the online softmax, so here too no logits are
// materialised. A lane holds the logits of rows g and g + 8 (g = lane / 4) at key columns 2t
// and 2t + 1 of each 8-key group (t = lane % 4), the output likewise.
//
// Launch: blockDim = FF_TC_WARPS * 32, gridDim = (batch * heads, ceil(nq / FF_TC_BQ)). The
// `_dNN` entry points take head dims d <= NN (NN a multiple of 16).

#define FF_TC_WARPS 4
#define FF_TC_BQ (FF_TC_WARPS * 16)
#define FF_TC_BK 32
#define FF_TC_KEY_TILES (FF_TC_BK / 8)

// What every tensor-core variant shares: the warp's rows and tensors (in storage T), the online
// softmax of a key tile and the gated store.
template <typename T>
struct TcWarp {
    const AttentionArgs& a;
    int b, h, g, t;
    int rows[2];  // this lane's queries: g and g + 8 of the warp's 16
    const T *qg, *kg, *vg, *bg;
    const float* mg;

    __device__ TcWarp(const AttentionArgs& args) : a(args) {
        const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
        g = lane >> 2;
        t = lane & 3;
        b = blockIdx.x / a.heads;
        h = blockIdx.x % a.heads;
        rows[0] = blockIdx.y * FF_TC_BQ + warp * 16 + g;
        rows[1] = rows[0] + 8;
        qg = (const T*)a.q + b * a.q_sb + h * a.q_sh;
        kg = (const T*)a.k + b * a.k_sb + h * a.k_sh;
        vg = (const T*)a.v + b * a.v_sb + h * a.v_sh;
        bg = a.bias ? (const T*)a.bias + b * a.bias_sb + h * a.bias_sh : nullptr;
        mg = a.mask ? a.mask + b * a.mask_sb : nullptr;
    }

    // Query row `r` (0: g, 1: g + 8), channel c, scaled first as AF2 does; 0 past the ends.
    __device__ __forceinline__ float query(int r, int c) const {
        return rows[r] < a.nq && c < a.d ? a.scale * to_f32(qg[rows[r] * a.q_sq + c]) : 0.0f;
    }

    // The key tile at k0 into shared memory: store(j, c, k, v) for every key j of the tile and
    // channel c < D_MAX, with k and v 0 past the ends; the block's threads share the work, and
    // the barriers around it keep the previous tile until every warp is done with it.
    template <int D_MAX, typename Store>
    __device__ __forceinline__ void load_tile(int k0, Store store) const {
        __syncthreads();
        for (int idx = threadIdx.x; idx < FF_TC_BK * D_MAX; idx += FF_TC_WARPS * 32) {
            const int j = idx / D_MAX, c = idx % D_MAX;
            const int key = k0 + j;
            const bool in = key < a.nk && c < a.d;
            store(j, c, in ? to_f32(kg[key * a.k_sk + c]) : 0.0f,
                  in ? to_f32(vg[key * a.v_sk + c]) : 0.0f);
        }
        __syncthreads();
    }

    // One key tile's logits s (from q.k) to probabilities exp(s - m): the mask and pair bias
    // added in AF2's order, keys past the end -inf, the running max m updated, and this lane's
    // row sums l and output o rescaled to it.
    template <int OUT_TILES>
    __device__ __forceinline__ void softmax_tile(float s[FF_TC_KEY_TILES][4], float m[2],
                                                 float l[2], float o[OUT_TILES][4], int k0) const {
        float tile_max[2] = {FF_NEG_INF, FF_NEG_INF};
#pragma unroll
        for (int n = 0; n < FF_TC_KEY_TILES; ++n) {
#pragma unroll
            for (int i = 0; i < 4; ++i) {
                const int r = i >> 1;
                const int key = k0 + n * 8 + 2 * t + (i & 1);
                float x = FF_NEG_INF;
                if (key < a.nk) {
                    x = s[n][i];
                    if (mg) x += FF_MASK_BIAS * (mg[key] - 1.0f);
                    if (bg && rows[r] < a.nq) x += to_f32(bg[rows[r] * a.bias_sq + key]);
                }
                s[n][i] = x;
                tile_max[r] = fmaxf(tile_max[r], x);
            }
        }
        float corr[2];
#pragma unroll
        for (int r = 0; r < 2; ++r) {
            // The four lanes of a row group hold its columns.
            tile_max[r] = fmaxf(tile_max[r], __shfl_xor_sync(FF_FULL_MASK, tile_max[r], 1));
            tile_max[r] = fmaxf(tile_max[r], __shfl_xor_sync(FF_FULL_MASK, tile_max[r], 2));
            // Every tile holds at least one key in range, so the new max is finite.
            const float m_new = fmaxf(m[r], tile_max[r]);
            corr[r] = expf(m[r] - m_new);  // 0 on the first tile
            m[r] = m_new;
            l[r] *= corr[r];
        }
#pragma unroll
        for (int n = 0; n < FF_TC_KEY_TILES; ++n) {
#pragma unroll
            for (int i = 0; i < 4; ++i) {
                s[n][i] = expf(s[n][i] - m[i >> 1]);
                l[i >> 1] += s[n][i];  // this lane's share; summed over the row group at the end
            }
        }
#pragma unroll
        for (int n = 0; n < OUT_TILES; ++n) {
#pragma unroll
            for (int i = 0; i < 4; ++i) o[n][i] *= corr[i >> 1];
        }
    }

    // o / (row sum), gated, to the output rows in range.
    template <int OUT_TILES>
    __device__ __forceinline__ void store(const float o[OUT_TILES][4], float l[2]) const {
        const T* gg = a.gate ? (const T*)a.gate + b * a.g_sb + h * a.g_sh : nullptr;
        T* og = (T*)a.out + b * a.o_sb + h * a.o_sh;
        float inv[2];
#pragma unroll
        for (int r = 0; r < 2; ++r) {
            l[r] += __shfl_xor_sync(FF_FULL_MASK, l[r], 1);
            l[r] += __shfl_xor_sync(FF_FULL_MASK, l[r], 2);
            inv[r] = l[r] > 0.0f ? 1.0f / l[r] : 0.0f;  // l == 0 only when nk == 0
        }
#pragma unroll
        for (int n = 0; n < OUT_TILES; ++n) {
#pragma unroll
            for (int i = 0; i < 4; ++i) {
                const int qi = rows[i >> 1];
                const int ch = n * 8 + 2 * t + (i & 1);
                if (qi >= a.nq || ch >= a.d) continue;
                float val = o[n][i] * inv[i >> 1];
                if (gg) val *= sigmoid_f32(to_f32(gg[qi * a.g_sq + ch]));
                og[qi * a.o_sq + ch] = from_f32<T>(val);
            }
        }
    }
};

// TF32: k and v tiles as TF32 values in shared memory, the probabilities through shared memory
// into the A layout (m16n8k8's A and C layouts differ).
template <int D_MAX>
__device__ __forceinline__ void gated_attention_tf32_tile(const AttentionArgs& a) {
    constexpr int KSTEPS = D_MAX / 8;     // k-steps of q.k
    constexpr int OUT_TILES = D_MAX / 8;  // 8-channel column tiles of the output
    // Padded rows: the fragment reads of k (row g, column t) and v (row t, column g) then hit
    // 32 different banks.
    __shared__ float ks[FF_TC_BK][D_MAX + 4];
    __shared__ float vs[FF_TC_BK][D_MAX + 8];
    __shared__ float ps[FF_TC_WARPS][16][FF_TC_BK + 4];
    const TcWarp<float> w(a);
    const int g = w.g, t = w.t, warp = threadIdx.x >> 5;

    unsigned qa[KSTEPS][4];
#pragma unroll
    for (int st = 0; st < KSTEPS; ++st) {
#pragma unroll
        for (int i = 0; i < 4; ++i) qa[st][i] = to_tf32(w.query(i & 1, st * 8 + t + ((i & 2) ? 4 : 0)));
    }
    float o[OUT_TILES][4] = {};
    float m[2] = {FF_NEG_INF, FF_NEG_INF}, l[2] = {0.0f, 0.0f};

    for (int k0 = 0; k0 < a.nk; k0 += FF_TC_BK) {
        w.load_tile<D_MAX>(k0, [&](int j, int c, float k, float v) {
            ks[j][c] = __uint_as_float(to_tf32(k));
            vs[j][c] = __uint_as_float(to_tf32(v));
        });

        float s[FF_TC_KEY_TILES][4] = {};  // s[n]: keys 8n..8n+7 of the tile
#pragma unroll
        for (int n = 0; n < FF_TC_KEY_TILES; ++n) {
#pragma unroll
            for (int st = 0; st < KSTEPS; ++st) {
                const unsigned kb[2] = {__float_as_uint(ks[n * 8 + g][st * 8 + t]),
                                        __float_as_uint(ks[n * 8 + g][st * 8 + t + 4])};
                mma_tf32_16x8x8(s[n], qa[st], kb);
            }
        }
        w.softmax_tile<OUT_TILES>(s, m, l, o, k0);
#pragma unroll
        for (int n = 0; n < FF_TC_KEY_TILES; ++n) {
#pragma unroll
            for (int i = 0; i < 4; ++i) ps[warp][g + 8 * (i >> 1)][n * 8 + 2 * t + (i & 1)] = s[n][i];
        }
        __syncwarp();
#pragma unroll
        for (int st = 0; st < FF_TC_KEY_TILES; ++st) {
            const unsigned pa[4] = {to_tf32(ps[warp][g][st * 8 + t]),
                                    to_tf32(ps[warp][g + 8][st * 8 + t]),
                                    to_tf32(ps[warp][g][st * 8 + t + 4]),
                                    to_tf32(ps[warp][g + 8][st * 8 + t + 4])};
#pragma unroll
            for (int n = 0; n < OUT_TILES; ++n) {
                const unsigned vb[2] = {__float_as_uint(vs[st * 8 + t][n * 8 + g]),
                                        __float_as_uint(vs[st * 8 + t + 4][n * 8 + g])};
                mma_tf32_16x8x8(o[n], pa, vb);
            }
        }
        __syncwarp();  // ps is rewritten by the next tile
    }
    w.store<OUT_TILES>(o, l);
}

// bf16: k as bf16 rows and v transposed in shared memory, so that each fragment register is one
// 32-bit read; the probabilities go to p.v straight from the registers (m16n8k16's A layout
// over 16 keys is the C layout of two 8-key logit tiles).
template <typename T, int D_MAX>
__device__ __forceinline__ void gated_attention_bf16_tc_tile(const AttentionArgs& a) {
    constexpr int KSTEPS = D_MAX / 16;    // k-steps of q.k
    constexpr int OUT_TILES = D_MAX / 8;  // 8-channel column tiles of the output
    __shared__ __align__(16) unsigned short ks[FF_TC_BK][D_MAX + 8];
    __shared__ __align__(16) unsigned short vt[D_MAX][FF_TC_BK + 8];  // v transposed
    const TcWarp<T> w(a);
    const int g = w.g, t = w.t;
    // The bf16 pair at (row, column col, col + 1) of a shared tile.
    const auto pair = [](const unsigned short* row, int col) {
        return *reinterpret_cast<const unsigned*>(row + col);
    };

    unsigned qa[KSTEPS][4];
#pragma unroll
    for (int st = 0; st < KSTEPS; ++st) {
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            const int c = st * 16 + 2 * t + ((i & 2) ? 8 : 0);
            qa[st][i] = pack_bf16x2(w.query(i & 1, c), w.query(i & 1, c + 1));
        }
    }
    float o[OUT_TILES][4] = {};
    float m[2] = {FF_NEG_INF, FF_NEG_INF}, l[2] = {0.0f, 0.0f};

    for (int k0 = 0; k0 < a.nk; k0 += FF_TC_BK) {
        w.template load_tile<D_MAX>(k0, [&](int j, int c, float k, float v) {
            ks[j][c] = from_f32<bf16_t>(k).bits;
            vt[c][j] = from_f32<bf16_t>(v).bits;
        });

        float s[FF_TC_KEY_TILES][4] = {};  // s[n]: keys 8n..8n+7 of the tile
#pragma unroll
        for (int n = 0; n < FF_TC_KEY_TILES; ++n) {
#pragma unroll
            for (int st = 0; st < KSTEPS; ++st) {
                const unsigned kb[2] = {pair(ks[n * 8 + g], st * 16 + 2 * t),
                                        pair(ks[n * 8 + g], st * 16 + 2 * t + 8)};
                mma_bf16_16x8x16(s[n], qa[st], kb);
            }
        }
        w.template softmax_tile<OUT_TILES>(s, m, l, o, k0);
#pragma unroll
        for (int st = 0; st < FF_TC_KEY_TILES / 2; ++st) {
            const float* lo = s[2 * st];
            const float* hi = s[2 * st + 1];
            const unsigned pa[4] = {pack_bf16x2(lo[0], lo[1]), pack_bf16x2(lo[2], lo[3]),
                                    pack_bf16x2(hi[0], hi[1]), pack_bf16x2(hi[2], hi[3])};
#pragma unroll
            for (int n = 0; n < OUT_TILES; ++n) {
                const unsigned vb[2] = {pair(vt[n * 8 + g], st * 16 + 2 * t),
                                        pair(vt[n * 8 + g], st * 16 + 2 * t + 8)};
                mma_bf16_16x8x16(o[n], pa, vb);
            }
        }
    }
    w.template store<OUT_TILES>(o, l);
}

// NAME runs the tile function given after it (a template-id, so variadic for its commas).
#define FF_ATTENTION_TC_ENTRY(NAME, ...)                                                      \
    extern "C" __global__ void __launch_bounds__(FF_TC_WARPS * 32) NAME(AttentionArgs a) { \
        __VA_ARGS__(a);                                                                      \
    }

FF_ATTENTION_TC_ENTRY(gated_attention_tc_f32_d16, gated_attention_tf32_tile<16>)
FF_ATTENTION_TC_ENTRY(gated_attention_tc_f32_d32, gated_attention_tf32_tile<32>)
FF_ATTENTION_TC_ENTRY(gated_attention_tc_f32_d64, gated_attention_tf32_tile<64>)
// bf16 tensor cores on fp32 storage, then on bf16 storage.
FF_ATTENTION_TC_ENTRY(gated_attention_tc_bf16_f32_d16, gated_attention_bf16_tc_tile<float, 16>)
FF_ATTENTION_TC_ENTRY(gated_attention_tc_bf16_f32_d32, gated_attention_bf16_tc_tile<float, 32>)
FF_ATTENTION_TC_ENTRY(gated_attention_tc_bf16_f32_d64, gated_attention_bf16_tc_tile<float, 64>)
FF_ATTENTION_TC_ENTRY(gated_attention_tc_bf16_bf16_d16, gated_attention_bf16_tc_tile<bf16_t, 16>)
FF_ATTENTION_TC_ENTRY(gated_attention_tc_bf16_bf16_d32, gated_attention_bf16_tc_tile<bf16_t, 32>)
FF_ATTENTION_TC_ENTRY(gated_attention_tc_bf16_bf16_d64, gated_attention_bf16_tc_tile<bf16_t, 64>)

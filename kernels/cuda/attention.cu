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

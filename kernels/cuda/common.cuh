// Shared by every ferrofold CUDA program: storage types, conversions and warp reductions.
// Compiled by NVRTC at run time, prepended to each kernel source by the Rust side
// (kernels/src/cuda/sources.rs). It includes no header, so no CUDA toolkit include folder is
// needed: bf16 is handled as raw bits, converted with the sm_80+ cvt instruction.

// bf16 storage: the upper 16 bits of an IEEE fp32 value.
struct bf16_t {
    unsigned short bits;
};

__device__ __forceinline__ float to_f32(float x) { return x; }

__device__ __forceinline__ float to_f32(bf16_t x) {
    return __uint_as_float(((unsigned int)x.bits) << 16);
}

template <typename T> __device__ __forceinline__ T from_f32(float x);

template <> __device__ __forceinline__ float from_f32<float>(float x) { return x; }

// Round to nearest even (NaN stays NaN), as PyTorch's and JAX's bf16 casts.
template <> __device__ __forceinline__ bf16_t from_f32<bf16_t>(float x) {
    bf16_t r;
#ifdef FF_HOST_EMULATION
    // The tests' CPU emulation (kernels/tests/cuda_backend/emulator): the same rounding in integer maths.
    const unsigned u = __float_as_uint(x);
    r.bits = (unsigned short)((u & 0x7fffffffu) > 0x7f800000u ? (u >> 16) | 0x40u
                                                                : (u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
#else
    asm("cvt.rn.bf16.f32 %0, %1;" : "=h"(r.bits) : "f"(x));
#endif
    return r;
}

#define FF_FULL_MASK 0xffffffffu

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(FF_FULL_MASK, v, o);
    return v;
}

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(FF_FULL_MASK, v, o));
    return v;
}

__device__ __forceinline__ float sigmoid_f32(float x) { return 1.0f / (1.0f + expf(-x)); }

// AlphaFold2's masking: a key with mask 0 gets the additive logit bias 1e9 * (mask - 1), added
// before the pair bias, so a fully masked query row attends uniformly (never NaN).
#define FF_MASK_BIAS 1e9f
#define FF_NEG_INF (__int_as_float(0xff800000))

// A warp's softmax over one row, one lane per element in turn: each lane keeps the running max
// of its values and the sum of exp(v - max) (-inf values count for nothing); `finish` combines
// the lanes.
struct WarpSoftmax {
    float m = FF_NEG_INF, s = 0.0f;
    // After `finish`: the row's max, and 1 / sum (0 for a row that is all -inf).
    float row_max = FF_NEG_INF, inv = 0.0f;

    __device__ __forceinline__ void add(float v) {
        if (v == FF_NEG_INF) return;
        if (v > m) {
            s = s * expf(m - v) + 1.0f;
            m = v;
        } else {
            s += expf(v - m);
        }
    }

    __device__ __forceinline__ void finish() {
        row_max = warp_max(m);
        const float sum = warp_sum(m == FF_NEG_INF ? 0.0f : s * expf(m - row_max));
        inv = row_max == FF_NEG_INF ? 0.0f : 1.0f / sum;
    }

    // softmax(v): 0 for every element of an all -inf row.
    __device__ __forceinline__ float weight(float v) const {
        return row_max == FF_NEG_INF ? 0.0f : expf(v - row_max) * inv;
    }
};

// TF32, the tensor cores' fp32 input on sm_80+: an fp32 value rounded to a 10-bit mantissa, to
// nearest with ties away from zero (PTX cvt.rna.tf32.f32), as fp32 bits.
__device__ __forceinline__ unsigned to_tf32(float x) {
#ifdef FF_HOST_EMULATION
    const unsigned u = __float_as_uint(x);
    return (u & 0x7f800000u) == 0x7f800000u ? u : (u + 0x1000u) & 0xffffe000u;
#else
    unsigned r;
    asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(r) : "f"(x));
    return r;
#endif
}

#ifdef FF_HOST_EMULATION
// One warp's mma on the CPU: each lane stages its fragment registers (4 of A, 2 of B), then
// computes its four outputs D[g][2t], D[g][2t+1], D[g+8][2t], D[g+8][2t+1] (g = lane / 4,
// t = lane % 4) from the warp's; `a_at(regs, row, k)` and `b_at(regs, k, col)` read an element
// of A and B from the staged registers (`regs[lane][0..6]`). Blocks run one after another here,
// so one staging area per warp of a block serves them all.
template <int K, typename AAt, typename BAt>
inline void emulated_mma(float d[4], const unsigned a[4], const unsigned b[2], AAt a_at, BAt b_at) {
    static unsigned stage[32][32][6];  // [warp][lane][a0..a3, b0, b1]
    const int linear = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
    const int warp = linear / 32, lane = linear % 32;
    for (int i = 0; i < 4; ++i) stage[warp][lane][i] = a[i];
    stage[warp][lane][4] = b[0];
    stage[warp][lane][5] = b[1];
    __syncwarp();
    const int g = lane >> 2, t = lane & 3;
    for (int i = 0; i < 4; ++i) {
        const int row = g + ((i & 2) ? 8 : 0), col = 2 * t + (i & 1);
        float acc = d[i];
        for (int k = 0; k < K; ++k) acc = fmaf(a_at(stage[warp], row, k), b_at(stage[warp], k, col), acc);
        d[i] = acc;
    }
    __syncwarp();  // the staging rows are free again
}
#endif

// d += A B for one warp on the tensor cores (mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32):
// A 16x8 and B 8x8 in TF32, d 16x8 in fp32. With g = lane / 4 and t = lane % 4 each lane holds
//   a = {A[g][t], A[g+8][t], A[g][t+4], A[g+8][t+4]},  b = {B[t][g], B[t+4][g]},
//   d = {D[g][2t], D[g][2t+1], D[g+8][2t], D[g+8][2t+1]}.
// Every lane of the warp must call it together.
__device__ __forceinline__ void mma_tf32_16x8x8(float d[4], const unsigned a[4], const unsigned b[2]) {
#ifdef FF_HOST_EMULATION
    // A[row][k] is register (row >= 8) + 2 (k >= 4) of lane (row % 8) * 4 + k % 4; B[k][col]
    // register 4 + (k >= 4) of lane col * 4 + k % 4.
    emulated_mma<8>(
        d, a, b,
        [](const unsigned (*r)[6], int row, int k) {
            return __uint_as_float(r[(row & 7) * 4 + (k & 3)][(row >> 3) + 2 * (k >> 2)]);
        },
        [](const unsigned (*r)[6], int k, int col) {
            return __uint_as_float(r[col * 4 + (k & 3)][4 + (k >> 2)]);
        });
#else
    asm volatile(
        "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
        "{%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#endif
}

// Two values as the bf16 pair of a tensor-core fragment register: `lo` in the low half.
__device__ __forceinline__ unsigned pack_bf16x2(float lo, float hi) {
    return (unsigned)from_f32<bf16_t>(lo).bits | ((unsigned)from_f32<bf16_t>(hi).bits << 16);
}

// d += A B for one warp on the tensor cores (mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32):
// A 16x16 and B 16x8 in bf16 pairs, d 16x8 in fp32. With g = lane / 4 and t = lane % 4 each
// register holds the pair of columns (or rows of B) 2t and 2t + 1, plus 8 for the later ones:
//   a = {A[g][2t..], A[g+8][2t..], A[g][2t+8..], A[g+8][2t+8..]},  b = {B[2t..][g], B[2t+8..][g]},
//   d = {D[g][2t], D[g][2t+1], D[g+8][2t], D[g+8][2t+1]}.
// Every lane of the warp must call it together.
__device__ __forceinline__ void mma_bf16_16x8x16(float d[4], const unsigned a[4], const unsigned b[2]) {
#ifdef FF_HOST_EMULATION
    // A[row][k] is half k % 2 of register (row >= 8) + 2 (k >= 8) of lane
    // (row % 8) * 4 + (k % 8) / 2; B[k][col] half k % 2 of register 4 + (k >= 8) of lane
    // col * 4 + (k % 8) / 2.
    const auto half = [](unsigned r, int k) {
        return __uint_as_float((k & 1 ? r >> 16 : r & 0xffffu) << 16);
    };
    emulated_mma<16>(
        d, a, b,
        [&](const unsigned (*r)[6], int row, int k) {
            return half(r[(row & 7) * 4 + ((k & 7) >> 1)][(row >> 3) + 2 * (k >> 3)], k);
        },
        [&](const unsigned (*r)[6], int k, int col) {
            return half(r[col * 4 + ((k & 7) >> 1)][4 + (k >> 3)], k);
        });
#else
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
        "{%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#endif
}

// Element-wise kernels of the CUDA backend: residual adds, the bias of a linear layer,
// activations, global attention's gate, the gating and layout steps of the triangle
// multiplicative update (AF2 Algorithms 11 and 12) around its per-channel GEMMs, the outer
// product mean's (Algorithm 10) masking, axis swap and normalisation around its GEMMs, the pair
// embeddings' outer sum and one-hot lookup, and copies between storage types.
//
// This file is compiled twice into one program (kernels/src/cuda/sources.rs): once with the
// storage type FF_T = float and FF_NAME(k) = k_f32, once with FF_T = bf16_t and k_bf16. Tensors
// of the model are FF_T; parameters (biases, masks, norms, lookup tables) are fp32; every
// computation is fp32. Each kernel is a grid-stride loop: launch with any grid, e.g.
// blockDim.x = 256 and gridDim.x = min(ceil(n / 256), 65536).

#define FF_GRID_STRIDE(i, n)                                                        \
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < (n); \
         i += (long long)gridDim.x * blockDim.x)

// y[i] += x[i]: a residual add.
extern "C" __global__ void FF_NAME(add)(FF_T* y, const FF_T* __restrict__ x, long long n) {
    FF_GRID_STRIDE(i, n) y[i] = from_f32<FF_T>(to_f32(y[i]) + to_f32(x[i]));
}

// y[r, c] += b[c] over rows x cols.
extern "C" __global__ void FF_NAME(bias_add)(FF_T* y, const float* __restrict__ b, long long rows,
                                             int cols) {
    FF_GRID_STRIDE(i, rows * cols) y[i] = from_f32<FF_T>(to_f32(y[i]) + b[i % cols]);
}

// Activation kinds, as the backend's `Activation` enum.
#define FF_RELU 0
#define FF_GELU 1
#define FF_SIGMOID 2

// x = f(x) in place; GELU is the exact (erf) one.
extern "C" __global__ void FF_NAME(activate)(FF_T* x, long long n, int kind) {
    FF_GRID_STRIDE(i, n) {
        const float v = to_f32(x[i]);
        x[i] = from_f32<FF_T>(kind == FF_RELU   ? fmaxf(v, 0.0f)
                              : kind == FF_GELU ? 0.5f * v * (1.0f + erff(v * 0.70710678118654752f))
                                                : sigmoid_f32(v));
    }
}

// The gated, masked side of a triangle update stored channel-first for the per-channel GEMMs:
//   out[c, p] = mask[p] * sigmoid(gate[p, c]) * proj[p, c]
// proj, gate: [positions, channels]; mask: [positions] or null; out: [channels, positions].
extern "C" __global__ void FF_NAME(gate_channel_first)(const FF_T* __restrict__ proj,
                                                       const FF_T* __restrict__ gate,
                                                       const float* __restrict__ mask,
                                                       FF_T* __restrict__ out,
                                                       long long positions, int channels) {
    FF_GRID_STRIDE(i, positions * channels) {
        const long long p = i / channels;
        const int c = (int)(i % channels);
        const float m = mask ? mask[p] : 1.0f;
        out[(long long)c * positions + p] =
            from_f32<FF_T>(m * sigmoid_f32(to_f32(gate[i])) * to_f32(proj[i]));
    }
}

// y[p, c] = x[c, p]: channel-first [channels, positions] back to channel-last.
extern "C" __global__ void FF_NAME(channel_last)(const FF_T* __restrict__ x, FF_T* __restrict__ y,
                                                 long long positions, int channels) {
    FF_GRID_STRIDE(i, positions * channels) {
        const long long p = i / channels;
        const int c = (int)(i % channels);
        y[i] = x[(long long)c * positions + p];
    }
}

// x *= sigmoid(gate), element by element (the update's output gate).
extern "C" __global__ void FF_NAME(sigmoid_gate)(FF_T* x, const FF_T* __restrict__ gate,
                                                 long long n) {
    FF_GRID_STRIDE(i, n) x[i] = from_f32<FF_T>(to_f32(x[i]) * sigmoid_f32(to_f32(gate[i])));
}

// g[b, n, c] = sigmoid(g[b, n, c]) * v[b, c] over [batch, n, channels], in place (global
// attention's gate: one attention result per batch row for all its positions).
extern "C" __global__ void FF_NAME(broadcast_sigmoid_gate)(FF_T* g, const FF_T* __restrict__ v,
                                                           long long batch, long long n,
                                                           int channels) {
    FF_GRID_STRIDE(i, batch * n * channels) {
        const int c = (int)(i % channels);
        const long long b = i / (n * channels);
        g[i] = from_f32<FF_T>(sigmoid_f32(to_f32(g[i])) * to_f32(v[b * channels + c]));
    }
}

// x[r, :] *= s[r] over rows x cols, in place (the outer product mean's MSA mask).
extern "C" __global__ void FF_NAME(scale_rows)(FF_T* x, const float* __restrict__ s, long long rows,
                                               int cols) {
    FF_GRID_STRIDE(i, rows * cols) x[i] = from_f32<FF_T>(to_f32(x[i]) * s[i / cols]);
}

// y[o, j, i, k] = x[o, i, j, k]: axes 1 and 2 of x [outer, d1, d2, inner] swapped.
extern "C" __global__ void FF_NAME(swap_axes)(const FF_T* __restrict__ x, FF_T* __restrict__ y,
                                              long long outer, long long d1, long long d2,
                                              long long inner) {
    FF_GRID_STRIDE(t, outer * d1 * d2 * inner) {
        const long long k = t % inner;
        const long long j = (t / inner) % d2;
        const long long i = (t / (inner * d2)) % d1;
        const long long o = t / (inner * d2 * d1);
        y[((o * d2 + j) * d1 + i) * inner + k] = x[t];
    }
}

// x[r, :] /= eps + norm[r] over rows x cols (the outer product mean's normalisation).
extern "C" __global__ void FF_NAME(divide_rows)(FF_T* x, const float* __restrict__ norm,
                                                long long rows, int cols, float eps) {
    FF_GRID_STRIDE(i, rows * cols) x[i] = from_f32<FF_T>(to_f32(x[i]) / (eps + norm[i / cols]));
}

// out[i, j, c] = a[i, c] + b[j, c]: the outer sum of two [n, channels] projections.
extern "C" __global__ void FF_NAME(outer_sum)(const FF_T* __restrict__ a,
                                              const FF_T* __restrict__ b,
                                              FF_T* __restrict__ out, long long n, int channels) {
    FF_GRID_STRIDE(t, n * n * channels) {
        const int c = (int)(t % channels);
        const long long ij = t / channels;
        out[t] = from_f32<FF_T>(to_f32(a[(ij / n) * channels + c]) +
                                to_f32(b[(ij % n) * channels + c]));
    }
}

// out[p, c] = w[classes[p], c] + bias[c], or bias[c] where classes[p] < 0: a one-hot linear layer
// by lookup (classes hold small integers as fp32).
extern "C" __global__ void FF_NAME(one_hot_linear)(const float* __restrict__ classes,
                                                   const float* __restrict__ w,
                                                   const float* __restrict__ bias,
                                                   FF_T* __restrict__ out, long long positions,
                                                   int channels) {
    FF_GRID_STRIDE(t, positions * channels) {
        const int c = (int)(t % channels);
        const float k = classes[t / channels];
        out[t] = from_f32<FF_T>(k >= 0.0f ? w[(long long)k * channels + c] + bias[c] : bias[c]);
    }
}

// y[i] = x[i] between storages: fp32 into FF_T (bf16 rounds to nearest even), FF_T into fp32,
// and FF_T into FF_T (a copy between any element offsets, which a bf16 buffer's byte copies
// cannot always give).
extern "C" __global__ void FF_NAME(from_f32)(const float* __restrict__ x, FF_T* __restrict__ y,
                                             long long n) {
    FF_GRID_STRIDE(i, n) y[i] = from_f32<FF_T>(x[i]);
}

extern "C" __global__ void FF_NAME(to_f32)(const FF_T* __restrict__ x, float* __restrict__ y,
                                           long long n) {
    FF_GRID_STRIDE(i, n) y[i] = to_f32(x[i]);
}

extern "C" __global__ void FF_NAME(copy)(const FF_T* __restrict__ x, FF_T* __restrict__ y,
                                         long long n) {
    FF_GRID_STRIDE(i, n) y[i] = x[i];
}

#undef FF_GRID_STRIDE
#undef FF_RELU
#undef FF_GELU
#undef FF_SIGMOID

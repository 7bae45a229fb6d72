// Row softmax over the last axis of attention logits x [batch, heads, queries, keys] with
// AlphaFold2's masking and a pair bias:
//   p[b, h, q, k] = softmax_k(scale * x[b, h, q, k] + 1e9 * (mask[b, k] - 1) + bias[h, q, k])
// in exactly that order of additions. bias [heads, queries, keys] (storage type T) is shared by
// every batch row; mask [batch, keys] is fp32 0/1. Either may be null. A row whose logits are all
// -inf becomes all zeros (as the CPU backend's softmax_row), never NaN. Accumulation is fp32.
// One warp per row: the first pass keeps a running (max, sum) per lane, the second writes.
// Launch with blockDim.x a multiple of 32 (128 recommended), gridDim.x =
// ceil(batch * heads * queries / (blockDim.x / 32)). y may alias x (in place).

template <typename T>
__device__ __forceinline__ float softmax_logit(const T* xr, const T* br, const float* mr,
                                               float scale, int k) {
    float v = scale * to_f32(xr[k]);
    if (mr) v += FF_MASK_BIAS * (mr[k] - 1.0f);
    if (br) v += to_f32(br[k]);
    return v;
}

template <typename T>
__device__ __forceinline__ void masked_softmax_rows(const T* x, const T* __restrict__ bias,
                                                    const float* __restrict__ mask, T* y,
                                                    int batch, int heads, int queries, int keys,
                                                    float scale) {
    const int lane = threadIdx.x & 31;
    const long long rows = (long long)batch * heads * queries;
    const long long row = (long long)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    if (row >= rows) return;  // uniform over the warp
    const int q = (int)(row % queries);
    const int h = (int)((row / queries) % heads);
    const int b = (int)(row / ((long long)queries * heads));
    const T* xr = x + row * keys;
    T* yr = y + row * keys;
    const T* br = bias ? bias + ((long long)h * queries + q) * keys : nullptr;
    const float* mr = mask ? mask + (long long)b * keys : nullptr;

    WarpSoftmax sm;
    for (int k = lane; k < keys; k += 32) sm.add(softmax_logit(xr, br, mr, scale, k));
    sm.finish();
    for (int k = lane; k < keys; k += 32) {
        yr[k] = from_f32<T>(sm.weight(softmax_logit(xr, br, mr, scale, k)));
    }
}

extern "C" __global__ void masked_softmax_f32(const float* x, const float* __restrict__ bias,
                                              const float* __restrict__ mask, float* y, int batch,
                                              int heads, int queries, int keys, float scale) {
    masked_softmax_rows<float>(x, bias, mask, y, batch, heads, queries, keys, scale);
}

extern "C" __global__ void masked_softmax_bf16(const bf16_t* x, const bf16_t* __restrict__ bias,
                                               const float* __restrict__ mask, bf16_t* y,
                                               int batch, int heads, int queries, int keys,
                                               float scale) {
    masked_softmax_rows<bf16_t>(x, bias, mask, y, batch, heads, queries, keys, scale);
}

// Expectations under each row's softmax (AlphaFold2's confidence metrics: the expected pLDDT bin,
// aligned error and TM term of a row of bin logits):
//   out[r, v] = sum_k softmax(x[r, :])[k] * values[v, k]
// x [rows, bins] in the storage type T, values [n_values, bins] with n_values <=
// FF_MAX_EXPECTATIONS (the backend's MAX_EXPECTATIONS checks it), out [rows, n_values]; values,
// out and the arithmetic fp32. One warp per row: launch as masked_softmax_f32.
#define FF_MAX_EXPECTATIONS 4
template <typename T>
__device__ __forceinline__ void softmax_expectations_rows(const T* __restrict__ x,
                                                          const float* __restrict__ values,
                                                          float* __restrict__ out, long long rows,
                                                          int bins, int n_values) {
    const int lane = threadIdx.x & 31;
    const long long row = (long long)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    if (row >= rows) return;  // uniform over the warp
    const T* xr = x + row * bins;
    WarpSoftmax sm;
    for (int k = lane; k < bins; k += 32) sm.add(to_f32(xr[k]));
    sm.finish();
    float acc[FF_MAX_EXPECTATIONS] = {};
    for (int k = lane; k < bins; k += 32) {
        const float p = sm.weight(to_f32(xr[k]));
        for (int v = 0; v < n_values; ++v) acc[v] += p * values[(long long)v * bins + k];
    }
    for (int v = 0; v < n_values; ++v) {
        const float e = warp_sum(acc[v]);
        if (lane == 0) out[row * n_values + v] = e;
    }
}

extern "C" __global__ void softmax_expectations_f32(const float* __restrict__ x,
                                                    const float* __restrict__ values,
                                                    float* __restrict__ out, long long rows,
                                                    int bins, int n_values) {
    softmax_expectations_rows<float>(x, values, out, rows, bins, n_values);
}

extern "C" __global__ void softmax_expectations_bf16(const bf16_t* __restrict__ x,
                                                     const float* __restrict__ values,
                                                     float* __restrict__ out, long long rows,
                                                     int bins, int n_values) {
    softmax_expectations_rows<bf16_t>(x, values, out, rows, bins, n_values);
}

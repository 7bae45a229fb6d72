// Row-wise layer normalisation over the last axis:
//   y[r, i] = (x[r, i] - mean_r) / sqrt(var_r + eps) * gamma[i] + beta[i]
// x, y: [rows, c] in the storage type T (fp32 or bf16); gamma, beta: fp32 [c]; mean and the
// (biased, centred) variance are accumulated in fp32, in two passes over the row as the CPU
// backend computes them (the second read hits L1). One warp per row; launch with blockDim.x a
// multiple of 32 (128 recommended) and gridDim.x = ceil(rows / (blockDim.x / 32)).
// y may alias x (in place).

template <typename T>
__device__ __forceinline__ void layer_norm_rows(const T* x, const float* __restrict__ gamma,
                                                const float* __restrict__ beta, T* y,
                                                long long rows, int c, float eps) {
    const int lane = threadIdx.x & 31;
    const long long row = (long long)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    if (row >= rows) return;  // uniform over the warp
    const T* xr = x + row * c;
    T* yr = y + row * c;
    const float inv_c = 1.0f / (float)c;

    float s = 0.0f;
    for (int i = lane; i < c; i += 32) s += to_f32(xr[i]);
    const float mean = warp_sum(s) * inv_c;

    float v = 0.0f;
    for (int i = lane; i < c; i += 32) {
        const float d = to_f32(xr[i]) - mean;
        v += d * d;
    }
    const float inv = 1.0f / sqrtf(warp_sum(v) * inv_c + eps);

    for (int i = lane; i < c; i += 32) {
        const float d = to_f32(xr[i]) - mean;
        yr[i] = from_f32<T>(d * inv * gamma[i] + beta[i]);
    }
}

extern "C" __global__ void layer_norm_f32(const float* x, const float* __restrict__ gamma,
                                          const float* __restrict__ beta, float* y,
                                          long long rows, int c, float eps) {
    layer_norm_rows<float>(x, gamma, beta, y, rows, c, eps);
}

extern "C" __global__ void layer_norm_bf16(const bf16_t* x, const float* __restrict__ gamma,
                                           const float* __restrict__ beta, bf16_t* y,
                                           long long rows, int c, float eps) {
    layer_norm_rows<bf16_t>(x, gamma, beta, y, rows, c, eps);
}

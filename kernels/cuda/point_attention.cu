// Invariant point attention's weights (AF2 Algorithm 22, lines 7-9; IgFold's IPA alike), in
// place over the scalar logits x [heads, n, n] (a GEMM's q k^T):
//   v = scalar_scale * x[h, i, j] - point_w[h] * sum_c (qp[h, i, c] - kp[h, j, c])^2
//       + pair_scale * bias[i, j, h]
// in exactly that order; where mask (fp32 0/1, [n]; null: none) has mask[i] * mask[j] == 0,
// v = mask_value (fill != 0) or v += mask_value * (1 - mask[i] * mask[j]) (fill == 0, for every
// pair); then the softmax over j. qp, kp: [heads, n, coords] points in the global frame. The
// CPU twin is kernels/src/point_attention.rs. One warp per row (h, i): the first pass writes
// the logits and keeps a running (max, sum) per lane, the second normalises. Launch with
// blockDim.x a multiple of 32, gridDim.x = ceil(heads * n / (blockDim.x / 32)).

#define FF_IPA_MAX_COORDS 24

extern "C" __global__ void point_attention_f32(float* x, const float* __restrict__ qp,
                                               const float* __restrict__ kp,
                                               const float* __restrict__ point_w,
                                               const float* __restrict__ bias,
                                               const float* __restrict__ mask, int heads, int n,
                                               int coords, float scalar_scale, float pair_scale,
                                               float mask_value, int fill) {
    const int lane = threadIdx.x & 31;
    const long long row = (long long)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    if (row >= (long long)heads * n) return;  // uniform over the warp
    const int h = (int)(row / n);
    const int i = (int)(row % n);
    float q[FF_IPA_MAX_COORDS];
#pragma unroll
    for (int c = 0; c < FF_IPA_MAX_COORDS; ++c) q[c] = c < coords ? qp[row * coords + c] : 0.0f;
    const float w = point_w[h];
    const float mi = mask ? mask[i] : 1.0f;
    float* xr = x + row * n;

    WarpSoftmax sm;
    for (int j = lane; j < n; j += 32) {
        const float* k = kp + ((long long)h * n + j) * coords;
        float dist = 0.0f;
#pragma unroll
        for (int c = 0; c < FF_IPA_MAX_COORDS; ++c) {
            if (c < coords) {
                const float d = q[c] - k[c];
                dist += d * d;
            }
        }
        float v = scalar_scale * xr[j] - w * dist +
                  pair_scale * bias[((long long)i * n + j) * heads + h];
        if (mask) {
            const float kept = mi * mask[j];
            if (!fill) v += mask_value * (1.0f - kept);
            else if (kept == 0.0f) v = mask_value;
        }
        xr[j] = v;
        sm.add(v);
    }
    sm.finish();
    for (int j = lane; j < n; j += 32) xr[j] = sm.weight(xr[j]);
}

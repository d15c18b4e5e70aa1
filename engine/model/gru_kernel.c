/* The GRU recurrence over packed sequences, forward and backward through time, one fused pass per step.

   Built and loaded by engine/model/gru_kernel.py (plain C through ctypes: no Python or torch headers, so it
   compiles in well under a second). The matrix products call the BLAS sgemm_ that torch itself uses,
   handed in as a function pointer; each step is then that one product and one loop over the step's rows
   that does every elementwise operation of the step, instead of the ~10 separate tensor operations (each
   a dispatch, a pass over memory and a Python round trip) of engine/model/gru.py's torch version.

   Layout (as engine.model.gru.Packing): N packed rows, time-major, longest sequence first; step t holds
   rows offsets[t] .. offsets[t] + sizes[t] - 1, and its row i continues row i of step t - 1. Row-major
   float32 throughout, H = hidden, G = 3H, gate order r, z, n (nn.GRU's). */

#include <math.h>
#include <stdint.h>
#include <string.h>

typedef void (*sgemm_fn)(const char *transa, const char *transb, const int *m, const int *n, const int *k,
                         const float *alpha, const float *a, const int *lda, const float *b, const int *ldb,
                         const float *beta, float *c, const int *ldc);

#define MIN_PARALLEL_ROWS 32  /* fewer rows: the fork-join costs more than the loop */

static inline float sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }

/* gates [N, G]: in, x W_ih^T + b_ih; out, the gate values r, z, n. w_hh [G, H], b_hh [G].
   out [N, H]: the states. hidden_n [N, H]: W_hn h_prev + b_hn, kept for the backward pass.
   h0 [sizes[0], H]: zeros. gh [sizes[0], G]: workspace. */
void gru_forward(sgemm_fn sgemm, int threads, int64_t steps, const int64_t *sizes, const int64_t *offsets,
                 int hidden, float *gates, const float *w_hh, const float *b_hh, float *out, float *hidden_n,
                 const float *h0, float *gh) {
    const int H = hidden, G = 3 * hidden;
    const float one = 1.0f, zero = 0.0f;
    for (int64_t t = 0; t < steps; ++t) {
        const int size = (int)sizes[t];
        const int64_t start = offsets[t];
        const float *h_prev = t ? out + offsets[t - 1] * H : h0;
        if (t)
            sgemm("T", "N", &G, &size, &H, &one, w_hh, &H, h_prev, &H, &zero, gh, &G);
        else
            memset(gh, 0, sizeof(float) * (size_t)size * G);
#pragma omp parallel for num_threads(threads) schedule(static) if (size >= MIN_PARALLEL_ROWS)
        for (int i = 0; i < size; ++i) {
            float *restrict g = gates + (start + i) * G;
            const float *restrict a = gh + (int64_t)i * G;
            const float *restrict p = h_prev + (int64_t)i * H;
            float *restrict h = out + (start + i) * H;
            float *restrict hn = hidden_n + (start + i) * H;
#pragma omp simd
            for (int j = 0; j < H; ++j) {
                const float r = sigmoid(g[j] + a[j] + b_hh[j]);
                const float z = sigmoid(g[H + j] + a[H + j] + b_hh[H + j]);
                const float n_hidden = a[2 * H + j] + b_hh[2 * H + j];
                const float n = 2.0f * sigmoid(2.0f * (g[2 * H + j] + r * n_hidden)) - 1.0f;  /* tanh */
                g[j] = r;
                g[H + j] = z;
                g[2 * H + j] = n;
                hn[j] = n_hidden;
                h[j] = n + z * (p[j] - n);
            }
        }
    }
}

/* grad_out [N, H]: d loss / d states. gates, hidden_n, out, h0: as the forward pass left them.
   d_hidden [N, G]: out, d loss / d (h_prev W_hh^T + b_hh). d_input [N, G]: out, d loss / d (x W_ih^T + b_ih).
   carry [sizes[0], H]: zeros on entry (d loss / d h_prev from the step after). */
void gru_backward(sgemm_fn sgemm, int threads, int64_t steps, const int64_t *sizes, const int64_t *offsets,
                  int hidden, const float *grad_out, const float *gates, const float *hidden_n, const float *out,
                  const float *h0, const float *w_hh, float *d_hidden, float *d_input, float *carry) {
    const int H = hidden, G = 3 * hidden;
    const float one = 1.0f;
    for (int64_t t = steps - 1; t >= 0; --t) {
        const int size = (int)sizes[t];
        const int64_t start = offsets[t];
        const float *h_prev = t ? out + offsets[t - 1] * H : h0;
#pragma omp parallel for num_threads(threads) schedule(static) if (size >= MIN_PARALLEL_ROWS)
        for (int i = 0; i < size; ++i) {
            const int64_t row = start + i;
            const float *restrict g = gates + row * G;
            const float *restrict hn = hidden_n + row * H;
            const float *restrict go = grad_out + row * H;
            const float *restrict p = h_prev + (int64_t)i * H;
            float *restrict c = carry + (int64_t)i * H;
            float *restrict dh_ = d_hidden + row * G;
            float *restrict di = d_input + row * G;
#pragma omp simd
            for (int j = 0; j < H; ++j) {
                const float r = g[j], z = g[H + j], n = g[2 * H + j];
                const float dh = go[j] + c[j];
                const float dn = dh * (1.0f - z) * (1.0f - n * n);
                const float dr = dn * hn[j] * r * (1.0f - r);
                const float dz = dh * (p[j] - n) * z * (1.0f - z);
                dh_[j] = di[j] = dr;
                dh_[H + j] = di[H + j] = dz;
                dh_[2 * H + j] = dn * r;
                di[2 * H + j] = dn;
                c[j] = dh * z;
            }
        }
        if (t)  /* carry += d_hidden W_hh: what flows into the previous step's state */
            sgemm("N", "N", &H, &size, &G, &one, w_hh, &H, d_hidden + start * G, &G, &one, carry, &H);
    }
}

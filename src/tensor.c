/* Dense kernels over BLIS; the only file that includes blis.h. */
#include "mdi/tensor.h"

#include <blis.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif
#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#endif

/* AMD family from CPUID leaf 1 (0 when not AMD or not x86). */
static unsigned amd_family(void)
{
#if defined(__x86_64__) || defined(__i386__)
    unsigned a, b, c, d;
    if (!__get_cpuid(0, &a, &b, &c, &d))
        return 0;
    if (!(b == 0x68747541 && d == 0x69746e65 && c == 0x444d4163)) /* "AuthenticAMD" */
        return 0;
    if (!__get_cpuid(1, &a, &b, &c, &d))
        return 0;
    unsigned fam = (a >> 8) & 0xf;
    if (fam == 0xf)
        fam += (a >> 20) & 0xff;
    return fam;
#else
    return 0;
#endif
}

static int cpu_has_avx2_fma(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
    return 0;
#endif
}

int mdi_tensor_choose_arch(void)
{
    if (getenv("BLIS_ARCH_TYPE"))
        return 0;
    /* BLIS 0.9 knows Zen 1-3 by model number only; Zen 4/5 fall back to
     * generic kernels that are ~5x slower. Zen 3 kernels (AVX2/FMA) run on all. */
    if (amd_family() >= 0x19 && cpu_has_avx2_fma()) {
        char id[16];
        snprintf(id, sizeof id, "%d", (int)BLIS_ARCH_ZEN3);
        setenv("BLIS_ARCH_TYPE", id, 0);
        return 1;
    }
    return 0;
}

mdi_status mdi_tensor_init(int n_threads, mdi_tensor_info *info, mdi_err *err)
{
    if (n_threads < 1 || n_threads > 1024)
        return mdi_errf(err, MDI_ERR_ARG, "thread count %d is outside [1, 1024]", n_threads);
    bli_thread_set_num_threads(n_threads);
    arch_t id = bli_arch_query_id();
    if (info) {
        memset(info, 0, sizeof *info);
        info->n_threads = n_threads;
        snprintf(info->blis_arch, sizeof info->blis_arch, "%s", bli_arch_string(id));
        info->slow_kernels = (id == BLIS_ARCH_GENERIC) && cpu_has_avx2_fma();
    }
    return MDI_OK;
}

void mdi_matmul(float *y, const float *x, const float *w, size_t rows, size_t n, size_t d,
                float beta)
{
    float alpha = 1.0f;
    /* C (rows, d) = A (rows, n) * B (n, d) where B = W^T: B(k, j) = w[j * n + k]. */
    bli_sgemm(BLIS_NO_TRANSPOSE, BLIS_NO_TRANSPOSE, (dim_t)rows, (dim_t)d, (dim_t)n, &alpha,
              (float *)x, (inc_t)n, 1, (float *)w, 1, (inc_t)n, &beta, y, (inc_t)d, 1);
}

/* Dot product with four 8-wide accumulators: the order of operations depends
 * only on n. */
static inline float dot_stream(const float *a, const float *b, size_t n)
{
    size_t i = 0;
#if defined(__AVX2__) && defined(__FMA__)
    __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
        s2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 16), _mm256_loadu_ps(b + i + 16), s2);
        s3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 24), _mm256_loadu_ps(b + i + 24), s3);
    }
    __m256 s = _mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3));
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    h = _mm_add_ss(h, _mm_movehdup_ps(h));
    float r = _mm_cvtss_f32(h);
#else
    float acc[32] = {0};
    for (; i + 32 <= n; i += 32)
        for (size_t j = 0; j < 32; j++)
            acc[j] += a[i + j] * b[i + j];
    for (size_t w = 16; w > 0; w /= 2)
        for (size_t j = 0; j < w; j++)
            acc[j] += acc[j + w];
    float r = acc[0];
#endif
    for (; i < n; i++)
        r += a[i] * b[i];
    return r;
}

void mdi_matmul_stream(float *y, const float *x, const float *w, size_t rows, size_t n, size_t d,
                       float beta, int n_threads)
{
    if (rows == 0)
        return;
    long D = (long)d;
    // y[r, j] = beta * y[r, j] + W[j, :] . x[r, :]; W row j is read from memory once
#pragma omp parallel for num_threads(n_threads) schedule(static) if (n_threads > 1)
    for (long j = 0; j < D; j++) {
        const float *wj = w + (size_t)j * n;
        for (size_t r = 0; r < rows; r++) {
            float v = dot_stream(wj, x + r * n, n);
            float *yj = y + r * d + (size_t)j;
            *yj = beta == 0.0f ? v : beta * *yj + v;
        }
    }
}

float mdi_dot(const float *a, const float *b, size_t n)
{
    float acc[8] = {0};
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (size_t j = 0; j < 8; j++)
            acc[j] += a[i + j] * b[i + j];
    float s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for (; i < n; i++)
        s += a[i] * b[i];
    return s;
}

void mdi_axpy(float *a, float s, const float *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        a[i] += s * b[i];
}

void mdi_rmsnorm(float *out, const float *x, const float *w, size_t n, float eps)
{
    float ss = mdi_dot(x, x, n) / (float)n;
    float scale = 1.0f / sqrtf(ss + eps);
    for (size_t i = 0; i < n; i++)
        out[i] = w[i] * (scale * x[i]);
}

void mdi_softmax(float *x, size_t n)
{
    if (n == 0)
        return;
    float max = x[0];
    for (size_t i = 1; i < n; i++)
        if (x[i] > max)
            max = x[i];
    float sum = 0.0f;
    for (size_t i = 0; i < n; i++) {
        x[i] = expf(x[i] - max);
        sum += x[i];
    }
    float inv = 1.0f / sum;
    for (size_t i = 0; i < n; i++)
        x[i] *= inv;
}

void mdi_swiglu(float *a, const float *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        a[i] = a[i] / (1.0f + expf(-a[i])) * b[i];
}

mdi_status mdi_rope_init(mdi_rope_table *t, size_t max_pos, size_t head_dim, float theta,
                         mdi_err *err)
{
    memset(t, 0, sizeof *t);
    if (head_dim < 2 || head_dim % 2 || max_pos == 0)
        return mdi_errf(err, MDI_ERR_ARG, "RoPE needs an even head_dim and max_pos > 0");
    t->max_pos = max_pos;
    t->half = head_dim / 2;
    t->cos_sin = mdi_alloc_floats(max_pos * t->half * 2);
    if (!t->cos_sin)
        return mdi_errf(err, MDI_ERR_NOMEM, "RoPE table of %zu positions", max_pos);
    for (size_t i = 0; i < t->half; i++) {
        /* Same expression as the reference (float), so angles agree bit for bit. */
        float freq = 1.0f / powf(theta, (float)(2 * i) / (float)head_dim);
        for (size_t p = 0; p < max_pos; p++) {
            float angle = (float)p * freq;
            t->cos_sin[(p * t->half + i) * 2] = cosf(angle);
            t->cos_sin[(p * t->half + i) * 2 + 1] = sinf(angle);
        }
    }
    return MDI_OK;
}

void mdi_rope_free(mdi_rope_table *t)
{
    mdi_free_floats(t->cos_sin);
    t->cos_sin = NULL;
}

void mdi_rope_apply(const mdi_rope_table *t, float *v, size_t n_heads, size_t pos)
{
    const float *cs = t->cos_sin + pos * t->half * 2;
    for (size_t h = 0; h < n_heads; h++) {
        float *hv = v + h * t->half * 2;
        for (size_t i = 0; i < t->half; i++) {
            float c = cs[2 * i], s = cs[2 * i + 1];
            float v0 = hv[2 * i], v1 = hv[2 * i + 1];
            hv[2 * i] = v0 * c - v1 * s;
            hv[2 * i + 1] = v0 * s + v1 * c;
        }
    }
}

float *mdi_alloc_floats(size_t n)
{
    if (n == 0)
        n = 1;
    if (n > SIZE_MAX / sizeof(float) - 64)
        return NULL;
    size_t bytes = (n * sizeof(float) + 63) & ~(size_t)63;
    return aligned_alloc(64, bytes);
}

void mdi_free_floats(float *p)
{
    free(p);
}

/* Dense kernels over BLIS (the only file that includes blis.h), the packed
 * weight layout, element-wise kernels and RoPE; the streaming product is in
 * tensor_stream.c. */
#include "mdi/tensor.h"

#include <blis.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tensor_layout.h"

#define MDI_HUGE_PAGE ((size_t)2 << 20)
#define MDI_HUGE_MIN ((size_t)4 << 20)

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif
#if defined(__AVX2__)
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

/* Run a small product in a child process under the kernel set BLIS_ARCH_TYPE
 * asks for: BLIS aborts on a set it was not built with, and kernels for
 * instructions this CPU lacks die with SIGILL. Returns 0 when the product
 * ran and was right, else the signal or exit status that ended the child
 * (-1: no child could be started). */
static int arch_trial(void)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        enum { N = 24 };
        float a[N * N], b[N * N], c[N * N], one = 1.0f, zero = 0.0f;
        int fd = open("/dev/null", O_WRONLY);
        if (fd >= 0)
            dup2(fd, STDERR_FILENO); /* BLIS's own abort message */
        for (int i = 0; i < N * N; i++) {
            a[i] = (float)(i % 7) - 3.0f;
            b[i] = (float)(i % 5) - 2.0f;
        }
        bli_thread_set_num_threads(1);
        bli_sgemm(BLIS_NO_TRANSPOSE, BLIS_NO_TRANSPOSE, N, N, N, &one, a, N, 1, b, N, 1, &zero, c,
                  N, 1);
        for (int i = 0; i < N; i++)
            for (int j = 0; j < N; j++) {
                float want = 0.0f;
                for (int k = 0; k < N; k++)
                    want += a[i * N + k] * b[k * N + j];
                if (c[i * N + j] != want) /* small integers: exact in any order */
                    _exit(3);
            }
        _exit(0);
    }
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR)
            return -1;
    return WIFSIGNALED(st) ? 128 + WTERMSIG(st) : WEXITSTATUS(st);
}

/* BLIS_ARCH_TYPE as BLIS 0.9 reads it (strtol, -1 = detect), refused where
 * BLIS would abort, misread or run kernels that this CPU cannot. */
static mdi_status check_arch_env(const char *v, mdi_err *err)
{
    char hint[96];
    snprintf(hint, sizeof hint,
             "a BLIS kernel-set number (%d = zen3, %d = haswell, -1 = let BLIS choose)",
             (int)BLIS_ARCH_ZEN3, (int)BLIS_ARCH_HASWELL);
    char *end;
    errno = 0;
    long id = strtol(v, &end, 10);
    int digits = *v == '-' ? isdigit((unsigned char)v[1]) : isdigit((unsigned char)*v);
    if (!digits || *end || errno) {
        if (!errno && id >= 0 && id < BLIS_NUM_ARCHS)
            return mdi_errf(err, MDI_ERR_ARG,
                            "BLIS_ARCH_TYPE='%.40s' is not a number: BLIS would read it as %ld "
                            "and run its '%s' kernels; use %s, or unset it",
                            v, id, bli_arch_string((arch_t)id), hint);
        return mdi_errf(err, MDI_ERR_ARG,
                        "BLIS_ARCH_TYPE='%.40s' is not a number; use %s, or unset it", v, hint);
    }
    if (id == -1)
        return MDI_OK;
    if (id < 0 || id >= BLIS_NUM_ARCHS)
        return mdi_errf(err, MDI_ERR_ARG,
                        "BLIS_ARCH_TYPE=%ld is not a BLIS kernel set (0 to %d, or -1); use %s, "
                        "or unset it",
                        id, BLIS_NUM_ARCHS - 1, hint);
    const char *name = bli_arch_string((arch_t)id);
    int r = arch_trial();
    if (r == 0 || r == -1) /* -1: cannot tell; BLIS will say */
        return MDI_OK;
    if (r == 128 + SIGABRT)
        return mdi_errf(err, MDI_ERR_UNSUPPORTED,
                        "BLIS_ARCH_TYPE=%ld asks for the '%s' kernels, which this BLIS was not "
                        "built with; use %s, or unset it",
                        id, name, hint);
    if (r == 128 + SIGILL)
        return mdi_errf(err, MDI_ERR_UNSUPPORTED,
                        "BLIS_ARCH_TYPE=%ld asks for the '%s' kernels, whose instructions this CPU "
                        "does not have; use %s, or unset it",
                        id, name, hint);
    return mdi_errf(err, MDI_ERR_UNSUPPORTED,
                    "BLIS_ARCH_TYPE=%ld: a trial product with the '%s' kernels %s %d; use %s, "
                    "or unset it",
                    id, name, r > 128 ? "died of signal" : "failed with status",
                    r > 128 ? r - 128 : r, hint);
}

mdi_status mdi_tensor_choose_arch(int *chosen, mdi_err *err)
{
    const char *v = getenv("BLIS_ARCH_TYPE");
    if (chosen)
        *chosen = 0;
    if (v)
        return check_arch_env(v, err);
    /* BLIS 0.9 knows Zen 1-3 by model number only; Zen 4/5 fall back to
     * generic kernels that are ~5x slower. Zen 3 kernels (AVX2/FMA) run on all. */
    if (amd_family() >= 0x19 && cpu_has_avx2_fma()) {
        char id[16];
        snprintf(id, sizeof id, "%d", (int)BLIS_ARCH_ZEN3);
        setenv("BLIS_ARCH_TYPE", id, 0);
        if (chosen)
            *chosen = 1;
    }
    return MDI_OK;
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

/* One panel of one block of W (d, n), laid out with panels of P and groups
 * of G: its nr rows from row jb, its pw columns from column p0, copied
 * between the layout and a row-major copy of them whose rows lie ld floats
 * apart (row a's first float at rm[a * ld]): into the layout (dst = w, src =
 * rm) if to_layout, else out of it (dst = rm, src = w). */
static void copy_panel(float *dst, const float *src, int to_layout, size_t ld, size_t jb, size_t nr,
                       size_t p0, size_t pw, size_t n, size_t d, size_t P, size_t G)
{
    size_t pw16 = pw - pw % 16;
    for (size_t a = 0; a < nr; a++) {
        /* Row a's 16-column blocks lie gr * 16 floats apart in the layout. */
        size_t gr = min_z(nr - a / G * G, G), lay = wpos(jb + a, p0, n, d, P, G);
        size_t row = a * ld, d_at = to_layout ? lay : row, s_at = to_layout ? row : lay;
        size_t d_step = to_layout ? gr : 1, s_step = to_layout ? 1 : gr;
        for (size_t c = 0; c < pw16; c += 16)
            memcpy(dst + d_at + c * d_step, src + s_at + c * s_step, 16 * sizeof *dst);
        if (pw16 < pw) { /* the rows' tails follow the group's blocks, row after row */
            size_t tail = wpos(jb + a, p0 + pw16, n, d, P, G);
            memcpy(dst + (to_layout ? tail : row + pw16), src + (to_layout ? row + pw16 : tail),
                   (pw - pw16) * sizeof *dst);
        }
    }
}

size_t mdi_matmul_scratch(size_t n, size_t panel)
{
    return panel == 0 ? 0 : (size_t)MDI_PANEL_ROWS * panel_width(panel, n);
}

void mdi_matmul(float *y, const float *x, const float *w, size_t rows, size_t n, size_t d,
                float beta, size_t panel, float *scratch)
{
    float alpha = 1.0f, one = 1.0f;
    size_t P = panel_width(panel, n), G = panel_group(panel);
    /* C (rows, d) = A (rows, n) * B (n, d) where B = W^T: B(k, j) = w[j * n + k];
     * packed, one product per block and panel, its rows copied out of their
     * groups into scratch (pw, nr) first, the later panels adding to y. */
    if (panel == 0) {
        bli_sgemm(BLIS_NO_TRANSPOSE, BLIS_NO_TRANSPOSE, (dim_t)rows, (dim_t)d, (dim_t)n, &alpha,
                  (float *)x, (inc_t)n, 1, (float *)w, 1, (inc_t)n, &beta, y, (inc_t)d, 1);
        return;
    }
    for (size_t jb = 0; jb < d; jb += MDI_PANEL_ROWS) {
        size_t nr = min_z(d - jb, MDI_PANEL_ROWS);
        for (size_t p0 = 0; p0 < n; p0 += P) {
            size_t pw = min_z(n - p0, P);
            copy_panel(scratch, w, 0, pw, jb, nr, p0, pw, n, d, P, G);
            bli_sgemm(BLIS_NO_TRANSPOSE, BLIS_NO_TRANSPOSE, (dim_t)rows, (dim_t)nr, (dim_t)pw,
                      &alpha, (float *)x + p0, (inc_t)n, 1, scratch, 1, (inc_t)pw,
                      p0 == 0 ? &beta : &one, y + jb, (inc_t)d, 1);
        }
    }
}

void mdi_weight_to_panels(float *w, size_t d, size_t n, size_t panel, float *scratch)
{
    if (panel == 0)
        return;
    size_t P = panel_width(panel, n), G = panel_group(panel);
    for (size_t jb = 0; jb < d; jb += MDI_PANEL_ROWS) {
        size_t nr = min_z(d - jb, MDI_PANEL_ROWS);
        memcpy(scratch, w + jb * n, nr * n * sizeof *w);
        for (size_t p0 = 0; p0 < n; p0 += P)
            copy_panel(w, scratch + p0, 1, n, jb, nr, p0, min_z(n - p0, P), n, d, P, G);
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

#if defined(__AVX2__)
/* mdi_dot's first level of its tree on 8 lane sums: (0+4, 1+5, 2+6, 3+7). */
static inline __m128 dot_fold(__m256 v)
{
    return _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
}

/* out[r] = mdi_dot(q, k + r * stride, n) * scale for r < 8: the 8 lane sums
 * of each key in one register, its products and sums rounded one by one as
 * mdi_dot's are (a product, then a sum: no fma), the tree's last two levels
 * as horizontal adds, which pair the same lanes; eight keys make eight
 * independent chains. */
static inline void dot_8keys(float *out, const float *q, const float *k, size_t stride, size_t n,
                             float scale)
{
    size_t n8 = n / 8 * 8;
    __m256 acc[8];
    for (int r = 0; r < 8; r++)
        acc[r] = _mm256_setzero_ps();
    for (size_t i = 0; i < n8; i += 8) {
        __m256 qv = _mm256_loadu_ps(q + i);
        for (int r = 0; r < 8; r++)
            acc[r] = _mm256_add_ps(acc[r],
                                   _mm256_mul_ps(qv, _mm256_loadu_ps(k + (size_t)r * stride + i)));
    }
    float s[8];
    __m128 h01 = _mm_hadd_ps(dot_fold(acc[0]), dot_fold(acc[1]));
    __m128 h23 = _mm_hadd_ps(dot_fold(acc[2]), dot_fold(acc[3]));
    __m128 h45 = _mm_hadd_ps(dot_fold(acc[4]), dot_fold(acc[5]));
    __m128 h67 = _mm_hadd_ps(dot_fold(acc[6]), dot_fold(acc[7]));
    _mm_storeu_ps(s, _mm_hadd_ps(h01, h23));
    _mm_storeu_ps(s + 4, _mm_hadd_ps(h45, h67));
    for (size_t r = 0; r < 8; r++) {
        const float *kr = k + r * stride;
        for (size_t i = n8; i < n; i++)
            s[r] += q[i] * kr[i];
        out[r] = s[r] * scale;
    }
}
#endif

/* Keys eight at a time, each block of eight met by every query while it is
 * in L1 (the query heads of one KV head share its keys). */
void mdi_dot_rows(float *out, size_t out_stride, const float *q, size_t nq, const float *k,
                  size_t stride, size_t count, size_t n, float scale)
{
    size_t t = 0;
#if defined(__AVX2__)
    for (; t + 8 <= count; t += 8)
        for (size_t a = 0; a < nq; a++)
            dot_8keys(out + a * out_stride + t, q + a * n, k + t * stride, stride, n, scale);
#endif
    for (; t < count; t++)
        for (size_t a = 0; a < nq; a++)
            out[a * out_stride + t] = mdi_dot(q + a * n, k + t * stride, n) * scale;
}

enum { WEIGHTED_KEYS = 16 }; /* value rows per block, met by every query */

/* Columns in blocks of 64 (eight registers of sums) and then of 8; values
 * in blocks of WEIGHTED_KEYS rows, each met by every query while it is in
 * L1, a query's sums carried from block to block through out. Each product
 * and sum rounded as mdi_axpy's are. */
void mdi_weighted_rows(float *out, const float *s, size_t s_stride, size_t nq, const float *v,
                       size_t stride, size_t count, size_t n)
{
    size_t i0 = 0;
#if defined(__AVX2__)
    for (; i0 + 64 <= n; i0 += 64)
        for (size_t t0 = 0; t0 == 0 || t0 < count; t0 += WEIGHTED_KEYS) {
            size_t t1 = count - t0 < WEIGHTED_KEYS ? count : t0 + WEIGHTED_KEYS;
            for (size_t a = 0; a < nq; a++) {
                float *o = out + a * n + i0;
                const float *sa = s + a * s_stride;
                __m256 acc[8];
                for (int c = 0; c < 8; c++)
                    acc[c] = t0 == 0 ? _mm256_setzero_ps() : _mm256_loadu_ps(o + 8 * c);
                for (size_t t = t0; t < t1; t++) {
                    __m256 st = _mm256_set1_ps(sa[t]);
                    const float *vt = v + t * stride + i0;
                    for (int c = 0; c < 8; c++)
                        acc[c] =
                            _mm256_add_ps(acc[c], _mm256_mul_ps(st, _mm256_loadu_ps(vt + 8 * c)));
                }
                for (int c = 0; c < 8; c++)
                    _mm256_storeu_ps(o + 8 * c, acc[c]);
            }
        }
    for (; i0 + 8 <= n; i0 += 8)
        for (size_t a = 0; a < nq; a++) {
            const float *sa = s + a * s_stride;
            __m256 acc = _mm256_setzero_ps();
            for (size_t t = 0; t < count; t++)
                acc = _mm256_add_ps(acc, _mm256_mul_ps(_mm256_set1_ps(sa[t]),
                                                       _mm256_loadu_ps(v + t * stride + i0)));
            _mm256_storeu_ps(out + a * n + i0, acc);
        }
#endif
    for (size_t a = 0; a < nq; a++)
        for (size_t i = i0; i < n; i++) {
            float sum = 0.0f;
            for (size_t t = 0; t < count; t++)
                sum += s[a * s_stride + t] * v[t * stride + i];
            out[a * n + i] = sum;
        }
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
    if (bytes < MDI_HUGE_MIN)
        return aligned_alloc(64, bytes);
    /* Weights and large buffers are streamed: on 2 MiB pages the TLB covers
     * them and the hardware prefetchers are not stopped at every 4 KiB. */
    bytes = (bytes + MDI_HUGE_PAGE - 1) & ~(size_t)(MDI_HUGE_PAGE - 1);
    float *p = aligned_alloc(MDI_HUGE_PAGE, bytes);
#ifdef MADV_HUGEPAGE
    if (p)
        (void)madvise(p, bytes, MADV_HUGEPAGE); /* advice only: 4 KiB pages still work */
#endif
    return p;
}

void mdi_free_floats(float *p)
{
    free(p);
}

/* Dense kernels over BLIS; the only file that includes blis.h. */
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
#include <time.h>
#include <unistd.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#define MDI_HUGE_PAGE ((size_t)2 << 20)
#define MDI_HUGE_MIN ((size_t)4 << 20)

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

/* Columns per panel for a matrix whose rows are n floats and whose layout
 * says `panel`: n itself for a row-major matrix. */
static size_t panel_width(size_t panel, size_t n)
{
    return panel == 0 || panel >= n ? n : panel;
}

void mdi_matmul(float *y, const float *x, const float *w, size_t rows, size_t n, size_t d,
                float beta, size_t panel)
{
    float alpha = 1.0f, one = 1.0f;
    size_t P = panel_width(panel, n);
    /* C (rows, d) = A (rows, n) * B (n, d) where B = W^T: B(k, j) = w[j * n + k];
     * paneled, one product per block and panel, the later panels adding to y. */
    for (size_t jb = 0; jb < d; jb += MDI_PANEL_ROWS) {
        size_t nr = P == n ? d : d - jb < MDI_PANEL_ROWS ? d - jb : MDI_PANEL_ROWS;
        for (size_t p0 = 0; p0 < n; p0 += P) {
            size_t pw = n - p0 < P ? n - p0 : P;
            bli_sgemm(BLIS_NO_TRANSPOSE, BLIS_NO_TRANSPOSE, (dim_t)rows, (dim_t)nr, (dim_t)pw,
                      &alpha, (float *)x + p0, (inc_t)n, 1, (float *)w + jb * n + nr * p0, 1,
                      (inc_t)pw, p0 == 0 ? &beta : &one, y + jb, (inc_t)d, 1);
        }
        if (P == n)
            break;
    }
}

size_t mdi_weight_panel(size_t n)
{
    /* 8 KiB panels or a little less (mdi-bench stream, 2048 x 5632 on Zen 5,
     * 1 thread: panels of 1024-2048 floats 27-30 GB/s, level with 8 KiB rows
     * and the read bandwidth, against 20-25 for the row-major 8-row blocks). */
    if (n * sizeof(float) < 16384)
        return 0;
    size_t np = (n * sizeof(float) + 8191) / 8192, P = (n + np - 1) / np;
    return (P + 15) / 16 * 16;
}

void mdi_weight_to_panels(float *w, size_t d, size_t n, size_t panel, float *scratch)
{
    size_t P = panel_width(panel, n);
    if (P == n)
        return;
    for (size_t jb = 0; jb < d; jb += MDI_PANEL_ROWS) {
        size_t nr = d - jb < MDI_PANEL_ROWS ? d - jb : MDI_PANEL_ROWS;
        float *blk = w + jb * n;
        memcpy(scratch, blk, nr * n * sizeof *w);
        for (size_t p0 = 0; p0 < n; p0 += P) {
            size_t pw = n - p0 < P ? n - p0 : P;
            for (size_t a = 0; a < nr; a++)
                memcpy(blk + nr * p0 + a * pw, scratch + a * n + p0, pw * sizeof *w);
        }
    }
}

/* ---- streaming product ---------------------------------------------------------
 * One output y[r, j] = W[j, :] . x[r, :] is always summed in the same order,
 * whatever the vector unit, the block it is computed in or the thread count:
 * 16 lanes, lane l accumulates fma(w[i], x[i], .) for i = l, l + 16, ... below
 * n16 = n - n % 16, in increasing i; the lanes are reduced as a fixed tree
 * (l += l + 8, then + 4, + 2, + 1); the tail i >= n16 follows with fma in order.
 * A 16-lane group is one AVX-512 register, two AVX2 registers, or 16 floats. */
#if defined(__AVX512F__)
typedef __m512 v16;
static inline v16 v16_zero(void)
{
    return _mm512_setzero_ps();
}
static inline v16 v16_load(const float *p)
{
    return _mm512_loadu_ps(p);
}
static inline v16 v16_fma(v16 a, v16 b, v16 c)
{
    return _mm512_fmadd_ps(a, b, c);
}
static inline float v16_sum(v16 v)
{
    __m256 hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1));
    __m256 h = _mm256_add_ps(_mm512_castps512_ps256(v), hi);
    __m128 q = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
    q = _mm_add_ps(q, _mm_movehl_ps(q, q));
    return _mm_cvtss_f32(_mm_add_ss(q, _mm_movehdup_ps(q)));
}
/* Keep v in a register: stops the compiler from folding its load into every
 * FMA that uses it (one load per use instead of one per block column). */
static inline void v16_pin(v16 *v)
{
    __asm__("" : "+v"(*v));
}
enum { V16_REGS = 1 };
#elif defined(__AVX2__) && defined(__FMA__)
typedef struct {
    __m256 lo, hi;
} v16;
static inline v16 v16_zero(void)
{
    return (v16){_mm256_setzero_ps(), _mm256_setzero_ps()};
}
static inline v16 v16_load(const float *p)
{
    return (v16){_mm256_loadu_ps(p), _mm256_loadu_ps(p + 8)};
}
static inline v16 v16_fma(v16 a, v16 b, v16 c)
{
    return (v16){_mm256_fmadd_ps(a.lo, b.lo, c.lo), _mm256_fmadd_ps(a.hi, b.hi, c.hi)};
}
static inline float v16_sum(v16 v)
{
    __m256 h = _mm256_add_ps(v.lo, v.hi);
    __m128 q = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
    q = _mm_add_ps(q, _mm_movehl_ps(q, q));
    return _mm_cvtss_f32(_mm_add_ss(q, _mm_movehdup_ps(q)));
}
static inline void v16_pin(v16 *v)
{
    __asm__("" : "+x"(v->lo), "+x"(v->hi));
}
enum { V16_REGS = 2 };
#else
typedef struct {
    float l[16];
} v16;
static inline v16 v16_zero(void)
{
    return (v16){{0}};
}
static inline v16 v16_load(const float *p)
{
    v16 v;
    memcpy(v.l, p, sizeof v.l);
    return v;
}
static inline v16 v16_fma(v16 a, v16 b, v16 c)
{
    for (int l = 0; l < 16; l++)
        c.l[l] = fmaf(a.l[l], b.l[l], c.l[l]);
    return c;
}
static inline float v16_sum(v16 v)
{
    for (int w = 8; w > 0; w /= 2)
        for (int l = 0; l < w; l++)
            v.l[l] += v.l[l + w];
    return v.l[0];
}
static inline void v16_pin(v16 *v)
{
    (void)v;
}
enum { V16_REGS = 16 };
#endif

enum {
    STREAM_MAX_RJ = 8,
    STREAM_MAX_RR = 4,
    STREAM_RANGE_ROWS = 24,      /* weight rows per cache-resident range: a multiple of every rj */
    STREAM_PREFETCH = 512,       /* floats ahead on each weight stream */
    STREAM_L2_RANGE = 256 << 10, /* bytes of a range that leave room for the next in L2 */
    STREAM_PAGE = 4096,          /* the one-row walker prefetches page by page */
    STREAM_PAGE_LINES = 4,       /* cache lines it prefetches at the start of the next page */
};

/* Offset in W (d, n), columns in panels of P (n: row-major), of W[j][i];
 * past W's end for j >= d (a prefetch target). */
static inline size_t wpos(size_t j, size_t i, size_t n, size_t d, size_t P)
{
    if (P >= n || j >= d)
        return j * n + i;
    size_t jb = j / MDI_PANEL_ROWS * MDI_PANEL_ROWS, p0 = i / P * P;
    size_t nr = d - jb < MDI_PANEL_ROWS ? d - jb : MDI_PANEL_ROWS, pw = n - p0 < P ? n - p0 : P;
    return jb * n + nr * p0 + (j - jb) * pw + (i - p0);
}

/* A register block: rj weight rows from row j of W (d, n) times rr
 * activation rows, every weight and activation vector loaded once per 16
 * columns. W's columns come in panels of P (n: row-major); a row's panels
 * are summed in column order, so the layout does not change the result.
 * Prefetches run 2 KiB ahead on each weight stream, or, with skip != 0,
 * cover the same place skip rows further on (the next range) instead.
 * x rows (rr, n); out[a * rr + b] = W[j + a] . x[b]. rj and rr are constants
 * at every call, so the loops unroll into registers. */
static inline __attribute__((always_inline)) void stream_block(float *out, const float *w, size_t j,
                                                               size_t d, size_t P, const float *x,
                                                               size_t n, int rj, int rr,
                                                               size_t skip)
{
    v16 acc[STREAM_MAX_RJ][STREAM_MAX_RR], xv[STREAM_MAX_RR];
    size_t cur[STREAM_MAX_RJ], pf[STREAM_MAX_RJ], pf_end[STREAM_MAX_RJ];
    for (int a = 0; a < rj; a++)
        for (int b = 0; b < rr; b++)
            acc[a][b] = v16_zero();
    size_t n16 = n - n % 16;
    for (size_t p0 = 0; p0 < n16; p0 += P) {
        size_t end = n - p0 < P ? n : p0 + P, pe = n16 < end ? n16 : end;
        size_t sw = end > STREAM_PREFETCH ? end - STREAM_PREFETCH : 0;
        /* W[j + a][i] for i in this panel is w[cur[a] + i]; the prefetch for
         * column i is at pf[a] + i, or pf_end[a] + i from sw on. 2 KiB ahead
         * on every weight stream, into L2 (the best of 0-8 KiB and every hint
         * tried); near the end of the panel, the same row's next panel, or
         * after the last, the same stream's row of the next block. */
        for (int a = 0; a < rj; a++) {
            size_t r = j + (size_t)a;
            cur[a] = wpos(r, p0, n, d, P) - p0;
            if (skip)
                pf[a] = pf_end[a] = wpos(r + skip, p0, n, d, P) - p0;
            else {
                pf[a] = cur[a] + STREAM_PREFETCH;
                pf_end[a] =
                    (p0 + P < n16 ? wpos(r, p0 + P, n, d, P) : wpos(r + (size_t)rj, 0, n, d, P)) +
                    STREAM_PREFETCH - end;
            }
        }
        for (size_t i = p0; i < pe; i += 16) {
            for (int b = 0; b < rr; b++) {
                xv[b] = v16_load(x + (size_t)b * n + i);
                v16_pin(&xv[b]);
            }
            for (int a = 0; a < rj; a++) {
                /* A prefetch never faults; the address is formed as an
                 * integer, since it may lie past W. */
                size_t k = (i < sw ? pf[a] : pf_end[a]) + i;
                __builtin_prefetch((const void *)((uintptr_t)w + k * sizeof *w), 0, 1);
                v16 wv = v16_load(w + cur[a] + i);
                v16_pin(&wv);
                for (int b = 0; b < rr; b++)
                    acc[a][b] = v16_fma(wv, xv[b], acc[a][b]);
            }
        }
    }
    for (int a = 0; a < rj; a++)
        for (int b = 0; b < rr; b++) {
            float v = v16_sum(acc[a][b]);
            const float *wr = w + wpos(j + (size_t)a, n16, n, d, P); /* the tail */
            for (size_t i = n16; i < n; i++)
                v = fmaf(wr[i - n16], x[(size_t)b * n + i], v);
            out[a * rr + b] = v;
        }
}

/* One activation row against rows [j0, j1) of W (d, n), row-major (P = n)
 * or paneled: block by block, panel by panel, so that x's part of the panel
 * stays in L1 while the block streams past in memory order; each row's 16
 * lane sums are carried from panel to panel, in the same order as
 * stream_block's. Every one-row product that meets one weight row at a time
 * comes here: a row costs its FMAs and little else. Going through
 * stream_block (its prefetch targets and write-back, per row), the decode
 * step's matrices (all but its down projection, which was paneled already)
 * made the whole step 6-28% slower per round (mdi-bench decode, 1 thread,
 * mean of 20 passes, five interleaved rounds: 19.3-25.0 GB/s against
 * 24.7-27.7). Its software prefetch asks, at each 4 KiB page of a row, for
 * the first four lines of the next page and leaves the rest to the
 * hardware's stream prefetchers. Against a prefetch of every line 2 KiB
 * ahead, as stream_block does, that read 2-5% faster on 1 thread (same-
 * seconds ratios to plain reads, three interleaved rounds: mdi-bench
 * decode-read 0.946-0.966 against 0.915-0.925, engine-read 0.948-0.972
 * against 0.912-0.938); on 2 threads 0.95 against 0.92 when memory was fast,
 * 1.03-1.06 against 1.02-1.06 when it was slow. No prefetch at all: 0.87. */
static void stream_panels(float *y, const float *x, const float *w, size_t n, size_t d, float beta,
                          size_t P, size_t j0, size_t j1)
{
    v16 acc[MDI_PANEL_ROWS];
    size_t n16 = n - n % 16;
    for (size_t b0 = j0 / MDI_PANEL_ROWS * MDI_PANEL_ROWS; b0 < j1; b0 += MDI_PANEL_ROWS) {
        size_t nr = d - b0 < MDI_PANEL_ROWS ? d - b0 : MDI_PANEL_ROWS;
        size_t s0 = j0 > b0 ? j0 - b0 : 0, s1 = j1 - b0 < nr ? j1 - b0 : nr;
        const float *wb = w + b0 * n;
        for (size_t r = s0; r < s1; r++)
            acc[r] = v16_zero();
        for (size_t p0 = 0; p0 < n16; p0 += P) {
            size_t pw = n - p0 < P ? n - p0 : P, len = (n16 - p0 < P ? n16 : p0 + P) - p0;
            const float *xp = x + p0;
            for (size_t r = s0; r < s1; r++) {
                const float *wr = wb + nr * p0 + r * pw;
                v16 sum = acc[r];
                for (size_t i = 0; i < len;) {
                    /* Up to this page's end; then the first lines of the
                     * next. A prefetch never faults; the address is formed
                     * as an integer, since it may lie past W. */
                    uintptr_t at = (uintptr_t)(wr + i), next = (at | (STREAM_PAGE - 1)) + 1;
                    size_t end = i + (next - at) / sizeof *wr;
                    end = end < len ? end : len;
                    for (unsigned l = 0; l < STREAM_PAGE_LINES; l++)
                        __builtin_prefetch((const void *)(next + 64u * l), 0, 1);
                    for (; i < end; i += 16)
                        sum = v16_fma(v16_load(wr + i), v16_load(xp + i), sum);
                }
                acc[r] = sum;
            }
        }
        for (size_t r = s0; r < s1; r++) {
            float v = v16_sum(acc[r]);
            const float *wr = w + wpos(b0 + r, n16, n, d, P); /* the tail */
            for (size_t i = n16; i < n; i++)
                v = fmaf(wr[i - n16], x[i], v);
            y[b0 + r] = beta == 0.0f ? v : beta * y[b0 + r] + v;
        }
    }
}

/* Weight rows per register block with rr activation rows of length n
 * (measured on Zen 5, weights streamed from memory): a single activation
 * row shorter than 16 KiB meets one weight row at a time, since extra
 * concurrent weight streams cost bandwidth (10-12 KiB rows: 22-27 GB/s with
 * eight against 26-30 with one); a row of 16 KiB or more, which no longer
 * stays in L1 beside the stream, meets eight (four with AVX2's 16
 * registers), so it is loaded an eighth as often. With 1 thread, 4096 x
 * 4096: 26.2-27.6 GB/s against 19.3-20.5 with one row (AVX2: 22.0-22.3
 * against 15.1-16.5); the down projection, 2048 x 5632: eight rows 20.5-25.7
 * against 18.1-23.2 for four. More activation rows: as many weight rows as
 * the registers hold, since the block is then compute-bound. */
static int stream_rj(int rr, size_t n)
{
    if (V16_REGS == 1) /* 32 registers: rj * rr accumulators + rr + 1 */
        return rr == 1 ? (n * sizeof(float) >= 16384 ? 8 : 1) : rr == 4 ? 6 : 8;
    if (V16_REGS == 2) /* 16 registers of 8 floats */
        return rr == 1 ? (n * sizeof(float) >= 16384 ? 4 : 1) : rr == 2 ? 2 : 1;
    return 1;
}

/* The block shapes stream_rj chooses, with constant sizes so that each is
 * compiled into registers; a range's last few weight rows go one at a time. */
static void stream_block_dispatch(float *out, const float *w, size_t j, size_t d, size_t P,
                                  const float *x, size_t n, int rj, int rr, size_t skip)
{
    switch (rr * 16 + rj) {
    case 1 * 16 + 1:
        stream_block(out, w, j, d, P, x, n, 1, 1, skip);
        break;
    case 1 * 16 + 4:
        stream_block(out, w, j, d, P, x, n, 4, 1, skip);
        break;
    case 1 * 16 + 8:
        stream_block(out, w, j, d, P, x, n, 8, 1, skip);
        break;
    case 2 * 16 + 1:
        stream_block(out, w, j, d, P, x, n, 1, 2, skip);
        break;
    case 3 * 16 + 1:
        stream_block(out, w, j, d, P, x, n, 1, 3, skip);
        break;
    case 4 * 16 + 1:
        stream_block(out, w, j, d, P, x, n, 1, 4, skip);
        break;
    case 2 * 16 + 2:
        stream_block(out, w, j, d, P, x, n, 2, 2, skip);
        break;
    case 2 * 16 + 8:
        stream_block(out, w, j, d, P, x, n, 8, 2, skip);
        break;
    case 3 * 16 + 8:
        stream_block(out, w, j, d, P, x, n, 8, 3, skip);
        break;
    case 4 * 16 + 6:
        stream_block(out, w, j, d, P, x, n, 6, 4, skip);
        break;
    default: /* unreachable: stream_rj returns only the shapes above */
        for (int a = 0; a < rj; a++)
            for (int b = 0; b < rr; b++)
                stream_block(out + a * rr + b, w, j + (size_t)a, d, P, x + (size_t)b * n, n, 1, 1,
                             skip);
    }
}

/* Rows [j0, j1) of W against every row of x, in register blocks; W's
 * columns come in panels of P (n: row-major). */
static void stream_range(float *y, const float *x, const float *w, size_t rows, size_t n, size_t d,
                         float beta, size_t P, size_t j0, size_t j1)
{
    float out[STREAM_MAX_RJ * STREAM_MAX_RR];
    /* One weight row at a time for one activation row: the panel walker. */
    if (rows == 1 && (P < n || stream_rj(1, n) == 1)) {
        stream_panels(y, x, w, n, d, beta, P, j0, j1);
        return;
    }
    size_t range_bytes = (size_t)STREAM_RANGE_ROWS * n * sizeof *w;
    /* A range of STREAM_RANGE_ROWS weight rows is read from memory by the
     * first group of up to STREAM_MAX_RR rows of x and from cache by the
     * others. When there are several groups, the later ones prefetch the next
     * range (skip), so it arrives while this one is computed; the first group
     * does too if two ranges fit in L2 together (mdi-bench stream, 6-16 rows:
     * 10-30% faster than running ahead within the range). The later groups
     * do it whatever the range's size: on the down projection (528 KiB
     * ranges) that still measured faster at 8 rows (59-60 against 52-54
     * GFLOP/s) and within the noise at 16. A paneled W's ranges also end at
     * its blocks' ends. */
    for (size_t jb = j0, je; jb < j1; jb = je) {
        je = j1 - jb < STREAM_RANGE_ROWS ? j1 : jb + STREAM_RANGE_ROWS;
        if (P < n) { /* the range ends with its weight block */
            size_t b1 = jb / MDI_PANEL_ROWS * MDI_PANEL_ROWS + MDI_PANEL_ROWS;
            je = je < b1 ? je : b1;
        }
        for (size_t r0 = 0; r0 < rows; r0 += STREAM_MAX_RR) {
            int rr = rows - r0 < STREAM_MAX_RR ? (int)(rows - r0) : STREAM_MAX_RR;
            size_t skip = r0 > 0 || (rows > STREAM_MAX_RR && range_bytes <= STREAM_L2_RANGE)
                              ? (size_t)STREAM_RANGE_ROWS
                              : 0;
            size_t j = jb;
            while (j < je) {
                int rj = je - j >= (size_t)stream_rj(rr, n) ? stream_rj(rr, n) : 1;
                stream_block_dispatch(out, w, j, d, P, x + r0 * n, n, rj, rr, skip);
                for (int b = 0; b < rr; b++) {
                    float *yr = y + (r0 + (size_t)b) * d + j;
                    for (int a = 0; a < rj; a++)
                        yr[a] = beta == 0.0f ? out[a * rr + b] : beta * yr[a] + out[a * rr + b];
                }
                j += (size_t)rj;
            }
        }
    }
}

size_t mdi_matmul_stream_max_rows(void)
{
    return V16_REGS == 1 ? 256 : V16_REGS == 2 ? 4 : 1;
}

void mdi_matmul_stream(float *y, const float *x, const float *w, size_t rows, size_t n, size_t d,
                       float beta, size_t panel, int n_threads)
{
    /* y (rows, d) = beta * y + x (rows, n) @ W^T, W (d, n) read from memory once:
     * each thread takes one contiguous range of W's rows, cut at multiples of 8. */
    if (rows == 0 || d == 0)
        return;
    size_t P = panel_width(panel, n);
    /* One thread opens no parallel region: libgomp allocates a team for
     * every region of one thread, even under if (0), and this runs on every
     * token (test/e2e_alloc.sh). */
    if (n_threads <= 1) {
        stream_range(y, x, w, rows, n, d, beta, P, 0, d);
        return;
    }
#pragma omp parallel num_threads(n_threads)
    {
        size_t t = 0, nt = 1;
#ifdef _OPENMP
        t = (size_t)omp_get_thread_num();
        nt = (size_t)omp_get_num_threads();
#endif
        size_t j0 = d * t / nt / 8 * 8, j1 = t + 1 == nt ? d : d * (t + 1) / nt / 8 * 8;
        if (j0 < j1)
            stream_range(y, x, w, rows, n, d, beta, P, j0, j1);
    }
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

double mdi_matmul_stream_rate(size_t bytes, double seconds, int n_threads)
{
    const size_t n = 4096; /* floats per weight row: 16 KiB */
    size_t d = bytes / (n * sizeof(float)) + 1;
    float *w = mdi_alloc_floats(d * n), *x = mdi_alloc_floats(n), *y = mdi_alloc_floats(d);
    double rate = 0.0;
    if (w && x && y) {
        for (size_t i = 0; i < d * n; i++)
            w[i] = (float)(i % 7) * 1e-3f;
        for (size_t i = 0; i < n; i++)
            x[i] = 1.0f;
        double t0 = now_s(), t = 0.0;
        size_t passes = 0;
        do {
            mdi_matmul_stream(y, x, w, 1, n, d, 0.0f, mdi_weight_panel(n), n_threads);
            passes++;
            t = now_s() - t0;
        } while (t < seconds || passes < 2);
        rate = (double)passes * (double)(d * n * sizeof(float)) / t;
    }
    mdi_free_floats(w);
    mdi_free_floats(x);
    mdi_free_floats(y);
    return rate;
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

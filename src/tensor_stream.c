/* The streaming product (mdi_matmul_stream): weights read from memory once
 * per call, in register blocks, every output summed in one documented order.
 * Part of the tensor module (tensor.c holds the BLIS side). */
#include "mdi/tensor.h"

#include <math.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#endif

#include "tensor_layout.h"

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

/* A register block: rj weight rows from row j of W (d, n) times rr
 * activation rows, every weight and activation vector loaded once per 16
 * columns. W's columns come in panels of P, its rows in groups of G (see
 * wpos). GS, a constant, says how the block's rows lie: 1, W is row-major
 * and each row is a stream; MDI_PANEL_GROUP, the block is whole groups and
 * each group is a stream, its rows' 16 floats side by side; 0, the rows lie
 * in one smaller group (the last of a block), each read as a stream of its
 * own. A row's panels are summed in column order, so the layout does not
 * change the result. Prefetches run 512 columns ahead on each stream, or,
 * with skip != 0, cover the same place skip rows further on (the next
 * range) instead. x rows (rr, n); out[a * rr + b] = W[j + a] . x[b]. rj, rr
 * and GS are constants at every call, so the loops unroll into registers. */
static inline __attribute__((always_inline)) void stream_block(float *out, const float *w, size_t j,
                                                               size_t d, size_t P, size_t G,
                                                               const float *x, size_t n, int rj,
                                                               int rr, int GS, size_t skip)
{
    v16 acc[STREAM_MAX_RJ][STREAM_MAX_RR], xv[STREAM_MAX_RR];
    size_t cur[STREAM_MAX_RJ], pf[STREAM_MAX_RJ], pf_end[STREAM_MAX_RJ];
    /* gs: the floats of a stream per column; stream s holds rows from
     * row j + s * rs, row a at offset off(a) within each 16 columns. */
    size_t gs = GS ? (size_t)GS : group_rows(j, d, G), rs = GS > 1 ? (size_t)GS : 1;
    int n_st = GS > 1 ? rj / GS : rj;
    for (int a = 0; a < rj; a++)
        for (int b = 0; b < rr; b++)
            acc[a][b] = v16_zero();
    size_t n16 = n - n % 16;
    for (size_t p0 = 0; p0 < n16; p0 += P) {
        size_t end = n - p0 < P ? n : p0 + P, pe = n16 < end ? n16 : end;
        size_t sw = end > STREAM_PREFETCH ? end - STREAM_PREFETCH : 0;
        /* Stream s's 16 floats at column i are w[cur[s] + i * gs]; the
         * prefetch for column i is at pf[s] + i * gs, or pf_end[s] + i * gs
         * from sw on. 512 columns ahead on every weight stream (on
         * row-major streams the best of 0-2048; on grouped ones, other
         * distances did no better in a build not kept, BENCHMARKS.md "Rows
         * in groups of four"); near the end of the panel, the same rows' next
         * panel, or after the last, the same stream's rows of the next block.
         * Locality 1 (prefetcht2 on x86), not 0 (prefetchnta): an Intel
         * Xeon (Emerald Rapids) keeps NTA lines in L1 only, so the later
         * passes over a range, meant to hit L2, went to memory: 8 rows
         * read 2.7 GB/s against 10.5, 128 prompt rows 0.19 against 1.28
         * (BENCHMARKS.md "An Intel Xeon host, and the prefetch
         * locality"). On Zen 5, NTA had measured faster only at 4
         * row-major rows (8 the same), which AVX-512 builds now send
         * through the panel walker; AVX2 builds still stream them here
         * (not measured again on Zen). */
        for (int s = 0; s < n_st; s++) {
            size_t r = j + (size_t)s * rs;
            cur[s] = wpos(r, p0, n, d, P, G) - p0 * gs;
            if (skip)
                pf[s] = pf_end[s] = wpos(r + skip, p0, n, d, P, G) - p0 * gs;
            else {
                pf[s] = cur[s] + STREAM_PREFETCH * gs;
                pf_end[s] = (p0 + P < n16 ? wpos(r, p0 + P, n, d, P, G)
                                          : wpos(r + (size_t)rj, 0, n, d, P, G)) -
                            sw * gs;
            }
        }
        for (size_t i = p0; i < pe; i += 16) {
            size_t ig = i * gs;
            for (int b = 0; b < rr; b++) {
                xv[b] = v16_load(x + (size_t)b * n + i);
                v16_pin(&xv[b]);
            }
            for (int a = 0; a < rj; a++) {
                int s = GS > 1 ? a / GS : a;
                size_t off = GS > 1 ? (size_t)(a % GS) * 16 : 0;
                /* A prefetch never faults; the address is formed as an
                 * integer, since it may lie past W. */
                size_t k = (i < sw ? pf[s] : pf_end[s]) + ig + off;
                __builtin_prefetch((const void *)((uintptr_t)w + k * sizeof *w), 0, 1);
                v16 wv = v16_load(w + cur[s] + ig + off);
                v16_pin(&wv);
                for (int b = 0; b < rr; b++)
                    acc[a][b] = v16_fma(wv, xv[b], acc[a][b]);
            }
        }
    }
    for (int a = 0; a < rj; a++)
        for (int b = 0; b < rr; b++) {
            float v = v16_sum(acc[a][b]);
            const float *wr = w + wpos(j + (size_t)a, n16, n, d, P, G); /* the tail */
            for (size_t i = n16; i < n; i++)
                v = fmaf(wr[i - n16], x[(size_t)b * n + i], v);
            out[a * rr + b] = v;
        }
}

/* The panel walker's inner loop: rr activation rows' panel parts (from xp,
 * xs floats apart) against a group of gr weight rows, whose len columns (a
 * multiple of 16) lie side by side from wg, 16 floats of each row in turn:
 * one stream, rr activation loads per gr weight loads, gr x rr independent
 * sums (acc[a * rr + b]: weight row a, activation row b). gr and rr are
 * constants at every call. Its software prefetch asks, at each 4 KiB page,
 * for the first four lines of the next page and, for one activation row,
 * leaves the rest to the hardware's stream prefetchers. Two to four rows
 * spend longer on each line, and with the hardware's prefetchers alone their
 * time came to about the memory time plus the compute time, not the larger
 * of the two; they also prefetch each line WALK_AHEAD bytes ahead into L2
 * (4 KiB, locality 1: on an Intel Xeon, 1 thread, medians of 2 rows 7-8% and
 * 4 rows 18-21% faster; BENCHMARKS.md "Several rows through the panel walker,
 * prefetched") and WALK_NEAR bytes ahead into L1 (2 KiB, locality 3: 1
 * thread, medians of 2-4 rows another 4-5%; BENCHMARKS.md "Two prefetch
 * distances"). Up to WALK_MAX_RR activation rows: 4 x 4 sums, 4 activation
 * vectors and a weight vector fit AVX-512's 32 registers; AVX2's 16 hold
 * one row's. */
enum { WALK_MAX_RR = V16_REGS == 1 ? 4 : 1, WALK_RR_CAP = 4, WALK_AHEAD = 4096, WALK_NEAR = 2048 };
static inline __attribute__((always_inline)) void
walk_group(v16 *acc, const float *wg, const float *xp, size_t xs, size_t len, int gr, int rr)
{
    v16 s[MDI_PANEL_GROUP][WALK_RR_CAP], xv[WALK_RR_CAP];
    size_t step = (size_t)gr * 16;
    for (int a = 0; a < gr; a++)
        for (int b = 0; b < rr; b++)
            s[a][b] = acc[a * rr + b];
    for (size_t c = 0; c < len;) {
        /* The blocks that start on this page; then the first lines of the
         * next. A prefetch never faults; the address is formed as an
         * integer, since it may lie past W. */
        uintptr_t at = (uintptr_t)(wg + c * (size_t)gr), next = (at | (STREAM_PAGE - 1)) + 1;
        size_t end = c + ((next - at) / sizeof *wg + step - 1) / step * 16;
        end = end < len ? end : len;
        for (unsigned l = 0; l < STREAM_PAGE_LINES; l++)
            __builtin_prefetch((const void *)(next + 64u * l), 0, 1);
        for (; c < end; c += 16) {
            for (int b = 0; b < rr; b++) {
                xv[b] = v16_load(xp + (size_t)b * xs + c);
                v16_pin(&xv[b]);
            }
            for (int a = 0; a < gr; a++) {
                if (rr == 1) { /* the one-row loop as measured: the load folded into the FMA */
                    s[a][0] =
                        v16_fma(v16_load(wg + c * (size_t)gr + (size_t)a * 16), xv[0], s[a][0]);
                    continue;
                }
                const float *wa = wg + c * (size_t)gr + (size_t)a * 16;
                __builtin_prefetch((const void *)((uintptr_t)wa + WALK_AHEAD), 0, 1);
                __builtin_prefetch((const void *)((uintptr_t)wa + WALK_NEAR), 0, 3);
                v16 wv = v16_load(wa);
                v16_pin(&wv);
                for (int b = 0; b < rr; b++)
                    s[a][b] = v16_fma(wv, xv[b], s[a][b]);
            }
        }
    }
    for (int a = 0; a < gr; a++)
        for (int b = 0; b < rr; b++)
            acc[a * rr + b] = s[a][b];
}

/* rr activation rows (rows of x, n floats apart; y's d apart) against rows
 * [j0, j1) of W (d, n) (j0 and j1 at group boundaries or d), columns in
 * panels of P, rows in groups of G: block by block, panel by panel, group
 * by group, so that x's part of the panel stays in L1 while the block
 * streams past in memory order; each output's 16 lane sums are carried from
 * panel to panel, in the same order as stream_block's. Every one-row
 * product that meets a packed W, or one weight row at a time, comes here: a
 * row costs its FMAs and little else; so do 2 to WALK_MAX_RR rows against
 * a packed W (BENCHMARKS.md "Several rows through the panel walker").
 * Going through stream_block (its prefetch targets and write-back, per
 * row), the decode step's matrices (all but its down projection, which was
 * paneled already) made the whole step 6-28% slower per round (mdi-bench
 * decode, 1 thread, mean of 20 passes, five interleaved rounds: 19.3-25.0
 * GB/s against 24.7-27.7). A prefetch at each page against a prefetch of
 * every line 2 KiB ahead, as stream_block does, read 2-5% faster on 1
 * thread (same-seconds ratios to plain reads, three interleaved rounds:
 * mdi-bench decode-read 0.946-0.966 against 0.915-0.925, engine-read
 * 0.948-0.972 against 0.912-0.938); on 2 threads 0.95 against 0.92 when
 * memory was fast, 1.03-1.06 against 1.02-1.06 when it was slow. No
 * prefetch at all: 0.87. */
static inline __attribute__((always_inline)) void walk_panels(float *y, const float *x,
                                                              const float *w, size_t n, size_t d,
                                                              float beta, size_t P, size_t G,
                                                              size_t j0, size_t j1, int rr)
{
    v16 acc[MDI_PANEL_ROWS * WALK_RR_CAP];
    size_t n16 = n - n % 16;
    for (size_t b0 = j0 / MDI_PANEL_ROWS * MDI_PANEL_ROWS; b0 < j1; b0 += MDI_PANEL_ROWS) {
        size_t nr = min_z(d - b0, MDI_PANEL_ROWS);
        size_t s0 = j0 > b0 ? j0 - b0 : 0, s1 = min_z(j1 - b0, nr);
        const float *wb = w + b0 * n;
        for (size_t r = s0 * rr; r < s1 * rr; r++)
            acc[r] = v16_zero();
        for (size_t p0 = 0; p0 < n16; p0 += P) {
            size_t pw = min_z(n - p0, P), len = min_z(n16 - p0, P);
            for (size_t g = s0; g < s1; g += G) {
                const float *wg = wb + nr * p0 + g * pw;
                switch (min_z(nr - g, G)) {
                case 1:
                    walk_group(acc + g * rr, wg, x + p0, n, len, 1, rr);
                    break;
                case 2:
                    walk_group(acc + g * rr, wg, x + p0, n, len, 2, rr);
                    break;
                case 3:
                    walk_group(acc + g * rr, wg, x + p0, n, len, 3, rr);
                    break;
                default:
                    walk_group(acc + g * rr, wg, x + p0, n, len, MDI_PANEL_GROUP, rr);
                }
            }
        }
        for (size_t r = s0; r < s1; r++)
            for (int b = 0; b < rr; b++) {
                float v = v16_sum(acc[r * rr + b]);
                const float *wr = w + wpos(b0 + r, n16, n, d, P, G); /* the tail */
                const float *xb = x + (size_t)b * n;
                float *yb = y + (size_t)b * d;
                for (size_t i = n16; i < n; i++)
                    v = fmaf(wr[i - n16], xb[i], v);
                yb[b0 + r] = beta == 0.0f ? v : beta * yb[b0 + r] + v;
            }
    }
}

#define WALK_FN(RR)                                                                         \
    static __attribute__((noinline)) void walk_panels_##RR(                                 \
        float *y, const float *x, const float *w, size_t n, size_t d, float beta, size_t P, \
        size_t G, size_t j0, size_t j1)                                                     \
    {                                                                                       \
        walk_panels(y, x, w, n, d, beta, P, G, j0, j1, RR);                                 \
    }
WALK_FN(2)
WALK_FN(3)
WALK_FN(4)
#undef WALK_FN

/* walk_panels for any rows up to WALK_MAX_RR: one row inlined, as it was
 * measured; more in functions of their own, like stream_block's shapes. */
static void stream_panels(float *y, const float *x, const float *w, size_t rows, size_t n, size_t d,
                          float beta, size_t P, size_t G, size_t j0, size_t j1)
{
    switch (rows) {
    case 2:
        walk_panels_2(y, x, w, n, d, beta, P, G, j0, j1);
        break;
    case 3:
        walk_panels_3(y, x, w, n, d, beta, P, G, j0, j1);
        break;
    case 4:
        walk_panels_4(y, x, w, n, d, beta, P, G, j0, j1);
        break;
    default:
        walk_panels(y, x, w, n, d, beta, P, G, j0, j1, 1);
    }
}

/* Weight rows per register block with rr activation rows of length n and
 * W's rows in groups of G (measured on Zen 5, weights streamed from
 * memory): a single activation row shorter than 16 KiB meets one weight
 * row at a time in a row-major W, since extra concurrent weight streams
 * cost bandwidth (10-12 KiB rows: 22-27 GB/s with eight against 26-30 with
 * one), and a group, one stream, in a packed W; a row of 16 KiB or more,
 * which no longer stays in L1 beside the stream, meets eight (four with
 * AVX2's 16 registers), so it is loaded an eighth as often. With 1 thread,
 * 4096 x 4096: 26.2-27.6 GB/s against 19.3-20.5 with one row (AVX2:
 * 22.0-22.3 against 15.1-16.5); the down projection, 2048 x 5632: eight
 * rows 20.5-25.7 against 18.1-23.2 for four. More activation rows: as many
 * weight rows as the registers hold, since the block is then
 * compute-bound; whole groups where they fit. */
static int stream_rj(int rr, size_t n, size_t G)
{
    int one = n * sizeof(float) >= 16384 ? 8 : G > 1 ? (int)G : 1;
    if (V16_REGS == 1) /* 32 registers: rj * rr accumulators + rr + 1 */
        return rr == 1 ? one : rr == 4 ? (G > 1 ? 4 : 6) : 8;
    if (V16_REGS == 2) /* 16 registers of 8 floats */
        return rr == 1 ? (one > 4 ? 4 : one) : rr == 2 ? 2 : 1;
    return 1;
}

/* The rows of the register block at row j of a range that ends at je:
 * `want` if that many fit, in whole groups of a packed W; otherwise, in a
 * packed W, whole groups of MDI_PANEL_GROUP or what is left of j's group;
 * in a row-major one (G == 1), a single row. */
static int block_rows(int want, size_t j, size_t je, size_t d, size_t G)
{
    enum { g = MDI_PANEL_GROUP };
    if (G == 1)
        return je - j >= (size_t)want ? want : 1;
    size_t b0 = j / MDI_PANEL_ROWS * MDI_PANEL_ROWS, nr = min_z(d - b0, MDI_PANEL_ROWS);
    size_t full = min_z(je, b0 + nr / g * g); /* whole groups end here */
    for (int r = want / g * g; r >= g; r -= g)
        if (j + (size_t)r <= full)
            return r;
    size_t g_end = min_z(min_z(b0 + (j - b0) / g * g + g, b0 + nr), je);
    return (int)min_z((size_t)want, g_end - j);
}

/* The block shapes block_rows gives, each compiled into registers in a
 * function of its own: row-major rows (rows, GS 1), whole groups (group, GS
 * MDI_PANEL_GROUP) or rows of one smaller group (part, GS 0); RJ weight rows
 * x RR activation rows. All inlined into one switch, the compiler kept
 * the streams' offsets and an activation vector on the stack; each on its
 * own, and with stream_block's prefetch at locality 0, 4 activation rows
 * read 14-48% faster, 8 rows the same (BENCHMARKS.md "Each block shape on
 * its own"). */
enum { SHAPE_rows = 1, SHAPE_group = MDI_PANEL_GROUP, SHAPE_part = 0 };
/* clang-format off */
#define STREAM_SHAPES(X) \
    X(rows, 1, 1) X(rows, 4, 1) X(rows, 8, 1) X(rows, 1, 2) X(rows, 2, 2) X(rows, 8, 2) \
    X(rows, 1, 3) X(rows, 8, 3) X(rows, 1, 4) X(rows, 6, 4) \
    X(group, 4, 1) X(group, 8, 1) X(group, 4, 2) X(group, 8, 2) X(group, 4, 3) X(group, 8, 3) \
    X(group, 4, 4) \
    X(part, 1, 1) X(part, 2, 1) X(part, 3, 1) X(part, 1, 2) X(part, 2, 2) X(part, 3, 2) \
    X(part, 1, 3) X(part, 2, 3) X(part, 3, 3) X(part, 1, 4) X(part, 2, 4) X(part, 3, 4)
/* clang-format on */
#define SHAPE_FN(L, RJ, RR)                                                                 \
    static __attribute__((noinline)) void stream_##L##_##RJ##x##RR(                         \
        float *out, const float *w, size_t j, size_t d, size_t P, size_t G, const float *x, \
        size_t n, size_t skip)                                                              \
    {                                                                                       \
        stream_block(out, w, j, d, P, G, x, n, RJ, RR, SHAPE_##L, skip);                    \
    }
STREAM_SHAPES(SHAPE_FN)
#undef SHAPE_FN

static void stream_block_dispatch(float *out, const float *w, size_t j, size_t d, size_t P,
                                  size_t G, const float *x, size_t n, int rj, int rr, size_t skip)
{
    int gs = G == 1 ? 1 : rj % MDI_PANEL_GROUP == 0 ? MDI_PANEL_GROUP : 0;
#define SHAPE_CASE(L, RJ, RR)                                     \
    case SHAPE_##L * 256 + (RR)*16 + (RJ):                        \
        stream_##L##_##RJ##x##RR(out, w, j, d, P, G, x, n, skip); \
        break;
    switch (gs * 256 + rr * 16 + rj) {
        STREAM_SHAPES(SHAPE_CASE)
    default: /* unreachable: block_rows gives only the shapes above */
        for (int a = 0; a < rj; a++)
            for (int b = 0; b < rr; b++)
                (G == 1 ? stream_rows_1x1 : stream_part_1x1)(out + a * rr + b, w, j + (size_t)a, d,
                                                             P, G, x + (size_t)b * n, n, skip);
    }
#undef SHAPE_CASE
}

/* Rows [j0, j1) of W against every row of x, in register blocks; W's
 * columns come in panels of P, its rows in groups of G. */
static void stream_range(float *y, const float *x, const float *w, size_t rows, size_t n, size_t d,
                         float beta, size_t P, size_t G, size_t j0, size_t j1)
{
    float out[STREAM_MAX_RJ * STREAM_MAX_RR];
    /* One activation row against a packed W, or one weight row at a time,
     * or up to WALK_MAX_RR rows against a packed W: the panel walker. */
    if ((rows == 1 && (G > 1 || stream_rj(1, n, G) == 1)) || (G > 1 && rows <= WALK_MAX_RR)) {
        stream_panels(y, x, w, rows, n, d, beta, P, G, j0, j1);
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
     * GFLOP/s) and within the noise at 16. A packed W's ranges also end at
     * its blocks' ends. */
    for (size_t jb = j0, je; jb < j1; jb = je) {
        je = j1 - jb < STREAM_RANGE_ROWS ? j1 : jb + STREAM_RANGE_ROWS;
        if (G > 1) { /* the range ends with its weight block */
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
                int rj = block_rows(stream_rj(rr, n, G), j, je, d, G);
                stream_block_dispatch(out, w, j, d, P, G, x + r0 * n, n, rj, rr, skip);
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

size_t mdi_weight_panel(size_t n, size_t rows)
{
    /* One row: 8 KiB panels or a little less (mdi-bench stream, 2048 x 5632
     * on Zen 5, 1 thread: panels of 1024-2048 floats 27-30 GB/s, level with
     * 8 KiB rows and the read bandwidth, against 20-25 for the row-major
     * 8-row blocks); rows shorter than 16 KiB stay whole. */
    size_t P = (n + 15) / 16 * 16;
    if (n * sizeof(float) >= 16384) {
        size_t np = (n * sizeof(float) + 8191) / 8192;
        P = ((n + np - 1) / np + 15) / 16 * 16;
    }
    if (rows <= 1)
        return P;
    /* 2 to WALK_MAX_RR rows go through the panel walker, whose activation
     * rows' panel parts stay in L1 when they hold at most 2048 floats
     * together (BENCHMARKS.md "Several rows through the panel walker"); more
     * rows read row-major weights faster (stream_block's 8-row blocks). */
    if (rows > WALK_MAX_RR)
        return 0;
    size_t cap = 2048 / rows / 16 * 16;
    return P < cap ? P : cap;
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
    size_t P = panel_width(panel, n), G = panel_group(panel);
    /* One thread opens no parallel region: libgomp allocates a team for
     * every region of one thread, even under if (0), and this runs on every
     * token (test/e2e_alloc.sh). */
    if (n_threads <= 1) {
        stream_range(y, x, w, rows, n, d, beta, P, G, 0, d);
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
            stream_range(y, x, w, rows, n, d, beta, P, G, j0, j1);
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
            mdi_matmul_stream(y, x, w, 1, n, d, 0.0f, mdi_weight_panel(n, 1), n_threads);
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

/* Tensor kernels against naive double-precision references: matmul (BLIS, one
 * and two threads), rmsnorm, softmax, swiglu, dot, axpy, RoPE, and the
 * argument checks of the init functions. */
#include "test_util.h"

#include <float.h>
#include <math.h>

#include "mdi/tensor.h"

/* splitmix64: deterministic test data without global state. */
static uint64_t rng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Uniform in [-scale, scale). */
static float rng_f(uint64_t *s, float scale)
{
    return ((float)(rng_next(s) >> 40) / 16777216.0f * 2.0f - 1.0f) * scale;
}

static void fill(float *v, size_t n, uint64_t seed, float scale)
{
    uint64_t s = seed;
    for (size_t i = 0; i < n; i++)
        v[i] = rng_f(&s, scale);
}

static float *xalloc(size_t n)
{
    float *p = calloc(n ? n : 1, sizeof(float));
    assert_non_null(p);
    return p;
}

static void set_threads(int n)
{
    mdi_tensor_info info;
    mdi_err err;
    mdi_err_clear(&err);
    if (mdi_tensor_init(n, &info, &err) != MDI_OK)
        fail_msg("mdi_tensor_init(%d): %s", n, err.msg);
    assert_int_equal(info.n_threads, n);
    assert_true(info.blis_arch[0] != '\0');
}

/* ---- matmul ---------------------------------------------------------------- */

/* y (rows, d) = beta * y0 + x @ W^T against a double reference. Each element
 * is a sum of n + 1 float products; recursive (or blocked) float summation
 * errs by at most about (n + 2) * FLT_EPSILON * sum |terms| whatever the
 * blocking, so that is the bound. A transposed W, a wrong leading dimension
 * or a dropped beta gives errors of the size of the terms themselves.
 * stream: 0 for mdi_matmul (BLIS), else mdi_matmul_stream on that many threads;
 * W laid out in panels of `panel` columns (0: row-major). */
static void check_matmul_panel(size_t rows, size_t n, size_t d, float beta, uint64_t seed,
                               int stream, size_t panel)
{
    float *x = xalloc(rows * n), *w = xalloc(d * n), *y0 = xalloc(rows * d);
    float *y = xalloc(rows * d + 1), *wp = xalloc(d * n), *scratch = xalloc(MDI_PANEL_ROWS * n);
    float *unpack = panel ? xalloc(mdi_matmul_scratch(n, panel)) : NULL;
    fill(x, rows * n, seed, 1.0f);
    fill(w, d * n, seed + 1, 1.0f);
    memcpy(wp, w, d * n * sizeof *w);
    mdi_weight_to_panels(wp, d, n, panel, scratch);
    fill(y0, rows * d, seed + 2, 1.0f);
    for (size_t i = 0; i < rows * d; i++)
        y[i] = beta == 0.0f ? NAN : y0[i]; /* beta = 0 must overwrite, not read */
    y[rows * d] = 12345.0f;                /* sentinel past the end */
    if (stream)
        mdi_matmul_stream(y, x, wp, rows, n, d, beta, panel, stream);
    else
        mdi_matmul(y, x, wp, rows, n, d, beta, panel, unpack);
    for (size_t r = 0; r < rows; r++)
        for (size_t j = 0; j < d; j++) {
            double ref = beta * (double)y0[r * d + j], mag = fabs(ref);
            for (size_t k = 0; k < n; k++) {
                double t = (double)x[r * n + k] * (double)w[j * n + k];
                ref += t;
                mag += fabs(t);
            }
            double got = y[r * d + j], tol = (double)(n + 2) * FLT_EPSILON * mag + 1e-30;
            if (!(fabs(got - ref) <= tol))
                fail_msg("matmul%s %zux%zux%zu panel %zu beta %g: y[%zu][%zu] = %.9g, want %.9g "
                         "(tol %.3g)",
                         stream ? "_stream" : "", rows, n, d, panel, (double)beta, r, j, got, ref,
                         tol);
        }
    assert_true(y[rows * d] == 12345.0f);
    free(x), free(w), free(y0), free(y), free(wp), free(scratch), free(unpack);
}

static void check_matmul(size_t rows, size_t n, size_t d, float beta, uint64_t seed, int stream)
{
    check_matmul_panel(rows, n, d, beta, seed, stream, 0);
}

static void matmul_shapes(int threads)
{
    set_threads(threads);
    /* rows n d: one row (the decode case), odd sizes, a block of rows, and
     * shapes large enough for BLIS to split work between threads. */
    const size_t shapes[][3] = {{1, 1, 1},   {1, 16, 8},   {7, 13, 5},     {1, 13, 5},   {5, 7, 13},
                                {3, 64, 33}, {64, 96, 80}, {17, 257, 129}, {1, 512, 300}};
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        check_matmul(shapes[i][0], shapes[i][1], shapes[i][2], 0.0f, 100 + i, 0);
        check_matmul(shapes[i][0], shapes[i][1], shapes[i][2], 1.0f, 200 + i, 0);
    }
    set_threads(1);
}

static void test_matmul_one_thread(void **state)
{
    (void)state;
    matmul_shapes(1);
}

static void test_matmul_two_threads(void **state)
{
    (void)state;
    matmul_shapes(2);
}

/* Rows computed one at a time equal the same rows computed as a block, up to
 * twice check_matmul's bound (terms are <= 1, so sum |terms| <= n): batching
 * must not change which weights a row meets. */
static void test_matmul_rows_independent(void **state)
{
    (void)state;
    const size_t rows = 9, n = 70, d = 31;
    float *x = xalloc(rows * n), *w = xalloc(d * n), *yb = xalloc(rows * d), *y1 = xalloc(d);
    fill(x, rows * n, 7, 1.0f);
    fill(w, d * n, 8, 1.0f);
    mdi_matmul(yb, x, w, rows, n, d, 0.0f, 0, NULL);
    for (size_t r = 0; r < rows; r++) {
        mdi_matmul(y1, x + r * n, w, 1, n, d, 0.0f, 0, NULL);
        for (size_t j = 0; j < d; j++)
            assert_true(fabs((double)y1[j] - yb[r * d + j]) <= 2.0 * (n + 2) * FLT_EPSILON * n);
    }
    free(x), free(w), free(yb), free(y1);
}

/* The streaming product: the same bound as BLIS's (it holds for any order of
 * summation), on sizes around its 32-wide blocks and with 1 to 3 threads. */
static void test_matmul_stream(void **state)
{
    (void)state;
    const size_t shapes[][3] = {{1, 1, 1},  {1, 31, 5},  {1, 32, 8},    {2, 33, 7},
                                {7, 13, 5}, {4, 64, 33}, {3, 257, 129}, {1, 512, 300}};
    for (int t = 1; t <= 3; t++)
        for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
            check_matmul(shapes[i][0], shapes[i][1], shapes[i][2], 0.0f, 300 + i, t);
            check_matmul(shapes[i][0], shapes[i][1], shapes[i][2], 1.0f, 400 + i, t);
        }
}

/* As documented, a streamed row's result does not depend on the other rows
 * of the call or on the thread count: bit for bit. rows = 0 writes nothing. */
static void test_matmul_stream_rows_independent(void **state)
{
    (void)state;
    const size_t rows = 5, n = 70, d = 37;
    float *x = xalloc(rows * n), *w = xalloc(d * n), *yb = xalloc(rows * d), *y1 = xalloc(d);
    fill(x, rows * n, 17, 1.0f);
    fill(w, d * n, 18, 1.0f);
    mdi_matmul_stream(yb, x, w, rows, n, d, 0.0f, 0, 1);
    for (int t = 1; t <= 3; t++)
        for (size_t r = 0; r < rows; r++) {
            mdi_matmul_stream(y1, x + r * n, w, 1, n, d, 0.0f, 0, t);
            assert_memory_equal(y1, yb + r * d, d * sizeof(float));
        }
    float *y3 = xalloc(rows * d);
    mdi_matmul_stream(y3, x, w, rows, n, d, 0.0f, 0, 3);
    assert_memory_equal(y3, yb, rows * d * sizeof(float));
    y1[0] = 42.0f;
    mdi_matmul_stream(y1, x, w, 0, n, d, 0.0f, 0, 2);
    assert_true(y1[0] == 42.0f);
    free(x), free(w), free(yb), free(y1), free(y3);
}

/* The streaming product's documented order, written out plainly: 16 lanes of
 * fused multiply-adds, a fixed reduction tree, then the tail. */
static float stream_order_ref(const float *w, const float *x, size_t n)
{
    float lane[16] = {0};
    size_t n16 = n - n % 16;
    for (size_t i = 0; i < n16; i++)
        lane[i % 16] = fmaf(w[i], x[i], lane[i % 16]);
    for (size_t width = 8; width > 0; width /= 2)
        for (size_t l = 0; l < width; l++)
            lane[l] += lane[l + width];
    float v = lane[0];
    for (size_t i = n16; i < n; i++)
        v = fmaf(w[i], x[i], v);
    return v;
}

/* Every element of the streaming product is exactly the documented order,
 * bit for bit, whatever the vector unit, the register block it falls in
 * (row counts 1..9 cover every block shape and remainder; lengths from
 * 4096 (16 KiB) the long-row blocks, 4095 the last short one; weight-row
 * counts around multiples of 8 and 24 every range cut, and past 96 the
 * one-row walker's block ends) and the thread count. */
static void test_matmul_stream_order(void **state)
{
    (void)state;
    const size_t ns[] = {1, 15, 16, 17, 70, 172, 257, 4095, 4096, 4100};
    const size_t ds[] = {1, 7, 8, 9, 23, 24, 25, 50, 97, 200};
    for (size_t in = 0; in < sizeof ns / sizeof ns[0]; in++)
        for (size_t id = 0; id < sizeof ds / sizeof ds[0]; id++)
            for (size_t rows = 1; rows <= 9; rows++) {
                size_t n = ns[in], d = ds[id];
                float *x = xalloc(rows * n), *w = xalloc(d * n), *y = xalloc(rows * d);
                fill(x, rows * n, 500 + in * 97 + rows, 1.0f);
                fill(w, d * n, 600 + id * 89 + in, 1.0f);
                for (int t = 1; t <= 3; t++) {
                    mdi_matmul_stream(y, x, w, rows, n, d, 0.0f, 0, t);
                    for (size_t r = 0; r < rows; r++)
                        for (size_t j = 0; j < d; j++) {
                            float want = stream_order_ref(w + j * n, x + r * n, n);
                            if (memcmp(&want, &y[r * d + j], sizeof want))
                                fail_msg("stream %zux%zux%zu, %d threads: y[%zu][%zu] = %.9g, "
                                         "the documented order gives %.9g",
                                         rows, n, d, t, r, j, (double)y[r * d + j], (double)want);
                        }
                }
                free(x), free(w), free(y);
            }
}

/* mdi_weight_to_panels puts W[j][i] where tensor.h says, read front to back:
 * blocks of MDI_PANEL_ROWS rows, each in panels of P columns, each in groups
 * of MDI_PANEL_GROUP rows (fewer at a block's end) whose full 16-column
 * blocks lie side by side, one row's 16 floats after another's, then the
 * group's rows' last pw % 16 floats, row after row. Panel 0 changes nothing. */
static void test_weight_layout(void **state)
{
    (void)state;
    const size_t cases[][3] = {/* d, n, panel */
                               {102, 70, 48},   {9, 40, 16},   {200, 37, 64},
                               {5, 4100, 2048}, {3, 20, 2048}, {98, 33, 0}};
    for (size_t t = 0; t < sizeof cases / sizeof cases[0]; t++) {
        size_t d = cases[t][0], n = cases[t][1], panel = cases[t][2], at = 0;
        size_t P = panel == 0 || panel > n ? n : panel;
        float *w = xalloc(d * n), *scratch = xalloc(MDI_PANEL_ROWS * n);
        for (size_t k = 0; k < d * n; k++)
            w[k] = (float)k; /* W[j][i] = j * n + i, exact below 2^24 */
        mdi_weight_to_panels(w, d, n, panel, scratch);
        if (panel == 0) {
            for (size_t k = 0; k < d * n; k++)
                assert_true(w[k] == (float)k);
            free(w), free(scratch);
            continue;
        }
#define EXPECT(j, i)                                                                               \
    do {                                                                                           \
        if (w[at] != (float)((j)*n + (i)))                                                         \
            fail_msg("d %zu n %zu panel %zu: float %zu holds W[%zu][%zu], want W[%zu][%zu]", d, n, \
                     panel, at, (size_t)w[at] / n, (size_t)w[at] % n, (size_t)(j), (size_t)(i));   \
        at++;                                                                                      \
    } while (0)
        for (size_t jb = 0; jb < d; jb += MDI_PANEL_ROWS) {
            size_t nr = d - jb < MDI_PANEL_ROWS ? d - jb : MDI_PANEL_ROWS;
            for (size_t p0 = 0; p0 < n; p0 += P) {
                size_t pw = n - p0 < P ? n - p0 : P, pw16 = pw - pw % 16;
                for (size_t g0 = 0; g0 < nr; g0 += MDI_PANEL_GROUP) {
                    size_t gr = nr - g0 < MDI_PANEL_GROUP ? nr - g0 : MDI_PANEL_GROUP;
                    for (size_t c = 0; c < pw16; c += 16)
                        for (size_t a = 0; a < gr; a++)
                            for (size_t l = 0; l < 16; l++)
                                EXPECT(jb + g0 + a, p0 + c + l);
                    for (size_t a = 0; a < gr; a++)
                        for (size_t c = pw16; c < pw; c++)
                            EXPECT(jb + g0 + a, p0 + c);
                }
            }
        }
#undef EXPECT
        assert_int_equal(at, d * n);
        free(w), free(scratch);
    }
}

/* A packed W gives the documented order too, bit for bit: panels of 16 and
 * 48 columns (so several panels, a narrow last one and a tail-only one), and
 * the width the engine picks (one panel below 16 KiB rows); weight-row
 * counts around a block of MDI_PANEL_ROWS, whose last group has 1, 2, 3 or
 * MDI_PANEL_GROUP rows; every register-block shape and the panel walker's
 * 1-4 rows; 1-3 threads. BLIS on the same layouts meets check_matmul's
 * bound. mdi_weight_panel keeps short rows in one panel for one activation
 * row and cuts long ones at multiples of 16; for 2-4 rows (AVX-512), it
 * keeps their panel parts within 2048 floats together, and otherwise says
 * row-major; those panels are tested too. */
static void test_matmul_panels(void **state)
{
    (void)state;
    const size_t ns[] = {16, 70, 257, 4100, 5632};
    const size_t ds[] = {1, 9, MDI_PANEL_ROWS - 1, MDI_PANEL_ROWS, MDI_PANEL_ROWS + 1, 102, 200};
    const size_t rowss[] = {1, 2, 3, 4, 5, 9};
    assert_int_equal(mdi_weight_panel(4095, 1), 4096);
    assert_int_equal(mdi_weight_panel(2048, 1), 2048);
    assert_int_equal(mdi_weight_panel(70, 1), 80);
    int few = mdi_weight_panel(2048, 2) != 0; /* AVX-512: 2-4 rows walk packed panels */
    assert_int_equal(mdi_weight_panel(2048, 2), few ? 1024 : 0);
    assert_int_equal(mdi_weight_panel(5632, 3), few ? 672 : 0);
    assert_int_equal(mdi_weight_panel(5632, 4), few ? 512 : 0);
    assert_int_equal(mdi_weight_panel(70, 4), few ? 80 : 0);
    assert_int_equal(mdi_weight_panel(2048, 5), 0);
    for (size_t in = 0; in < sizeof ns / sizeof ns[0]; in++) {
        size_t n = ns[in], auto_panel = mdi_weight_panel(n, 1);
        assert_true(auto_panel % 16 == 0 && auto_panel > 0);
        assert_true((n >= 4096) == (auto_panel < n));
        const size_t panels[] = {16, 48, auto_panel, mdi_weight_panel(n, 3)};
        for (size_t ip = 0; ip < 4; ip++)
            for (size_t id = 0; id < sizeof ds / sizeof ds[0]; id++) {
                size_t d = ds[id], P = panels[ip];
                if (P == 0 || (ip == 3 && P == auto_panel))
                    continue; /* no layout of its own */
                if (n > 1000 && P < 100 && d > 9)
                    continue; /* narrow panels of long rows: the small d cover them */
                float *w = xalloc(d * n), *wp = xalloc(d * n),
                      *scratch = xalloc(MDI_PANEL_ROWS * n);
                fill(w, d * n, 700 + id * 31 + in, 1.0f);
                memcpy(wp, w, d * n * sizeof *w);
                mdi_weight_to_panels(wp, d, n, P, scratch);
                for (size_t ir = 0; ir < sizeof rowss / sizeof rowss[0]; ir++) {
                    size_t rows = rowss[ir];
                    float *x = xalloc(rows * n), *y = xalloc(rows * d);
                    fill(x, rows * n, 800 + in * 97 + rows, 1.0f);
                    for (int t = 1; t <= 3; t++) {
                        mdi_matmul_stream(y, x, wp, rows, n, d, 0.0f, P, t);
                        for (size_t r = 0; r < rows; r++)
                            for (size_t j = 0; j < d; j++) {
                                float want = stream_order_ref(w + j * n, x + r * n, n);
                                if (memcmp(&want, &y[r * d + j], sizeof want))
                                    fail_msg(
                                        "stream %zux%zux%zu, panel %zu, %d threads: y[%zu][%zu] "
                                        "= %.9g, the documented order gives %.9g",
                                        rows, n, d, P, t, r, j, (double)y[r * d + j], (double)want);
                            }
                    }
                    free(x), free(y);
                }
                free(w), free(wp), free(scratch);
            }
    }
    set_threads(2);
    check_matmul_panel(3, 257, 200, 0.0f, 900, 0, 48);
    check_matmul_panel(5, 4100, 97, 1.0f, 901, 0, mdi_weight_panel(4100, 1));
    check_matmul_panel(2, 70, 9, 1.0f, 902, 0, 16);
    set_threads(1);
    check_matmul_panel(4, 70, 100, 1.0f, 903, 0, 32);
}

/* ---- element-wise kernels ---------------------------------------------------- */

/* Bound on mdi_dot's error for n terms: eight partial sums of n/8 terms, a
 * three-level tree and a tail of up to 7, so at most n/8 + 11 roundings. */
static double dot_tol(size_t n, double mag)
{
    return ((double)n / 8.0 + 12.0) * FLT_EPSILON * mag + 1e-30;
}

static void test_dot(void **state)
{
    (void)state;
    const size_t ns[] = {0, 1, 3, 7, 8, 9, 15, 16, 17, 63, 100, 1001};
    for (size_t c = 0; c < sizeof ns / sizeof ns[0]; c++) {
        size_t n = ns[c];
        float *a = xalloc(n), *b = xalloc(n);
        fill(a, n, 300 + c, 2.0f);
        fill(b, n, 400 + c, 2.0f);
        double ref = 0.0, mag = 0.0;
        for (size_t i = 0; i < n; i++) {
            ref += (double)a[i] * b[i];
            mag += fabs((double)a[i] * b[i]);
        }
        double got = mdi_dot(a, b, n);
        if (!(fabs(got - ref) <= dot_tol(n, mag)))
            fail_msg("dot n=%zu: %.9g, want %.9g", n, got, ref);
        free(a), free(b);
    }
    /* The tail after the last full group of 8 counts: ones dot ones = n exactly. */
    float ones[13];
    for (size_t i = 0; i < 13; i++)
        ones[i] = 1.0f;
    for (size_t n = 0; n <= 13; n++)
        assert_true(mdi_dot(ones, ones, n) == (float)n);
}

static void test_axpy(void **state)
{
    (void)state;
    const size_t n = 13;
    float a[14], b[13], a0[13];
    fill(a0, n, 11, 3.0f);
    fill(b, n, 12, 3.0f);
    memcpy(a, a0, sizeof a0);
    a[n] = -7.0f;
    mdi_axpy(a, -1.75f, b, n);
    for (size_t i = 0; i < n; i++) {
        double ref = a0[i] + -1.75 * (double)b[i];
        /* one product and one sum (or one fma): two roundings */
        assert_true(fabs(a[i] - ref) <= FLT_EPSILON * (fabs(a0[i]) + 1.75 * fabs(b[i])));
    }
    assert_true(a[n] == -7.0f);
    mdi_axpy(a, 0.0f, b, 0); /* n = 0 touches nothing */
    assert_true(a[n] == -7.0f);
}

/* Attention's two kernels against mdi_dot and mdi_axpy, bit for bit, for
 * head sizes on both sides of the vector blocks (8 and 64 columns), key
 * counts on both sides of the 8-key blocks and the 16-value blocks, one to
 * eight queries, keys and values with a gap between rows (stride > n); the
 * scores' gaps and the rows after out stay as they were. */
static void test_attention_kernels(void **state)
{
    (void)state;
    const size_t ns[] = {0, 1, 7, 8, 9, 16, 63, 64, 65, 72, 128, 130};
    const size_t counts[] = {0, 1, 7, 8, 9, 16, 17, 33};
    const size_t nqs[] = {1, 3, 8};
    const float poison = -1234.5f;
    for (size_t a = 0; a < sizeof ns / sizeof ns[0]; a++)
        for (size_t b = 0; b < sizeof counts / sizeof counts[0]; b++)
            for (size_t c = 0; c < sizeof nqs / sizeof nqs[0]; c++) {
                size_t n = ns[a], count = counts[b], nq = nqs[c], stride = n + 5;
                size_t ss = count + 3; /* scores' row stride */
                float *q = xalloc(nq * n), *kv = xalloc(count * stride + 1);
                float *s = xalloc(nq * ss), *want = xalloc(nq * ss);
                float *out = xalloc(nq * n + 1), *ref = xalloc(nq * n + 1);
                fill(q, nq * n, 500 + a, 2.0f);
                fill(kv, count * stride + 1, 600 + b, 2.0f);
                for (size_t i = 0; i < nq * ss; i++)
                    s[i] = want[i] = poison;
                for (size_t i = 0; i < nq; i++)
                    for (size_t t = 0; t < count; t++)
                        want[i * ss + t] = mdi_dot(q + i * n, kv + t * stride, n) * 0.125f;
                mdi_dot_rows(s, ss, q, nq, kv, stride, count, n, 0.125f);
                if (memcmp(s, want, nq * ss * sizeof(float)))
                    fail_msg("mdi_dot_rows n=%zu count=%zu nq=%zu differs from mdi_dot", n, count,
                             nq);
                fill(s, nq * ss, 700 + c, 1.0f);
                for (size_t i = 0; i < nq; i++) {
                    for (size_t t = 0; t < count; t++)
                        mdi_axpy(ref + i * n, s[i * ss + t], kv + t * stride, n);
                }
                for (size_t i = 0; i < nq * n; i++)
                    out[i] = poison; /* every element is written */
                out[nq * n] = ref[nq * n] = poison;
                mdi_weighted_rows(out, s, ss, nq, kv, stride, count, n);
                if (memcmp(out, ref, (nq * n + 1) * sizeof(float)))
                    fail_msg("mdi_weighted_rows n=%zu count=%zu nq=%zu differs from mdi_axpy", n,
                             count, nq);
                free(q), free(kv), free(s), free(want), free(out), free(ref);
            }
}

static void rmsnorm_ref(double *out, const float *x, const float *w, size_t n, float eps)
{
    double ss = 0.0;
    for (size_t i = 0; i < n; i++)
        ss += (double)x[i] * x[i];
    double scale = 1.0 / sqrt(ss / (double)n + eps);
    for (size_t i = 0; i < n; i++)
        out[i] = w[i] * (x[i] * scale);
}

static void test_rmsnorm(void **state)
{
    (void)state;
    const size_t ns[] = {1, 7, 64, 100, 2048};
    for (size_t c = 0; c < sizeof ns / sizeof ns[0]; c++) {
        size_t n = ns[c];
        float *x = xalloc(n), *w = xalloc(n), *out = xalloc(n + 1), *alias = xalloc(n);
        double *ref = calloc(n, sizeof(double));
        assert_non_null(ref);
        fill(x, n, 500 + c, 4.0f);
        fill(w, n, 600 + c, 2.0f);
        out[n] = 99.0f;
        rmsnorm_ref(ref, x, w, n, 1e-5f);
        mdi_rmsnorm(out, x, w, n, 1e-5f);
        /* Relative error: the sum of squares errs by the dot bound, the rest
         * (divide, add eps, sqrt, two products) by ~5 roundings; halved by sqrt
         * but kept whole here. */
        double tol = ((double)n / 8.0 + 20.0) * FLT_EPSILON;
        for (size_t i = 0; i < n; i++)
            if (mdi_test_rel(out[i], ref[i], 1e-30) > tol)
                fail_msg("rmsnorm n=%zu: out[%zu] = %.9g, want %.9g", n, i, (double)out[i], ref[i]);
        assert_true(out[n] == 99.0f);
        /* out may alias x: same bits as the separate output. */
        memcpy(alias, x, n * sizeof(float));
        mdi_rmsnorm(alias, alias, w, n, 1e-5f);
        assert_memory_equal(alias, out, n * sizeof(float));
        free(x), free(w), free(out), free(alias), free(ref);
    }
    /* eps keeps an all-zero row finite (zero), and weighs in for tiny rows. */
    float z[4] = {0}, w1[4] = {1, 1, 1, 1}, o[4];
    mdi_rmsnorm(o, z, w1, 4, 1e-5f);
    for (int i = 0; i < 4; i++)
        assert_true(o[i] == 0.0f);
    float tiny[2] = {1e-3f, -1e-3f};
    double ref2[2];
    rmsnorm_ref(ref2, tiny, w1, 2, 1e-2f);
    mdi_rmsnorm(o, tiny, w1, 2, 1e-2f);
    assert_true(mdi_test_rel(o[0], ref2[0], 1e-30) < 1e-6);
    assert_true(fabs(o[0] - 1e-2) < 1e-4); /* 1e-3 / sqrt(1e-6 + 1e-2) */
}

/* softmax in double, from the float inputs. */
static void softmax_ref(double *p, const float *x, size_t n)
{
    double m = x[0], s = 0.0;
    for (size_t i = 1; i < n; i++)
        m = fmax(m, x[i]);
    for (size_t i = 0; i < n; i++)
        s += (p[i] = exp(x[i] - m));
    for (size_t i = 0; i < n; i++)
        p[i] /= s;
}

/* Softmax of a copy of in[0..n); checks against the reference and that the
 * probabilities sum to 1. x - max rounds to within FLT_EPSILON/2 * |x - max|,
 * which exp turns into a relative error of the same size; spans beyond 104
 * give exp below float's range, where both sides are ~0 and the absolute floor
 * applies. Add expf, the sum (n roundings) and the scaling. */
static void check_softmax(const float *in, size_t n)
{
    double m = in[0], span = 0.0;
    for (size_t i = 1; i < n; i++)
        m = fmax(m, in[i]);
    for (size_t i = 0; i < n; i++)
        if (m - in[i] < 104.0)
            span = fmax(span, m - in[i]);
    float *x = xalloc(n + 1);
    double *ref = malloc(n * sizeof(double));
    assert_non_null(ref);
    memcpy(x, in, n * sizeof(float));
    x[n] = 5.0f;
    softmax_ref(ref, in, n);
    mdi_softmax(x, n);
    double sum = 0.0, tol = (span / 2.0 + (double)n + 4.0) * FLT_EPSILON;
    for (size_t i = 0; i < n; i++) {
        assert_true(isfinite(x[i]) && x[i] >= 0.0f);
        if (mdi_test_rel(x[i], ref[i], 1e-30) > tol)
            fail_msg("softmax n=%zu: p[%zu] = %.9g, want %.9g", n, i, (double)x[i], ref[i]);
        sum += x[i];
    }
    assert_true(fabs(sum - 1.0) <= ((double)n + 4.0) * FLT_EPSILON);
    assert_true(x[n] == 5.0f);
    free(x), free(ref);
}

static void test_softmax(void **state)
{
    (void)state;
    float big[5] = {1000.0f, 999.0f, 998.5f, -1000.0f, 0.0f}; /* exp(1000) overflows */
    check_softmax(big, 5);
    float neg[3] = {-1e4f, -1e4f - 1.0f, -1e4f - 2.0f}; /* exp underflows to 0 */
    check_softmax(neg, 3);
    float one[1] = {-3.0f};
    check_softmax(one, 1);
    float *r = xalloc(257);
    fill(r, 257, 77, 50.0f);
    check_softmax(r, 257);
    free(r);
    /* equal inputs: uniform */
    float eq[4] = {7.0f, 7.0f, 7.0f, 7.0f};
    mdi_softmax(eq, 4);
    for (int i = 0; i < 4; i++)
        assert_true(eq[i] == 0.25f);
    /* n = 0 reads and writes nothing */
    float none[1] = {NAN};
    mdi_softmax(none, 0);
    assert_true(isnan(none[0]));
}

static void test_swiglu(void **state)
{
    (void)state;
    const size_t n = 103;
    float a[103], b[103], a0[103];
    fill(a0, n, 21, 12.0f);
    fill(b, n, 22, 3.0f);
    /* saturating ends: silu(x) -> 0 for very negative x, -> x for large x */
    a0[0] = -200.0f;
    a0[1] = 200.0f;
    a0[2] = 0.0f;
    a0[3] = -88.0f;
    memcpy(a, a0, sizeof a0);
    mdi_swiglu(a, b, n);
    for (size_t i = 0; i < n; i++) {
        double ref = a0[i] / (1.0 + exp(-(double)a0[i])) * b[i];
        /* expf, an add, a divide and a product: a few ulps relative; the
         * absolute floor covers results that underflow to 0 */
        assert_true(isfinite(a[i]));
        if (fabs(a[i] - ref) > 8.0 * FLT_EPSILON * fabs(ref) + 1e-30)
            fail_msg("swiglu: out[%zu] = %.9g, want %.9g (a = %g)", i, (double)a[i], ref,
                     (double)a0[i]);
    }
}

/* ---- RoPE ------------------------------------------------------------------- */

/* Naive interleaved-pair rotation in double: pair i of every head turns by
 * pos * theta^(-2i/head_dim). */
static void rope_ref(double *out, const float *v, size_t n_heads, size_t hd, size_t pos,
                     double theta)
{
    for (size_t h = 0; h < n_heads; h++)
        for (size_t i = 0; i < hd / 2; i++) {
            double ang = (double)pos * pow(theta, -2.0 * (double)i / (double)hd);
            double v0 = v[h * hd + 2 * i], v1 = v[h * hd + 2 * i + 1];
            out[h * hd + 2 * i] = v0 * cos(ang) - v1 * sin(ang);
            out[h * hd + 2 * i + 1] = v0 * sin(ang) + v1 * cos(ang);
        }
}

static void check_rope(size_t hd, size_t n_heads, size_t max_pos, float theta)
{
    mdi_rope_table t;
    mdi_err err;
    assert_int_equal(mdi_rope_init(&t, max_pos, hd, theta, &err), MDI_OK);
    assert_int_equal(t.max_pos, max_pos);
    assert_int_equal(t.half, hd / 2);
    size_t n = n_heads * hd;
    float *v0 = xalloc(n), *v = xalloc(n + 1);
    double *ref = malloc(n * sizeof(double));
    assert_non_null(ref);
    fill(v0, n, 900 + hd, 2.0f);
    const size_t positions[] = {0, 1, 2, 3, 17, max_pos / 2, max_pos - 1};
    for (size_t c = 0; c < sizeof positions / sizeof positions[0]; c++) {
        size_t pos = positions[c];
        if (pos >= max_pos)
            continue;
        memcpy(v, v0, n * sizeof(float));
        v[n] = 4.0f;
        mdi_rope_apply(&t, v, n_heads, pos);
        assert_true(v[n] == 4.0f);
        if (pos == 0) {
            assert_memory_equal(v, v0, n * sizeof(float)); /* cos 0 = 1, sin 0 = 0: exact */
            continue;
        }
        rope_ref(ref, v0, n_heads, hd, pos, theta);
        for (size_t i = 0; i < n; i += 2) {
            /* The table's frequency is a float powf of a float exponent 2i/hd:
             * an exponent off by eps/2 moves theta^e by ln(theta) * eps/2
             * (6.6 eps for theta 5e5), plus powf, the divide and the product
             * with pos: under 12 eps relative, so the angle (<= pos) errs by
             * < 12 eps * pos radians; cos/sin and the rotation add a few ulps.
             * A wrong frequency, pairing or sign errs by O(|pair|). */
            double norm = hypot(v0[i], v0[i + 1]);
            double tol = FLT_EPSILON * (12.0 * (double)pos + 4.0) * norm + 1e-30;
            if (fabs(v[i] - ref[i]) > tol || fabs(v[i + 1] - ref[i + 1]) > tol)
                fail_msg("rope hd=%zu pos=%zu: pair %zu = (%.9g, %.9g), want (%.9g, %.9g)", hd, pos,
                         i / 2, (double)v[i], (double)v[i + 1], ref[i], ref[i + 1]);
            /* a rotation keeps each pair's length */
            assert_true(fabs(hypot(v[i], v[i + 1]) - norm) <= 4.0 * FLT_EPSILON * norm);
        }
    }
    free(v0), free(v), free(ref);
    mdi_rope_free(&t);
    assert_null(t.cos_sin);
    mdi_rope_free(&t); /* a second free is harmless */
}

static void test_rope_apply(void **state)
{
    (void)state;
    check_rope(64, 4, 128, 10000.0f); /* TinyLlama's head_dim */
    check_rope(8, 8, 64, 10000.0f);   /* stories260K's */
    check_rope(6, 3, 40, 500000.0f);  /* 2i/hd inexact, Llama 3 theta */
    check_rope(2, 1, 2, 10000.0f);    /* one pair, two positions */
}

/* Pair i = 0 turns by exactly pos radians, so pos and -pos compose to identity. */
static void test_rope_first_pair_angle(void **state)
{
    (void)state;
    mdi_rope_table t;
    mdi_err err;
    assert_int_equal(mdi_rope_init(&t, 10, 4, 10000.0f, &err), MDI_OK);
    float v[4] = {1.0f, 0.0f, 0.0f, 1.0f};
    mdi_rope_apply(&t, v, 1, 3);
    assert_true(fabs(v[0] - cos(3.0)) < 1e-6 && fabs(v[1] - sin(3.0)) < 1e-6);
    /* pair 1 turns by 3 / 100 */
    assert_true(fabs(v[2] + sin(0.03)) < 1e-6 && fabs(v[3] - cos(0.03)) < 1e-6);
    mdi_rope_free(&t);
}

static void test_rope_init_errors(void **state)
{
    (void)state;
    mdi_rope_table t;
    mdi_err err;
    const size_t bad[][2] = {{16, 3}, {16, 7}, {16, 0}, {16, 1}, {0, 64}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        mdi_err_clear(&err);
        mdi_status s = mdi_rope_init(&t, bad[i][0], bad[i][1], 10000.0f, &err);
        assert_int_equal(s, MDI_ERR_ARG);
        assert_int_equal(err.status, MDI_ERR_ARG);
        assert_true(err.msg[0] != '\0');
        assert_null(t.cos_sin);
        mdi_rope_free(&t); /* safe after a failed init */
    }
    /* err may be NULL */
    assert_int_equal(mdi_rope_init(&t, 0, 8, 10000.0f, NULL), MDI_ERR_ARG);
}

static void test_tensor_init_errors(void **state)
{
    (void)state;
    const int bad[] = {0, -1, 1025};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        mdi_err err;
        mdi_err_clear(&err);
        assert_int_equal(mdi_tensor_init(bad[i], NULL, &err), MDI_ERR_ARG);
        assert_int_equal(err.status, MDI_ERR_ARG);
        assert_true(err.msg[0] != '\0');
    }
    mdi_tensor_info info;
    assert_int_equal(mdi_tensor_init(1, &info, NULL), MDI_OK);
    assert_int_equal(info.n_threads, 1);
    assert_int_equal(mdi_tensor_init(1, NULL, NULL), MDI_OK); /* info is optional */
}

static void test_alloc_floats(void **state)
{
    (void)state;
    const size_t ns[] = {0, 1, 3, 15, 16, 17, 1000, 100003};
    for (size_t i = 0; i < sizeof ns / sizeof ns[0]; i++) {
        float *p = mdi_alloc_floats(ns[i]);
        assert_non_null(p);
        assert_int_equal((uintptr_t)p % 64, 0);
        for (size_t k = 0; k < ns[i]; k++) /* every element is writable (ASan) */
            p[k] = (float)k;
        mdi_free_floats(p);
    }
    mdi_free_floats(NULL);
    /* sizes whose byte count overflows size_t */
    assert_null(mdi_alloc_floats(SIZE_MAX));
    assert_null(mdi_alloc_floats(SIZE_MAX / sizeof(float)));
    assert_null(mdi_alloc_floats(SIZE_MAX / sizeof(float) - 8));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matmul_one_thread),
        cmocka_unit_test(test_matmul_two_threads),
        cmocka_unit_test(test_matmul_rows_independent),
        cmocka_unit_test(test_matmul_stream),
        cmocka_unit_test(test_matmul_stream_rows_independent),
        cmocka_unit_test(test_matmul_stream_order),
        cmocka_unit_test(test_weight_layout),
        cmocka_unit_test(test_matmul_panels),
        cmocka_unit_test(test_dot),
        cmocka_unit_test(test_axpy),
        cmocka_unit_test(test_attention_kernels),
        cmocka_unit_test(test_rmsnorm),
        cmocka_unit_test(test_softmax),
        cmocka_unit_test(test_swiglu),
        cmocka_unit_test(test_rope_apply),
        cmocka_unit_test(test_rope_first_pair_angle),
        cmocka_unit_test(test_rope_init_errors),
        cmocka_unit_test(test_tensor_init_errors),
        cmocka_unit_test(test_alloc_floats),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

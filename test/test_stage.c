/* One rank's stage on a small synthetic model with random weights: the
 * forward pass (BLIS and streamed products) against a naive double-precision
 * transformer, batching (rows of several slots, blocks of one slot, streamed
 * rows beside prompt rows) against one row at a time, a layer split across
 * two stages, thread counts, logits, tensor placement, byte counts and the
 * argument checks of mdi_stage_init. No model files. */
#include "test_util.h"

#include <float.h>
#include <math.h>

#include "mdi/stage.h"

#define N_POS 9 /* positions per sample in these tests */

/* Small, but with every shape distinct: q_dim (48) != dim (32), GQA group 2. */
static const mdi_config base_cfg = {.dim = 32,
                                    .hidden_dim = 40,
                                    .n_layers = 3,
                                    .n_heads = 4,
                                    .n_kv_heads = 2,
                                    .head_dim = 12,
                                    .vocab_size = 37,
                                    .max_seq_len = 16,
                                    .rope_theta = 10000.0f,
                                    .norm_eps = 1e-5f,
                                    .tied_head = 0};

/* splitmix64: deterministic test data without global state. */
static uint64_t rng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* offset + uniform [-scale, scale). */
static void fill(float *v, size_t n, uint64_t seed, float offset, float scale)
{
    uint64_t s = seed;
    for (size_t i = 0; i < n; i++)
        v[i] = offset + ((float)(rng_next(&s) >> 40) / 16777216.0f * 2.0f - 1.0f) * scale;
}

/* A stage of half-layers [first, last). */
static mdi_stage_params half_params(int32_t first, int32_t last, size_t slots, size_t rows)
{
    mdi_stage_params p = {.half_first = first,
                          .half_last = last,
                          .has_extras = first == 0,
                          .n_slots = slots,
                          .max_pos = N_POS,
                          .max_rows = rows,
                          .max_logit_rows = rows,
                          .n_threads = 1};
    return p;
}

/* A stage of whole layers [first, last). */
static mdi_stage_params stage_params(int32_t first, int32_t last, size_t slots, size_t rows)
{
    return half_params(2 * first, 2 * last, slots, rows);
}

/* Weights depend only on (global layer, tensor), so stages holding different
 * layer ranges of one model agree. Matrices scale as 1/sqrt(fan-in) and
 * norms are near 1, so activations stay O(1) through the layers. */
static void fill_stage(mdi_stage *st)
{
    const mdi_config *c = &st->cfg;
    for (int32_t l = 0; l < mdi_stage_n_layers(st); l++)
        for (int k = 0; k < MDI_T_COUNT; k++) {
            if (mdi_tensor_scope_of((mdi_tensor_kind)k) != MDI_SCOPE_LAYER ||
                !mdi_stage_tensor(st, (mdi_tensor_kind)k, l))
                continue; /* an extra, or a half this stage does not hold */
            size_t r, cl;
            mdi_tensor_shape(c, (mdi_tensor_kind)k, &r, &cl);
            uint64_t seed = 1000u * (uint64_t)(mdi_stage_first_layer(st) + l) + (uint64_t)k;
            if (cl == 1)
                fill(mdi_stage_tensor(st, (mdi_tensor_kind)k, l), r, seed, 1.0f, 0.2f);
            else
                fill(mdi_stage_tensor(st, (mdi_tensor_kind)k, l), r * cl, seed, 0.0f,
                     1.7f / sqrtf((float)cl));
        }
    if (!st->p.has_extras)
        return;
    size_t vd = (size_t)c->vocab_size * (size_t)c->dim;
    fill(st->embedding, vd, 7, 0.0f, 1.0f);
    fill(st->final_norm, (size_t)c->dim, 8, 1.0f, 0.2f);
    if (!c->tied_head)
        fill(mdi_stage_tensor(st, MDI_T_OUTPUT, 0), vd, 9, 0.0f, 0.3f);
}

static void open_stage(mdi_stage *st, const mdi_config *c, const mdi_stage_params *p)
{
    mdi_err err;
    if (mdi_stage_init(st, c, p, &err) != MDI_OK)
        fail_msg("mdi_stage_init: %s", err.msg);
    fill_stage(st);
}

/* Token of sample `sample` at position pos. */
static int32_t token_at(int sample, int32_t pos, const mdi_config *c)
{
    return (int32_t)((7 * sample + 5 * pos + 3) % c->vocab_size);
}

/* Largest |got - want| over a row of n, relative to the row's largest |want|. */
static double row_err(const float *got, const double *want, size_t n)
{
    double scale = 1e-30, worst = 0.0;
    for (size_t i = 0; i < n; i++)
        scale = fmax(scale, fabs(want[i]));
    for (size_t i = 0; i < n; i++)
        worst = fmax(worst, fabs(got[i] - want[i]));
    return worst / scale;
}

static double row_err_f(const float *got, const float *want, size_t n)
{
    double w[64];
    assert_true(n <= 64);
    for (size_t i = 0; i < n; i++)
        w[i] = want[i];
    return row_err(got, w, n);
}

/* ---- naive reference ---------------------------------------------------------- */

static void ref_matvec(double *y, const float *w, const double *x, size_t d, size_t n)
{
    for (size_t j = 0; j < d; j++) {
        double s = 0.0;
        for (size_t k = 0; k < n; k++)
            s += (double)w[j * n + k] * x[k];
        y[j] = s;
    }
}

static void ref_rmsnorm(double *out, const double *x, const float *w, size_t n, double eps)
{
    double ss = 0.0;
    for (size_t i = 0; i < n; i++)
        ss += x[i] * x[i];
    double scale = 1.0 / sqrt(ss / (double)n + eps);
    for (size_t i = 0; i < n; i++)
        out[i] = w[i] * x[i] * scale;
}

static void ref_rope(double *v, size_t n_heads, size_t hd, size_t pos, double theta)
{
    for (size_t h = 0; h < n_heads; h++)
        for (size_t i = 0; i < hd / 2; i++) {
            double a = (double)pos * pow(theta, -2.0 * (double)i / (double)hd);
            double *p = v + h * hd + 2 * i, v0 = p[0], v1 = p[1];
            p[0] = v0 * cos(a) - v1 * sin(a);
            p[1] = v0 * sin(a) + v1 * cos(a);
        }
}

/* Sizes are small and fixed: stack arrays of these bounds. */
#define RMAX 64
#define RLAYERS 3

/* KV history of one sample in double: (layer, pos, kv_dim). */
typedef struct ref_kv {
    double k[RLAYERS][N_POS][RMAX], v[RLAYERS][N_POS][RMAX];
} ref_kv;

/* Layers [first, last) of the model on x (dim) at position pos, as in
 * llama2.c's forward, with all arithmetic in double. Weights are read from st,
 * which must hold those layers. */
static void ref_layers(mdi_stage *st, ref_kv *kv, double *x, size_t pos)
{
    const mdi_config *c = &st->cfg;
    size_t dim = (size_t)c->dim, hd = (size_t)c->head_dim, H = (size_t)c->n_heads;
    size_t qd = mdi_config_q_dim(c), kvd = mdi_config_kv_dim(c), hid = (size_t)c->hidden_dim;
    size_t group = H / (size_t)c->n_kv_heads;
    assert_true(dim <= RMAX && qd <= RMAX && hid <= RMAX && pos < N_POS);
    for (int32_t l = 0; l < mdi_stage_n_layers(st); l++) {
        size_t g = (size_t)(mdi_stage_first_layer(st) + l);
        assert_true(g < RLAYERS);
        double xb[RMAX], q[RMAX], att[RMAX], o[RMAX], h1[RMAX], h3[RMAX];
        ref_rmsnorm(xb, x, mdi_stage_tensor(st, MDI_T_ATTN_NORM, l), dim, c->norm_eps);
        ref_matvec(q, mdi_stage_tensor(st, MDI_T_WQ, l), xb, qd, dim);
        ref_matvec(kv->k[g][pos], mdi_stage_tensor(st, MDI_T_WK, l), xb, kvd, dim);
        ref_matvec(kv->v[g][pos], mdi_stage_tensor(st, MDI_T_WV, l), xb, kvd, dim);
        ref_rope(q, H, hd, pos, c->rope_theta);
        ref_rope(kv->k[g][pos], (size_t)c->n_kv_heads, hd, pos, c->rope_theta);
        for (size_t h = 0; h < H; h++) {
            size_t off = (h / group) * hd;
            double p[N_POS], m = -INFINITY, sum = 0.0;
            for (size_t t = 0; t <= pos; t++) {
                double s = 0.0;
                for (size_t i = 0; i < hd; i++)
                    s += q[h * hd + i] * kv->k[g][t][off + i];
                p[t] = s / sqrt((double)hd);
                m = fmax(m, p[t]);
            }
            for (size_t t = 0; t <= pos; t++)
                sum += (p[t] = exp(p[t] - m));
            for (size_t i = 0; i < hd; i++) {
                double a = 0.0;
                for (size_t t = 0; t <= pos; t++)
                    a += p[t] / sum * kv->v[g][t][off + i];
                att[h * hd + i] = a;
            }
        }
        ref_matvec(o, mdi_stage_tensor(st, MDI_T_WO, l), att, dim, qd);
        for (size_t i = 0; i < dim; i++)
            x[i] += o[i];
        ref_rmsnorm(xb, x, mdi_stage_tensor(st, MDI_T_FFN_NORM, l), dim, c->norm_eps);
        ref_matvec(h1, mdi_stage_tensor(st, MDI_T_W1, l), xb, hid, dim);
        ref_matvec(h3, mdi_stage_tensor(st, MDI_T_W3, l), xb, hid, dim);
        for (size_t i = 0; i < hid; i++)
            h1[i] = h1[i] / (1.0 + exp(-h1[i])) * h3[i];
        ref_matvec(o, mdi_stage_tensor(st, MDI_T_W2, l), h1, dim, hid);
        for (size_t i = 0; i < dim; i++)
            x[i] += o[i];
    }
}

/* ---- tests -------------------------------------------------------------------- */

/* One row at a time against the reference, hidden states and logits.
 * Rounding errors of these fixed random inputs are far below the worst-case
 * bounds of the kernels (~(n/8 + 12) eps per product, compounding over a dozen
 * products per layer): measured 6e-7 of the row's scale. 1e-5 leaves a margin
 * of 15 and still sees a RoPE angle off by a fraction of a position; a
 * wrong head, offset, sign or position is O(1). stream: run the rows through
 * the streamed products (mdi_stage_forward_mixed) instead of BLIS. */
static void forward_vs_reference(int tied, float eps, int stream)
{
    mdi_config c = base_cfg;
    c.tied_head = tied;
    c.norm_eps = eps;
    mdi_stage_params p = stage_params(0, c.n_layers, 1, 1);
    p.prompt_blis = !stream; /* else 1-row stages stream their prompt rows too */
    mdi_stage st;
    open_stage(&st, &c, &p);
    size_t dim = (size_t)c.dim, V = (size_t)c.vocab_size;
    ref_kv kv;
    memset(&kv, 0, sizeof kv);
    float x[64], logits[64];
    double rx[64], xb[64], rl[64];
    for (int32_t pos = 0; pos < N_POS; pos++) {
        int32_t tok = token_at(0, pos, &c);
        mdi_row row = {0, pos};
        mdi_stage_embed(&st, &tok, 1, x);
        assert_memory_equal(x, st.embedding + (size_t)tok * dim, dim * sizeof(float));
        for (size_t i = 0; i < dim; i++)
            rx[i] = x[i];
        mdi_stage_forward_mixed(&st, x, &row, 1, stream ? 1 : 0);
        ref_layers(&st, &kv, rx, (size_t)pos);
        double e = row_err(x, rx, dim);
        if (e > 1e-5)
            fail_msg("tied=%d stream=%d pos %d: hidden state off by %.3g of its scale", tied,
                     stream, pos, e);
        mdi_stage_logits(&st, x, 1, logits);
        ref_rmsnorm(xb, rx, st.final_norm, dim, c.norm_eps);
        ref_matvec(rl, tied ? st.embedding : st.output, xb, V, dim);
        e = row_err(logits, rl, V);
        if (e > 1e-5)
            fail_msg("tied=%d stream=%d pos %d: logits off by %.3g of their scale", tied, stream,
                     pos, e);
    }
    mdi_stage_free(&st);
}

static void test_forward_untied(void **state)
{
    (void)state;
    forward_vs_reference(0, 1e-5f, 0);
}

static void test_forward_tied(void **state)
{
    (void)state;
    /* a large epsilon, so that where it enters each norm shows */
    forward_vs_reference(1, 0.05f, 0);
}

static void test_forward_streamed(void **state)
{
    (void)state;
    forward_vs_reference(0, 1e-5f, 1);
    forward_vs_reference(1, 0.05f, 1);
}

/* Calls that mix one streamed (decode) row of slot 1 with a prompt block of
 * slot 0, against the same rows run on their own: the streamed row alone
 * through mdi_stage_forward_mixed in slot 3, the prompt block alone through
 * mdi_stage_forward in slot 2. Documented: a row's result depends only on
 * which kind it is, so bit for bit; and the same with attention and the
 * streamed products on 2 threads. prompt_blis: prompt rows through BLIS
 * (else this 4-row stage streams them too). */
static void mixed_calls(int n_threads, int prompt_blis)
{
    mdi_stage_params p = stage_params(0, base_cfg.n_layers, 4, 4);
    p.n_threads = n_threads;
    p.prompt_blis = prompt_blis;
    mdi_stage st;
    open_stage(&st, &base_cfg, &p);
    size_t dim = (size_t)base_cfg.dim;
    const int32_t block_start[] = {0, 3, 5, 8, N_POS}; /* prompt blocks of 3, 2, 3, 1 */
    for (int32_t b = 0; b + 1 < (int32_t)(sizeof block_start / sizeof block_start[0]); b++) {
        int32_t p0 = block_start[b], m = block_start[b + 1] - p0, dpos = b;
        int32_t toks[4];
        mdi_row rows[4];
        float mixed[4 * 64], alone[4 * 64];
        rows[0] = (mdi_row){1, dpos};
        toks[0] = token_at(1, dpos, &base_cfg);
        for (int32_t j = 0; j < m; j++) {
            rows[1 + j] = (mdi_row){0, p0 + j};
            toks[1 + j] = token_at(0, p0 + j, &base_cfg);
        }
        mdi_stage_embed(&st, toks, (size_t)(1 + m), mixed);
        mdi_stage_forward_mixed(&st, mixed, rows, (size_t)(1 + m), 1);

        mdi_row one = {3, dpos};
        mdi_stage_embed(&st, toks, 1, alone);
        mdi_stage_forward_mixed(&st, alone, &one, 1, 1);
        if (memcmp(alone, mixed, dim * sizeof(float)) != 0)
            fail_msg("threads %d blis %d call %d: the streamed row depends on the prompt rows "
                     "beside it",
                     n_threads, prompt_blis, b);
        for (int32_t j = 0; j < m; j++)
            rows[1 + j].slot = 2;
        mdi_stage_embed(&st, toks + 1, (size_t)m, alone);
        mdi_stage_forward(&st, alone, rows + 1, (size_t)m);
        if (memcmp(alone, mixed + dim, (size_t)m * dim * sizeof(float)) != 0)
            fail_msg("threads %d blis %d call %d: the prompt rows depend on the streamed row "
                     "beside them",
                     n_threads, prompt_blis, b);
    }
    /* two streamed rows in one call == each alone (slots 2 and 3 hold the
     * same history as 0 and 1 at positions 0..3) */
    float two[2 * 64], alone[64];
    int32_t toks[2] = {token_at(0, 4, &base_cfg), token_at(1, 4, &base_cfg)};
    mdi_row rows[2] = {{0, 4}, {1, 4}};
    mdi_stage_embed(&st, toks, 2, two);
    mdi_stage_forward_mixed(&st, two, rows, 2, 2);
    for (int s = 0; s < 2; s++) {
        mdi_row one = {2 + s, 4};
        mdi_stage_embed(&st, &toks[s], 1, alone);
        mdi_stage_forward_mixed(&st, alone, &one, 1, 1);
        assert_memory_equal(alone, two + (size_t)s * dim, dim * sizeof(float));
    }
    mdi_stage_free(&st);
}

static void test_mixed_rows_independent(void **state)
{
    (void)state;
    for (int blis = 0; blis < 2; blis++) {
        mixed_calls(1, blis);
        mixed_calls(2, blis);
    }
}

/* Two samples in slots 0 and 1, one row each per call, against the same
 * samples run alone in slots 2 and 3 (one row per call), prompt rows through
 * BLIS. The rows of a call only share weights, so the results agree to
 * rounding: BLIS may block a 2-row product differently from a 1-row one,
 * which would move each element by a few ulps (~1e-7 relative; bit for bit
 * with BLIS 0.9 here); 1e-6 of the row's scale allows that and no more. */
static void test_interleaved_slots(void **state)
{
    (void)state;
    mdi_stage_params p = stage_params(0, base_cfg.n_layers, 4, 4);
    p.prompt_blis = 1;
    mdi_stage st;
    open_stage(&st, &base_cfg, &p);
    size_t dim = (size_t)base_cfg.dim;
    float both[2 * 64], alone[64];
    for (int32_t pos = 0; pos < N_POS; pos++) {
        int32_t toks[2] = {token_at(0, pos, &base_cfg), token_at(1, pos, &base_cfg)};
        mdi_row rows[2] = {{0, pos}, {1, pos}};
        mdi_stage_embed(&st, toks, 2, both);
        mdi_stage_forward(&st, both, rows, 2);
        for (int s = 0; s < 2; s++) {
            mdi_row row = {2 + s, pos};
            mdi_stage_embed(&st, &toks[s], 1, alone);
            mdi_stage_forward(&st, alone, &row, 1);
            double e = row_err_f(both + (size_t)s * dim, alone, dim);
            if (e > 1e-6)
                fail_msg("pos %d sample %d: interleaved differs from alone by %.3g", pos, s, e);
        }
    }
    /* Again with two positions of each sample per call (4 rows, slots
     * alternating), rewriting the same positions; slots 2 and 3 replay each
     * row alone. */
    for (int32_t pos = 0; pos + 1 < N_POS; pos += 2) {
        int32_t toks[4];
        mdi_row rows[4];
        for (int j = 0; j < 4; j++) {
            rows[j] = (mdi_row){j % 2, pos + j / 2};
            toks[j] = token_at(j % 2, pos + j / 2, &base_cfg);
        }
        float x4[4 * 64];
        mdi_stage_embed(&st, toks, 4, x4);
        mdi_stage_forward(&st, x4, rows, 4);
        for (int j = 0; j < 4; j++) {
            mdi_row row = {2 + j % 2, pos + j / 2};
            mdi_stage_embed(&st, &toks[j], 1, alone);
            mdi_stage_forward(&st, alone, &row, 1);
            double e = row_err_f(x4 + (size_t)j * dim, alone, dim);
            if (e > 1e-6)
                fail_msg("pos %d row %d: block of 4 differs from alone by %.3g", pos, j, e);
        }
    }
    mdi_stage_free(&st);
}

/* A prefill block of one slot, and blocks of 4 then 5, against one row at a
 * time in another slot: within 1e-5 of the row's scale (block and row
 * products round differently, and differences compound over three layers). */
static void test_block_equals_rows(void **state)
{
    (void)state;
    mdi_stage_params p = stage_params(0, base_cfg.n_layers, 3, N_POS);
    mdi_stage st;
    open_stage(&st, &base_cfg, &p);
    size_t dim = (size_t)base_cfg.dim;
    float one[N_POS * 64], block[N_POS * 64], split[N_POS * 64];
    int32_t toks[N_POS];
    mdi_row rows[N_POS];
    for (int32_t pos = 0; pos < N_POS; pos++) {
        toks[pos] = token_at(3, pos, &base_cfg);
        mdi_row row = {2, pos};
        mdi_stage_embed(&st, &toks[pos], 1, one + (size_t)pos * dim);
        mdi_stage_forward(&st, one + (size_t)pos * dim, &row, 1);
        rows[pos] = (mdi_row){0, pos};
    }
    mdi_stage_embed(&st, toks, N_POS, block);
    mdi_stage_forward(&st, block, rows, N_POS);
    for (int32_t j = 0; j < N_POS; j++)
        rows[j].slot = 1;
    mdi_stage_embed(&st, toks, N_POS, split);
    mdi_stage_forward(&st, split, rows, 4);
    mdi_stage_forward(&st, split + 4 * dim, rows + 4, N_POS - 4);
    for (int32_t pos = 0; pos < N_POS; pos++) {
        double e1 = row_err_f(block + (size_t)pos * dim, one + (size_t)pos * dim, dim);
        double e2 = row_err_f(split + (size_t)pos * dim, one + (size_t)pos * dim, dim);
        if (e1 > 1e-5 || e2 > 1e-5)
            fail_msg("pos %d: block %.3g, blocks of 4+5 %.3g from one-by-one", pos, e1, e2);
    }
    mdi_stage_free(&st);
}

/* Layers [0, 1) on one stage then [1, 3) on another == [0, 3) on one stage:
 * the pipeline's split. Same products in the same order: bit for bit. */
static void test_layer_split(void **state)
{
    (void)state;
    mdi_stage_params pa = stage_params(0, 1, 1, 1), pb = stage_params(1, 3, 1, 1);
    mdi_stage_params pw = stage_params(0, 3, 1, 1);
    mdi_stage a, b, whole;
    open_stage(&a, &base_cfg, &pa);
    open_stage(&b, &base_cfg, &pb);
    open_stage(&whole, &base_cfg, &pw);
    assert_null(b.embedding);
    assert_null(b.output);
    size_t dim = (size_t)base_cfg.dim;
    float x[64], y[64];
    for (int32_t pos = 0; pos < N_POS; pos++) {
        int32_t tok = token_at(5, pos, &base_cfg);
        mdi_row row = {0, pos};
        mdi_stage_embed(&a, &tok, 1, x);
        mdi_stage_forward(&a, x, &row, 1);
        mdi_stage_forward(&b, x, &row, 1);
        mdi_stage_embed(&whole, &tok, 1, y);
        mdi_stage_forward(&whole, y, &row, 1);
        assert_memory_equal(x, y, dim * sizeof(float));
    }
    mdi_stage_free(&a), mdi_stage_free(&b), mdi_stage_free(&whole);
}

/* Every way to cut the 6 half-layers into three stages (the first may end
 * after a layer's attention, the next start with its MLP) gives the whole
 * stage's bits: 2 samples, 2 rows per call (one each), with the streamed
 * products and with BLIS. Each piece's KV cache holds only its attention. */
static void test_half_layer_split(void **state)
{
    (void)state;
    size_t dim = (size_t)base_cfg.dim;
    for (int stream = 0; stream <= 1; stream++)
        for (int32_t a = 1; a < 6; a++)
            for (int32_t b = a; b < 6; b++) {
                /* b == a: only two pieces, [0, a) and [a, 6) */
                mdi_stage_params pp[3] = {half_params(0, a, 2, 2), half_params(a, b, 2, 2),
                                          half_params(b, 6, 2, 2)};
                mdi_stage_params pw = half_params(0, 6, 2, 2);
                pw.prompt_blis = !stream;
                mdi_stage piece[3], whole;
                int n_pieces = 0;
                for (int i = 0; i < 3; i++) {
                    if (pp[i].half_first == pp[i].half_last)
                        continue;
                    pp[i].prompt_blis = !stream;
                    open_stage(&piece[n_pieces++], &base_cfg, &pp[i]);
                }
                open_stage(&whole, &base_cfg, &pw);
                size_t kv_layers = 0;
                for (int i = 0; i < n_pieces; i++)
                    kv_layers += piece[i].kv.n_layers;
                assert_int_equal(kv_layers, 3);
                float x[2 * 64], y[2 * 64];
                for (int32_t pos = 0; pos < N_POS; pos++) {
                    int32_t toks[2] = {token_at(1, pos, &base_cfg), token_at(4, pos, &base_cfg)};
                    mdi_row rows[2] = {{0, pos}, {1, pos}};
                    mdi_stage_embed(&piece[0], toks, 2, x);
                    for (int i = 0; i < n_pieces; i++)
                        mdi_stage_forward(&piece[i], x, rows, 2);
                    mdi_stage_embed(&whole, toks, 2, y);
                    mdi_stage_forward(&whole, y, rows, 2);
                    if (memcmp(x, y, 2 * dim * sizeof(float)) != 0)
                        fail_msg("cut at half-layers %d, %d (stream %d): pos %d differs", a, b,
                                 stream, pos);
                }
                for (int i = 0; i < n_pieces; i++)
                    mdi_stage_free(&piece[i]);
                mdi_stage_free(&whole);
            }
}

/* A stage of half-layers [1, 4): layer 0's MLP, then layer 1 whole. Only the
 * held tensors are allocated, packed in MDI_TENSOR_LIST order; the others are
 * NULL; the KV cache has one layer. [1, 2) alone has no KV cache at all. */
static void test_half_layer_layout(void **state)
{
    (void)state;
    const mdi_config *c = &base_cfg;
    size_t attn = mdi_config_half_params(c, MDI_HALF_ATTN);
    size_t mlp = mdi_config_half_params(c, MDI_HALF_MLP);
    assert_int_equal(attn + mlp, mdi_config_layer_params(c));
    mdi_stage_params p = half_params(1, 4, 1, 1);
    mdi_stage st;
    open_stage(&st, c, &p);
    assert_int_equal(mdi_stage_first_layer(&st), 0);
    assert_int_equal(mdi_stage_n_layers(&st), 2);
    assert_int_equal(mdi_stage_weight_bytes(&st), (mlp + attn + mlp) * sizeof(float));
    assert_int_equal(st.kv.n_layers, 1);
    size_t off = 0;
    for (int32_t l = 0; l < 2; l++)
        for (int k = 0; k < MDI_T_COUNT; k++) {
            int half = mdi_tensor_half((mdi_tensor_kind)k);
            if (half < 0)
                continue;
            float *t = mdi_stage_tensor(&st, (mdi_tensor_kind)k, l);
            if (l == 0 && half == MDI_HALF_ATTN) {
                assert_null(t);
                continue;
            }
            size_t r, cl;
            mdi_tensor_shape(c, (mdi_tensor_kind)k, &r, &cl);
            assert_ptr_equal(t, st.layer_data + off);
            off += r * cl;
        }
    assert_int_equal(off, 2 * mlp + attn);
    assert_null(st.layers[0].wq);
    assert_non_null(st.layers[0].w2);
    mdi_stage_free(&st);

    p = half_params(1, 2, 1, 1);
    open_stage(&st, c, &p);
    assert_int_equal(mdi_stage_weight_bytes(&st), mlp * sizeof(float));
    assert_int_equal(mdi_kv_bytes(&st.kv), 0);
    float x[64] = {0};
    mdi_row row = {0, 0};
    x[0] = 1.0f;
    mdi_stage_forward(&st, x, &row, 1); /* MLP only: no cache to touch */
    mdi_stage_free(&st);

    p = half_params(4, 5, 1, 1); /* layer 2's attention only */
    open_stage(&st, c, &p);
    assert_int_equal(mdi_stage_weight_bytes(&st), attn * sizeof(float));
    assert_int_equal(st.kv.n_layers, 1);
    assert_null(st.layers[0].w1);
    mdi_stage_free(&st);
}

/* Attention spread over two threads gives the same bits as one thread: each
 * (row, head) pair is computed the same way whichever thread runs it. */
static void test_threads_agree(void **state)
{
    (void)state;
    mdi_stage_params p1 = stage_params(0, 3, 2, 4), p2 = p1;
    p2.n_threads = 2;
    mdi_stage s1, s2;
    open_stage(&s1, &base_cfg, &p1);
    open_stage(&s2, &base_cfg, &p2);
    size_t dim = (size_t)base_cfg.dim;
    float x1[4 * 64], x2[4 * 64];
    for (int32_t pos = 0; pos + 1 < N_POS; pos += 2) {
        int32_t toks[4];
        mdi_row rows[4];
        for (int j = 0; j < 4; j++) {
            rows[j] = (mdi_row){j % 2, pos + j / 2};
            toks[j] = token_at(j % 2, pos + j / 2, &base_cfg);
        }
        mdi_stage_embed(&s1, toks, 4, x1);
        mdi_stage_forward(&s1, x1, rows, 4);
        mdi_stage_embed(&s2, toks, 4, x2);
        mdi_stage_forward(&s2, x2, rows, 4);
        assert_memory_equal(x1, x2, 4 * dim * sizeof(float));
    }
    mdi_stage_free(&s1), mdi_stage_free(&s2);
}

/* mdi_stage_pack changes where the weights lie, not the results: a packed
 * stage (for 1, 2 or 4 rows per call) equals an unpacked one bit for bit,
 * for prompt blocks and single rows, states and logits, on 1 and 2 threads. Two geometries with
 * rows of 16 KiB and more: dim 4112 (the attention and up projections, the head; tied too, where
 * the head is the embedding table and stays row-major) and hidden 4100 (the down projection, a tail
 * of 4). Prompt rows through BLIS (prompt_blis) differ only in the order of the sums. */
static void test_pack_bitwise(void **state)
{
    (void)state;
    mdi_config wide = base_cfg, deep = base_cfg, tied;
    wide.dim = 4112, wide.n_heads = 2, wide.n_kv_heads = 1, wide.head_dim = 8;
    wide.n_layers = 2;
    tied = wide;
    tied.tied_head = 1;
    deep.hidden_dim = 4100, deep.n_layers = 2;
    const mdi_config *cfgs[] = {&wide, &tied, &deep};
    for (size_t ic = 0; ic < 3; ic++)
        for (int variant = 0; variant < 3; variant++) {
            const mdi_config *c = cfgs[ic];
            size_t dim = (size_t)c->dim, V = (size_t)c->vocab_size;
            mdi_stage_params p = stage_params(0, c->n_layers, 1, 4);
            p.n_threads = variant == 1 ? 2 : 1;
            p.prompt_blis = variant == 2;
            mdi_stage a, b;
            mdi_err err;
            open_stage(&a, c, &p);
            open_stage(&b, c, &p);
            /* laid out for 1, 4 and 2 rows per call (row-major where
             * mdi_weight_panel says so: more than one row without AVX-512) */
            size_t pack_rows = variant == 0 ? 1 : variant == 1 ? 4 : 2;
            int want = mdi_weight_panel(dim, pack_rows) ? (int)pack_rows : 0;
            if (mdi_stage_pack(&b, pack_rows, &err) != MDI_OK ||
                mdi_stage_pack(&b, pack_rows, &err) != MDI_OK)
                fail_msg("mdi_stage_pack: %s", err.msg);
            assert_int_equal(b.packed, want);
            assert_false(a.packed);
            float *xa = calloc(4 * dim, sizeof *xa), *xb = calloc(4 * dim, sizeof *xb);
            float *la = calloc(4 * V, sizeof *la), *lb = calloc(4 * V, sizeof *lb);
            assert_true(xa && xb && la && lb);
            int32_t toks[4];
            mdi_row rows[4];
            for (int32_t pos = 0; pos < N_POS; pos += pos == 0 ? 4 : 1) {
                size_t n = pos == 0 ? 4 : 1; /* a prompt block, then one row at a time */
                for (size_t r = 0; r < n; r++) {
                    rows[r] = (mdi_row){0, pos + (int32_t)r};
                    toks[r] = token_at(0, pos + (int32_t)r, c);
                }
                mdi_stage_embed(&a, toks, n, xa);
                mdi_stage_embed(&b, toks, n, xb);
                mdi_stage_forward(&a, xa, rows, n);
                mdi_stage_forward(&b, xb, rows, n);
                mdi_stage_logits(&a, xa, n, la);
                mdi_stage_logits(&b, xb, n, lb);
                if (!mdi_stage_prompt_streams(&a)) {
                    /* prompt rows through BLIS (prompt_blis, or a build whose
                     * streaming product takes fewer rows): the prompt's keys
                     * and values differ in their last bits */
                    for (size_t i = 0; i < n * V; i++)
                        assert_true(fabsf(la[i] - lb[i]) <= 1e-4f * (1.0f + fabsf(la[i])));
                    continue;
                }
                if (memcmp(xa, xb, n * dim * sizeof *xa) || memcmp(la, lb, n * V * sizeof *la))
                    fail_msg("geometry %zu variant %d position %d: packed differs", ic, variant,
                             (int)pos);
            }
            free(xa), free(xb), free(la), free(lb);
            mdi_stage_free(&a), mdi_stage_free(&b);
        }
}

/* Layer tensors tile each layer's block in MDI_TENSOR_LIST order, layers
 * follow each other, and the byte count is the sum of the pieces. */
static void test_layout_and_bytes(void **state)
{
    (void)state;
    const mdi_config *c = &base_cfg;
    size_t dim = 32, hid = 40, qd = 48, kvd = 24;
    size_t per = 2 * dim + 2 * qd * dim + 2 * kvd * dim + 3 * hid * dim;
    size_t extras = 2 * 37 * dim + dim;
    assert_int_equal(mdi_config_layer_params(c), per);
    for (int tied = 0; tied <= 1; tied++) {
        mdi_config ct = *c;
        ct.tied_head = tied;
        mdi_stage_params p = stage_params(1, 3, 1, 1);
        mdi_stage st;
        open_stage(&st, &ct, &p);
        assert_int_equal(mdi_stage_n_layers(&st), 2);
        assert_int_equal(mdi_stage_weight_bytes(&st), 2 * per * sizeof(float));
        size_t off = 0;
        for (int32_t l = 0; l < 2; l++)
            for (int k = 0; k < MDI_T_COUNT; k++) {
                if (mdi_tensor_scope_of((mdi_tensor_kind)k) != MDI_SCOPE_LAYER)
                    continue;
                size_t r, cl;
                mdi_tensor_shape(&ct, (mdi_tensor_kind)k, &r, &cl);
                assert_ptr_equal(mdi_stage_tensor(&st, (mdi_tensor_kind)k, l), st.layer_data + off);
                off += r * cl;
            }
        assert_int_equal(off, 2 * per);
        assert_null(mdi_stage_tensor(&st, MDI_T_EMBED, 0));
        mdi_stage_free(&st);

        p = stage_params(0, 2, 1, 1);
        open_stage(&st, &ct, &p);
        assert_int_equal(mdi_stage_weight_bytes(&st),
                         (2 * per + extras - (tied ? 37 * dim : 0)) * sizeof(float));
        assert_ptr_equal(mdi_stage_tensor(&st, MDI_T_EMBED, 0), st.embedding);
        assert_ptr_equal(mdi_stage_tensor(&st, MDI_T_FINAL_NORM, 0), st.final_norm);
        if (tied) {
            assert_null(mdi_stage_tensor(&st, MDI_T_OUTPUT, 0)); /* nothing to load */
            assert_ptr_equal(st.output, st.embedding);
        } else {
            assert_non_null(st.output);
            assert_ptr_equal(mdi_stage_tensor(&st, MDI_T_OUTPUT, 0), st.output);
            assert_ptr_not_equal(st.output, st.embedding);
        }
        mdi_stage_free(&st);
        assert_null(st.layer_data); /* free leaves a zeroed struct */
    }
}

/* init fails with MDI_ERR_ARG and a message containing word, leaving a stage
 * that is safe to free. */
static void expect_init_error(const mdi_stage_params *p, const char *what, const char *word)
{
    mdi_stage st;
    mdi_err err;
    mdi_err_clear(&err);
    mdi_status s = mdi_stage_init(&st, &base_cfg, p, &err);
    if (s != MDI_ERR_ARG)
        fail_msg("%s: mdi_stage_init returned %d, want MDI_ERR_ARG", what, s);
    assert_int_equal(err.status, MDI_ERR_ARG);
    assert_true(err.msg[0] != '\0');
    if (!strstr(err.msg, word))
        fail_msg("%s: message '%s' does not mention '%s'", what, err.msg, word);
    assert_null(st.layer_data);
    mdi_stage_free(&st);
}

static void test_init_errors(void **state)
{
    (void)state;
    mdi_stage_params p;
    /* half-layers of 3 layers: [0, 6) */
    const int32_t ranges[][2] = {{-1, 2}, {0, 7}, {2, 2}, {2, 1}, {6, 7}, {0, 0}, {5, 8}};
    for (size_t i = 0; i < sizeof ranges / sizeof ranges[0]; i++) {
        p = half_params(ranges[i][0], ranges[i][1], 1, 1);
        expect_init_error(&p, "half-layer range", "half-layer range");
    }
    p = stage_params(0, 3, 0, 1);
    expect_init_error(&p, "no slots", "");
    p = stage_params(0, 3, 1, 0);
    expect_init_error(&p, "no rows", "");
    p = stage_params(0, 3, 1, 1);
    p.max_pos = 0;
    expect_init_error(&p, "max_pos 0", "");
    p.max_pos = (size_t)base_cfg.max_seq_len + 1;
    expect_init_error(&p, "max_pos > max_seq_len", "");
    p = stage_params(0, 3, 1, 1);
    p.n_threads = 0;
    expect_init_error(&p, "no threads", "");
    p = stage_params(0, 3, 1, 1);
    p.max_logit_rows = 0;
    expect_init_error(&p, "extras without logit rows", "");
    /* without extras, logit rows are not needed */
    p = stage_params(1, 3, 1, 1);
    p.max_logit_rows = 0;
    mdi_stage st;
    mdi_err err;
    assert_int_equal(mdi_stage_init(&st, &base_cfg, &p, &err), MDI_OK);
    mdi_stage_free(&st);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_forward_untied),    cmocka_unit_test(test_forward_tied),
        cmocka_unit_test(test_forward_streamed),  cmocka_unit_test(test_mixed_rows_independent),
        cmocka_unit_test(test_interleaved_slots), cmocka_unit_test(test_block_equals_rows),
        cmocka_unit_test(test_layer_split),       cmocka_unit_test(test_half_layer_split),
        cmocka_unit_test(test_half_layer_layout), cmocka_unit_test(test_threads_agree),
        cmocka_unit_test(test_layout_and_bytes),  cmocka_unit_test(test_init_errors),
        cmocka_unit_test(test_pack_bitwise),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* KV cache layout and errors, and grouped-query attention against a naive
 * double-precision reference: several GQA ratios and positions, head ranges,
 * causality, and isolation between slots and layers. */
#include "test_util.h"

#include <float.h>
#include <math.h>

#include "mdi/attention.h"

#define N_SLOTS 2
#define N_LAYERS 2
#define MAX_POS 13
#define N_HEADS 8
#define HEAD_DIM 16
#define POISON 1234.5f

/* splitmix64: deterministic test data without global state. */
static uint64_t rng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Uniform in [-scale, scale). */
static void fill(float *v, size_t n, uint64_t seed, float scale)
{
    uint64_t s = seed;
    for (size_t i = 0; i < n; i++)
        v[i] = ((float)(rng_next(&s) >> 40) / 16777216.0f * 2.0f - 1.0f) * scale;
}

static void make_cache(mdi_kv_cache *kv, size_t kv_dim)
{
    mdi_err err;
    if (mdi_kv_init(kv, N_SLOTS, N_LAYERS, MAX_POS, kv_dim, &err) != MDI_OK)
        fail_msg("mdi_kv_init: %s", err.msg);
}

/* Random keys and values for every position of (slot, layer). Scale 3 keeps
 * scores (|q.k| / 4 up to ~10) large enough that softmax is far from uniform. */
static void fill_history(mdi_kv_cache *kv, size_t slot, size_t layer, uint64_t seed)
{
    fill(mdi_kv_key(kv, slot, layer, 0), MAX_POS * kv->kv_dim, seed, 3.0f);
    fill(mdi_kv_value(kv, slot, layer, 0), MAX_POS * kv->kv_dim, seed + 1, 1.0f);
}

/* Naive attention of query heads [h0, h1) in double, with a per-element error
 * bound: every score is a float dot of head_dim terms, wrong by at most
 * (head_dim/8 + 12) eps * sum |q k| * scale (see mdi_dot); a score error e
 * moves each probability by a relative 2e, softmax adds (n + span/2 + 4) eps
 * relative (as in test_tensor), and the weighted sum of n rows adds
 * (n + 2) eps * sum p |v|. */
static void attention_ref(double *out, double *tol, const float *q, const mdi_kv_cache *kv,
                          size_t slot, size_t layer, size_t pos, const mdi_attn_shape *sh,
                          size_t h0, size_t h1)
{
    size_t hd = sh->head_dim, group = sh->n_heads / sh->n_kv_heads, n = pos + 1;
    double scale = 1.0 / sqrt((double)hd), p[MAX_POS];
    for (size_t h = h0; h < h1; h++) {
        const float *qh = q + h * hd;
        size_t off = (h / group) * hd;
        double m = -INFINITY, lo = INFINITY, sum = 0.0, score_err = 0.0;
        for (size_t t = 0; t < n; t++) {
            const float *k = mdi_kv_key(kv, slot, layer, t) + off;
            double s = 0.0, mag = 0.0;
            for (size_t i = 0; i < hd; i++) {
                s += (double)qh[i] * k[i];
                mag += fabs((double)qh[i] * k[i]);
            }
            p[t] = s * scale;
            score_err = fmax(score_err, ((double)hd / 8.0 + 12.0) * FLT_EPSILON * mag * scale);
            m = fmax(m, p[t]);
            lo = fmin(lo, p[t]);
        }
        for (size_t t = 0; t < n; t++)
            sum += (p[t] = exp(p[t] - m));
        double rel_p = 2.0 * score_err + ((double)n + (m - lo) / 2.0 + 4.0) * FLT_EPSILON;
        for (size_t i = 0; i < hd; i++) {
            double o = 0.0, mag = 0.0;
            for (size_t t = 0; t < n; t++) {
                double vt = mdi_kv_value(kv, slot, layer, t)[off + i];
                o += p[t] / sum * vt;
                mag += p[t] / sum * fabs(vt);
            }
            out[h * hd + i] = o;
            tol[h * hd + i] = (rel_p + ((double)n + 2.0) * FLT_EPSILON) * mag + 1e-30;
        }
    }
}

/* Run mdi_attention for heads [h0, h1) on a poisoned output and compare: the
 * heads in range match the reference, the others keep the poison bit for bit.
 * scores has exactly the room the header asks for, so ASan sees any overrun. */
static void check_attention(const mdi_kv_cache *kv, const float *q, size_t slot, size_t layer,
                            size_t pos, const mdi_attn_shape *sh, size_t h0, size_t h1)
{
    size_t qd = sh->n_heads * sh->head_dim;
    size_t n_scores = (pos + 1) * mdi_attn_heads_at_once(sh, h1 - h0);
    float *out = malloc(qd * sizeof(float)),
          *scores = malloc((n_scores ? n_scores : 1) * sizeof(float));
    double *ref = calloc(qd, sizeof(double)), *tol = calloc(qd, sizeof(double));
    assert_true(out && scores && ref && tol);
    for (size_t i = 0; i < qd; i++)
        out[i] = POISON;
    mdi_attention(out, q, kv, slot, layer, pos, sh, h0, h1, scores);
    attention_ref(ref, tol, q, kv, slot, layer, pos, sh, h0, h1);
    for (size_t h = 0; h < sh->n_heads; h++)
        for (size_t i = 0; i < sh->head_dim; i++) {
            size_t j = h * sh->head_dim + i;
            if (h < h0 || h >= h1) {
                if (out[j] != POISON)
                    fail_msg("head %zu outside [%zu, %zu) was written", h, h0, h1);
            } else if (!(fabs(out[j] - ref[j]) <= tol[j])) {
                fail_msg("attention kv_heads=%zu slot=%zu layer=%zu pos=%zu head %zu [%zu]: "
                         "%.9g, want %.9g (tol %.3g)",
                         sh->n_kv_heads, slot, layer, pos, h, i, (double)out[j], ref[j], tol[j]);
            }
        }
    free(out), free(scores), free(ref), free(tol);
}

static void gqa_case(size_t n_kv_heads)
{
    mdi_attn_shape sh = {N_HEADS, n_kv_heads, HEAD_DIM};
    mdi_kv_cache kv;
    make_cache(&kv, n_kv_heads * HEAD_DIM);
    for (size_t s = 0; s < N_SLOTS; s++)
        for (size_t l = 0; l < N_LAYERS; l++)
            fill_history(&kv, s, l, 1000 * n_kv_heads + 10 * s + 2 * l);
    float q[N_HEADS * HEAD_DIM];
    const size_t positions[] = {0, 1, 2, 6, MAX_POS - 1};
    for (size_t c = 0; c < sizeof positions / sizeof positions[0]; c++) {
        fill(q, N_HEADS * HEAD_DIM, 77 + c, 1.0f);
        for (size_t s = 0; s < N_SLOTS; s++)
            for (size_t l = 0; l < N_LAYERS; l++) {
                check_attention(&kv, q, s, l, positions[c], &sh, 0, N_HEADS);
                check_attention(&kv, q, s, l, positions[c], &sh, 3, 6);
                check_attention(&kv, q, s, l, positions[c], &sh, 7, 8);
                check_attention(&kv, q, s, l, positions[c], &sh, 2, 2); /* no heads */
            }
    }
    mdi_kv_free(&kv);
}

static void test_gqa_group_4(void **state)
{
    (void)state;
    gqa_case(2);
}

static void test_mha(void **state)
{
    (void)state;
    gqa_case(N_HEADS);
}

static void test_mqa(void **state)
{
    (void)state;
    gqa_case(1);
}

/* At pos 0 the output is the value row itself, whatever the query. */
static void test_first_position_is_value(void **state)
{
    (void)state;
    mdi_attn_shape sh = {N_HEADS, 2, HEAD_DIM};
    mdi_kv_cache kv;
    make_cache(&kv, 2 * HEAD_DIM);
    fill_history(&kv, 1, 1, 5);
    float q[N_HEADS * HEAD_DIM], out[N_HEADS * HEAD_DIM], scores[4]; /* 4 heads per KV head */
    fill(q, N_HEADS * HEAD_DIM, 6, 5.0f);
    mdi_attention(out, q, &kv, 1, 1, 0, &sh, 0, N_HEADS, scores);
    for (size_t h = 0; h < N_HEADS; h++)
        assert_memory_equal(out + h * HEAD_DIM, mdi_kv_value(&kv, 1, 1, 0) + (h / 4) * HEAD_DIM,
                            HEAD_DIM * sizeof(float));
    mdi_kv_free(&kv);
}

/* Positions after pos, other layers and the other slot never affect the result. */
static void test_causal_and_isolated(void **state)
{
    (void)state;
    mdi_attn_shape sh = {N_HEADS, 2, HEAD_DIM};
    size_t kvd = 2 * HEAD_DIM, qd = N_HEADS * HEAD_DIM, pos = 5;
    mdi_kv_cache kv;
    make_cache(&kv, kvd);
    for (size_t s = 0; s < N_SLOTS; s++)
        for (size_t l = 0; l < N_LAYERS; l++)
            fill_history(&kv, s, l, 50 + 10 * s + 2 * l);
    float q[N_HEADS * HEAD_DIM], before[N_HEADS * HEAD_DIM], after[N_HEADS * HEAD_DIM];
    float scores[MAX_POS * 4]; /* 4 heads per KV head */
    fill(q, qd, 3, 1.0f);
    mdi_attention(before, q, &kv, 0, 1, pos, &sh, 0, N_HEADS, scores);

    /* the future of (0, 1): huge values would dominate if they were read */
    for (size_t t = pos + 1; t < MAX_POS; t++)
        for (size_t i = 0; i < kvd; i++) {
            mdi_kv_key(&kv, 0, 1, t)[i] = 1e4f;
            mdi_kv_value(&kv, 0, 1, t)[i] = -1e6f;
        }
    /* slot 1 entirely, and layer 0 of slot 0 */
    for (size_t l = 0; l < N_LAYERS; l++)
        fill_history(&kv, 1, l, 900 + l);
    fill_history(&kv, 0, 0, 950);
    mdi_attention(after, q, &kv, 0, 1, pos, &sh, 0, N_HEADS, scores);
    assert_memory_equal(before, after, sizeof before);

    /* and the rewritten slot 1 is what its own results now reflect */
    check_attention(&kv, q, 1, 0, pos, &sh, 0, N_HEADS);
    check_attention(&kv, q, 1, 1, MAX_POS - 1, &sh, 0, N_HEADS);
    mdi_kv_free(&kv);
}

static void test_kv_layout(void **state)
{
    (void)state;
    mdi_kv_cache kv;
    size_t kvd = 24;
    make_cache(&kv, kvd);
    assert_int_equal(kv.n_slots, N_SLOTS);
    assert_int_equal(kv.n_layers, N_LAYERS);
    assert_int_equal(kv.max_pos, MAX_POS);
    assert_int_equal(kv.kv_dim, kvd);
    size_t n = (size_t)N_SLOTS * N_LAYERS * MAX_POS * kvd;
    assert_int_equal(mdi_kv_bytes(&kv), 2 * n * sizeof(float));
    /* zeroed, and every element addressable (ASan) */
    for (size_t i = 0; i < n; i++)
        assert_true(kv.k[i] == 0.0f && kv.v[i] == 0.0f);
    /* (slot, layer, pos, kv_dim): one slot's history of one layer is contiguous */
    for (size_t s = 0; s < N_SLOTS; s++)
        for (size_t l = 0; l < N_LAYERS; l++)
            for (size_t p = 0; p < MAX_POS; p++) {
                size_t off = ((s * N_LAYERS + l) * MAX_POS + p) * kvd;
                assert_ptr_equal(mdi_kv_key(&kv, s, l, p), kv.k + off);
                assert_ptr_equal(mdi_kv_value(&kv, s, l, p), kv.v + off);
            }
    assert_ptr_equal(mdi_kv_key(&kv, N_SLOTS - 1, N_LAYERS - 1, MAX_POS - 1) + kvd, kv.k + n);
    mdi_kv_free(&kv);
    assert_null(kv.k);
    assert_null(kv.v);
    mdi_kv_free(&kv); /* a second free is harmless */

    make_cache(&kv, 1);
    assert_int_equal(mdi_kv_bytes(&kv), 2 * N_SLOTS * N_LAYERS * MAX_POS * sizeof(float));
    mdi_kv_free(&kv);
}

/* init fails with want; the cache is left empty and safe to free. */
static void expect_kv_error(size_t slots, size_t layers, size_t pos, size_t kvd, mdi_status want)
{
    mdi_kv_cache kv;
    mdi_err err;
    mdi_err_clear(&err);
    mdi_status s = mdi_kv_init(&kv, slots, layers, pos, kvd, &err);
    if (s != want)
        fail_msg("mdi_kv_init(%zu, %zu, %zu, %zu) = %d, want %d", slots, layers, pos, kvd, s, want);
    assert_int_equal(err.status, want);
    assert_true(err.msg[0] != '\0');
    assert_null(kv.k);
    assert_null(kv.v);
    assert_int_equal(mdi_kv_bytes(&kv), 0);
    mdi_kv_free(&kv);
}

static void test_kv_init_errors(void **state)
{
    (void)state;
    expect_kv_error(0, 2, 8, 16, MDI_ERR_ARG);
    expect_kv_error(2, 0, 8, 16, MDI_ERR_ARG);
    expect_kv_error(2, 2, 0, 16, MDI_ERR_ARG);
    expect_kv_error(2, 2, 8, 0, MDI_ERR_ARG);
    /* every product that can wrap: slots*layers, *max_pos, *kv_dim, and the
     * byte count of k plus v (2 * 4 bytes per element) */
    expect_kv_error(SIZE_MAX / 2 + 1, 2, 1, 1, MDI_ERR_RANGE);
    expect_kv_error(1 << 20, 1 << 20, SIZE_MAX >> 39, 1, MDI_ERR_RANGE);
    expect_kv_error(1 << 16, 1 << 16, 1 << 16, 1 << 16, MDI_ERR_RANGE);
    expect_kv_error(1, 1, 1, SIZE_MAX / 8 + 1, MDI_ERR_RANGE);
    expect_kv_error(2, 1, 1, SIZE_MAX / 16 + 1, MDI_ERR_RANGE);
    expect_kv_error(1, 1, 2, (SIZE_MAX >> 4) + 1, MDI_ERR_RANGE);
    /* err may be NULL */
    mdi_kv_cache kv;
    assert_int_equal(mdi_kv_init(&kv, 0, 1, 1, 1, NULL), MDI_ERR_ARG);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gqa_group_4),
        cmocka_unit_test(test_mha),
        cmocka_unit_test(test_mqa),
        cmocka_unit_test(test_first_position_is_value),
        cmocka_unit_test(test_causal_and_isolated),
        cmocka_unit_test(test_kv_layout),
        cmocka_unit_test(test_kv_init_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

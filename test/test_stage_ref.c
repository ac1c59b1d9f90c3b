/* The forward pass against llama2.c's reference logits for stories260K, and
 * batched (prefill block) against one-row-at-a-time evaluation. Weights are
 * read straight from the llama2.c checkpoint, so this checks the numerics
 * independently of the converter and the HDF5 loader. */
#include "test_util.h"

#include <math.h>
#include <string.h>

#include "mdi/stage.h"

#define N_POS 64
static const int32_t ref_ids[N_POS] = {
    1,   403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426,
    338, 401, 396, 267, 337, 410, 408, 419, 292, 411, 322, 265, 282, 295, 433, 426,
    385, 328, 432, 358, 394, 261, 370, 432, 352, 266, 268, 388, 426, 338, 391, 266,
    267, 337, 335, 312, 432, 398, 312, 286, 267, 414, 270, 333, 415, 426, 13,  438};

/* Fill a stage from a llama2.c v0 checkpoint (header already parsed into c). */
static void load_llama2c(FILE *f, mdi_stage *st)
{
    const mdi_config *c = &st->cfg;
    size_t L = (size_t)c->n_layers, dim = (size_t)c->dim;
    mdi_tensor_kind order[] = {MDI_T_ATTN_NORM, MDI_T_WQ, MDI_T_WK, MDI_T_WV, MDI_T_WO,
                               MDI_T_FFN_NORM,  MDI_T_W1, MDI_T_W2, MDI_T_W3};
    assert_int_equal(fread(st->embedding, sizeof(float), (size_t)c->vocab_size * dim, f),
                     (size_t)c->vocab_size * dim);
    for (size_t k = 0; k < sizeof order / sizeof order[0]; k++) {
        size_t r, cl;
        mdi_tensor_shape(c, order[k], &r, &cl);
        for (size_t l = 0; l < L; l++)
            assert_int_equal(
                fread(mdi_stage_tensor(st, order[k], (int32_t)l), sizeof(float), r * cl, f),
                r * cl);
    }
    assert_int_equal(fread(st->final_norm, sizeof(float), dim, f), dim);
}

static void open_stage_kernel(mdi_stage *st, size_t max_rows, size_t slots, int prompt_blis)
{
    char path[1024];
    if (!mdi_test_model_path("stories260K/stories260K.bin", path, sizeof path))
        return;
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    int32_t h[7];
    assert_int_equal(fread(h, sizeof h[0], 7, f), 7);
    mdi_config c = {.dim = h[0],
                    .hidden_dim = h[1],
                    .n_layers = h[2],
                    .n_heads = h[3],
                    .n_kv_heads = h[4],
                    .head_dim = h[0] / h[3],
                    .vocab_size = h[5],
                    .max_seq_len = h[6],
                    .rope_theta = 10000.0f,
                    .norm_eps = 1e-5f,
                    .tied_head = 1};
    mdi_err err;
    assert_int_equal(mdi_config_validate(&c, &err), MDI_OK);
    mdi_stage_params p = {.half_first = 0,
                          .half_last = 2 * c.n_layers,
                          .has_extras = 1,
                          .n_slots = slots,
                          .max_pos = N_POS,
                          .max_rows = max_rows,
                          .max_logit_rows = max_rows,
                          .n_threads = 1,
                          .prompt_blis = prompt_blis};
    assert_int_equal(mdi_stage_init(st, &c, &p, &err), MDI_OK);
    load_llama2c(f, st);
    fclose(f);
}

/* A stage whose prompt rows take the fastest kernel (the engine's choice). */
static void open_stage(mdi_stage *st, size_t max_rows, size_t slots)
{
    open_stage_kernel(st, max_rows, slots, 0);
}

static float *read_ref_logits(size_t vocab)
{
    char path[1024];
    if (!mdi_test_model_path("stories260K/ref-p1-logits.f32", path, sizeof path))
        return NULL;
    float *ref = malloc(N_POS * vocab * sizeof(float));
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    assert_int_equal(fread(ref, sizeof(float), N_POS * vocab, f), N_POS * vocab);
    fclose(f);
    return ref;
}

/* Max relative error of logits (n_pos, vocab) against the reference, scaled by
 * the row's largest magnitude so near-zero logits do not dominate. */
static double max_rel_err(const float *got, const float *ref, size_t n_pos, size_t vocab)
{
    double worst = 0;
    for (size_t p = 0; p < n_pos; p++) {
        double scale = 0;
        for (size_t v = 0; v < vocab; v++)
            scale = fmax(scale, fabs(ref[p * vocab + v]));
        for (size_t v = 0; v < vocab; v++)
            worst = fmax(worst, fabs(got[p * vocab + v] - ref[p * vocab + v]) / scale);
    }
    return worst;
}

/* One row at a time, like llama2.c: logits after every position. */
static void test_logits_one_by_one(void **state)
{
    (void)state;
    mdi_stage st;
    open_stage(&st, 1, 1);
    size_t vocab = (size_t)st.cfg.vocab_size, dim = (size_t)st.cfg.dim;
    float *ref = read_ref_logits(vocab), *got = malloc(N_POS * vocab * sizeof(float));
    float *x = malloc(dim * sizeof(float));
    for (int32_t p = 0; p < N_POS; p++) {
        mdi_row row = {0, p};
        mdi_stage_embed(&st, &ref_ids[p], 1, x);
        mdi_stage_forward(&st, x, &row, 1);
        mdi_stage_logits(&st, x, 1, got + (size_t)p * vocab);
    }
    double e = max_rel_err(got, ref, N_POS, vocab);
    fprintf(stderr, "one-by-one: max relative logit error %.3g\n", e);
    assert_true(e < 1e-4);
    /* greedy ids follow the reference sequence */
    for (int32_t p = 4; p + 1 < N_POS; p++) {
        size_t best = 0;
        for (size_t v = 1; v < vocab; v++)
            if (got[p * vocab + v] > got[p * vocab + best])
                best = v;
        assert_int_equal((int32_t)best, ref_ids[p + 1]);
    }
    free(ref), free(got), free(x);
    mdi_stage_free(&st);
}

/* The whole sequence as one block (prefill), and in blocks of 7 rows, with
 * prompt rows through BLIS (prompt_blis 1) or the engine's choice (0). */
static void check_blocks(int prompt_blis)
{
    mdi_stage st, one;
    open_stage_kernel(&st, N_POS, 2, prompt_blis);
    open_stage_kernel(&one, 1, 1, prompt_blis);
    size_t vocab = (size_t)st.cfg.vocab_size, dim = (size_t)st.cfg.dim;
    float *ref = read_ref_logits(vocab), *got = malloc(N_POS * vocab * sizeof(float));
    float *base = malloc(N_POS * vocab * sizeof(float));
    float *x = malloc(N_POS * dim * sizeof(float));
    mdi_row rows[N_POS];
    for (int32_t p = 0; p < N_POS; p++) {
        rows[p].slot = 0;
        rows[p].pos = p;
        mdi_row r1 = {0, p};
        mdi_stage_embed(&one, &ref_ids[p], 1, x);
        mdi_stage_forward(&one, x, &r1, 1);
        mdi_stage_logits(&one, x, 1, base + (size_t)p * vocab);
    }
    mdi_stage_embed(&st, ref_ids, N_POS, x);
    mdi_stage_forward(&st, x, rows, N_POS);
    mdi_stage_logits(&st, x, N_POS, got);
    double e = max_rel_err(got, ref, N_POS, vocab), eb = max_rel_err(got, base, N_POS, vocab);
    fprintf(stderr, "%s, block of 64: vs reference %.3g, vs one-by-one %.3g\n",
            prompt_blis ? "BLIS" : "engine's kernel", e, eb);
    assert_true(e < 1e-4);
    assert_true(eb < 1e-5);
    /* a block the streaming kernel takes gives every row's bits unchanged */
    if (!prompt_blis && N_POS <= mdi_matmul_stream_max_rows())
        assert_memory_equal(got, base, N_POS * vocab * sizeof(float));
    /* slot 1 in blocks of 7: same logits as slot 0's single block */
    for (int32_t p0 = 0; p0 < N_POS; p0 += 7) {
        int32_t n = p0 + 7 > N_POS ? N_POS - p0 : 7;
        for (int32_t j = 0; j < n; j++)
            rows[j] = (mdi_row){1, p0 + j};
        mdi_stage_embed(&st, ref_ids + p0, (size_t)n, x);
        mdi_stage_forward(&st, x, rows, (size_t)n);
        mdi_stage_logits(&st, x, (size_t)n, got + (size_t)p0 * vocab);
    }
    eb = max_rel_err(got, base, N_POS, vocab);
    fprintf(stderr, "blocks of 7 in slot 1: vs one-by-one %.3g\n", eb);
    assert_true(eb < 1e-5);
    if (!prompt_blis && N_POS <= mdi_matmul_stream_max_rows())
        assert_memory_equal(got, base, N_POS * vocab * sizeof(float));
    free(ref), free(got), free(base), free(x);
    mdi_stage_free(&st);
    mdi_stage_free(&one);
}

static void test_logits_blocks(void **state)
{
    (void)state;
    check_blocks(0);
}

static void test_logits_blocks_blis(void **state)
{
    (void)state;
    check_blocks(1);
}

/* Generated-token rows (streamed) against prompt rows (sgemm): the same
 * logits to 1e-5, and a streamed row is bit-identical whatever shares its call. */
static void test_stream_rows(void **state)
{
    (void)state;
    mdi_stage a, b;
    open_stage_kernel(&a, 8, 2, 1);
    open_stage_kernel(&b, 8, 2, 1);
    size_t vocab = (size_t)a.cfg.vocab_size, dim = (size_t)a.cfg.dim;
    float *xa = malloc(8 * dim * sizeof(float)), *xb = malloc(8 * dim * sizeof(float));
    float *la = malloc(8 * vocab * sizeof(float)), *lb = malloc(8 * vocab * sizeof(float));
    mdi_row rows[8];
    double worst = 0;
    for (int32_t p = 0; p < 40; p++) {
        /* stage a: slot 0 alone, streamed; stage b: slot 0 streamed + 3 prompt rows of slot 1 */
        rows[0] = (mdi_row){0, p};
        mdi_stage_embed(&a, &ref_ids[p], 1, xa);
        mdi_stage_forward_mixed(&a, xa, rows, 1, 1);
        for (int32_t j = 0; j < 3; j++)
            rows[1 + j] = (mdi_row){1, 3 * p + j};
        int32_t toks[4] = {ref_ids[p], ref_ids[(3 * p) % N_POS], ref_ids[(3 * p + 1) % N_POS],
                           ref_ids[(3 * p + 2) % N_POS]};
        if (3 * p + 2 < N_POS) {
            mdi_stage_embed(&b, toks, 4, xb);
            mdi_stage_forward_mixed(&b, xb, rows, 4, 1);
            assert_memory_equal(xa, xb, dim * sizeof(float));
        }
        /* the same position through sgemm in slot 1 of stage a */
        rows[0] = (mdi_row){1, p};
        mdi_stage_embed(&a, &ref_ids[p], 1, xb);
        mdi_stage_forward_mixed(&a, xb, rows, 1, 0);
        mdi_stage_logits(&a, xa, 1, la);
        mdi_stage_logits(&a, xb, 1, lb);
        worst = fmax(worst, max_rel_err(la, lb, 1, vocab));
    }
    fprintf(stderr, "streamed vs sgemm rows: max relative logit difference %.3g\n", worst);
    assert_true(worst < 1e-5);
    free(xa), free(xb), free(la), free(lb);
    mdi_stage_free(&a);
    mdi_stage_free(&b);
}

/* Which kernel prompt rows take (mdi_stage_forward_mixed): the streaming
 * kernel in a stage whose calls stay within mdi_matmul_stream_max_rows()
 * rows, so bit for bit what a generated row gets; BLIS in a larger stage, so
 * bit for bit what a stage forced to BLIS gets. The two kernels differ in
 * the last bits somewhere over these positions, which makes both checks
 * telling. */
static void test_prompt_kernel_choice(void **state)
{
    (void)state;
    size_t lim = mdi_matmul_stream_max_rows();
    mdi_stage small, big, blis;
    open_stage_kernel(&small, lim < 8 ? lim : 8, 2, 0);
    open_stage_kernel(&big, lim + 1, 1, 0);
    open_stage_kernel(&blis, lim + 1, 1, 1);
    size_t dim = (size_t)small.cfg.dim;
    float *xa = malloc(dim * sizeof(float)), *xb = malloc(dim * sizeof(float));
    float *xc = malloc(dim * sizeof(float)), *xd = malloc(dim * sizeof(float));
    int differ = 0;
    for (int32_t p = 0; p < N_POS; p++) {
        mdi_row r0 = {0, p}, r1 = {1, p};
        mdi_stage_embed(&small, &ref_ids[p], 1, xa);
        mdi_stage_forward_mixed(&small, xa, &r0, 1, 0); /* a prompt row */
        mdi_stage_embed(&small, &ref_ids[p], 1, xb);
        mdi_stage_forward_mixed(&small, xb, &r1, 1, 1); /* a generated row */
        assert_memory_equal(xa, xb, dim * sizeof(float));
        mdi_stage_embed(&big, &ref_ids[p], 1, xc);
        mdi_stage_forward_mixed(&big, xc, &r0, 1, 0);
        mdi_stage_embed(&blis, &ref_ids[p], 1, xd);
        mdi_stage_forward_mixed(&blis, xd, &r0, 1, 0);
        assert_memory_equal(xc, xd, dim * sizeof(float));
        differ |= memcmp(xa, xc, dim * sizeof(float)) != 0;
    }
    assert_true(differ);
    free(xa), free(xb), free(xc), free(xd);
    mdi_stage_free(&small);
    mdi_stage_free(&big);
    mdi_stage_free(&blis);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_logits_one_by_one),    cmocka_unit_test(test_logits_blocks),
        cmocka_unit_test(test_logits_blocks_blis),   cmocka_unit_test(test_stream_rows),
        cmocka_unit_test(test_prompt_kernel_choice),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

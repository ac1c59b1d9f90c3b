/* Layer placement: the balanced plan against a brute force over every
 * contiguous partition, explicit splits and their parser, and the agreement
 * checks over what every rank found (whole files, shards, mixtures). */
#include "test_util.h"

#include "mdi/plan.h"

#define MAX_RANKS 8

/* TinyLlama-1.1B: 22 layers, untied head. */
static const mdi_config tiny_llama = {.dim = 2048,
                                      .hidden_dim = 5632,
                                      .n_layers = 22,
                                      .n_heads = 32,
                                      .n_kv_heads = 4,
                                      .head_dim = 64,
                                      .vocab_size = 32000,
                                      .max_seq_len = 2048,
                                      .rope_theta = 10000.0f,
                                      .norm_eps = 1e-5f,
                                      .tied_head = 0};

/* Worked out by hand for TinyLlama: norms 2*2048, wq and wo 2048*2048 each,
 * wk and wv 256*2048 each, w1 w2 w3 5632*2048 each; extras are the embedding
 * and the head (32000*2048 each) and the final norm (2048). */
#define TL_LAYER 44044288ull
#define TL_EXTRA 131074048ull

/* Bytes rank r holds with `count` layers: the hand-made twin of
 * mdi_plan_rank_bytes. */
static uint64_t bytes_of(uint64_t layer, uint64_t extra, int32_t r, int32_t count)
{
    return ((uint64_t)count * layer + (r == 0 ? extra : 0)) * 4;
}

/* Smallest possible largest-rank byte count over all contiguous partitions of
 * L layers into n non-empty ranges, by enumeration. */
static uint64_t brute_min_max(int32_t L, int32_t n, int32_t r, uint64_t layer, uint64_t extra,
                              uint64_t worst_so_far)
{
    if (r == n - 1)
        return worst_so_far > bytes_of(layer, extra, r, L) ? worst_so_far
                                                           : bytes_of(layer, extra, r, L);
    uint64_t best = UINT64_MAX;
    for (int32_t k = 1; k <= L - (n - 1 - r); k++) {
        uint64_t b = bytes_of(layer, extra, r, k), w = b > worst_so_far ? b : worst_so_far;
        uint64_t m = brute_min_max(L - k, n, r + 1, layer, extra, w);
        if (m < best)
            best = m;
    }
    return best;
}

/* bounds are a valid plan: start at 0, end at L, every range non-empty. */
static void check_bounds(const int32_t *bounds, int32_t n, int32_t L)
{
    assert_int_equal(bounds[0], 0);
    assert_int_equal(bounds[n], L);
    for (int32_t r = 0; r < n; r++)
        if (bounds[r + 1] <= bounds[r])
            fail_msg("rank %d of %d has the empty or reversed range [%d, %d)", r, n, bounds[r],
                     bounds[r + 1]);
}

static uint64_t plan_max_bytes(const mdi_config *c, const int32_t *bounds, int32_t n)
{
    uint64_t worst = 0;
    for (int32_t r = 0; r < n; r++) {
        uint64_t b = mdi_plan_rank_bytes(c, bounds, r);
        worst = b > worst ? b : worst;
    }
    return worst;
}

static void test_param_counts(void **state)
{
    (void)state;
    assert_int_equal(mdi_config_layer_params(&tiny_llama), TL_LAYER);
    assert_int_equal(mdi_config_extra_params(&tiny_llama), TL_EXTRA);
    int32_t b[3] = {0, 10, 22};
    assert_int_equal(mdi_plan_rank_bytes(&tiny_llama, b, 0), (10 * TL_LAYER + TL_EXTRA) * 4);
    assert_int_equal(mdi_plan_rank_bytes(&tiny_llama, b, 1), 12 * TL_LAYER * 4);
}

static void test_balanced_tinyllama(void **state)
{
    (void)state;
    /* The extras weigh ~2.98 layers, so rank 0 takes about three fewer. */
    const int32_t want[6][MAX_RANKS] = {
        {0}, {0, 22}, {0, 10, 22}, {0, 6, 14, 22}, {0, 4, 10, 16, 22}, {0, 2, 7, 12, 17, 22}};
    for (int32_t n = 1; n <= 5; n++) {
        int32_t bounds[MAX_RANKS + 1];
        mdi_err err;
        if (mdi_plan_balanced(&tiny_llama, n, bounds, &err) != MDI_OK)
            fail_msg("%d ranks: %s", n, err.msg);
        check_bounds(bounds, n, 22);
        for (int32_t r = 0; r <= n; r++)
            assert_int_equal(bounds[r], want[n][r]);
        for (int32_t r = 1; r < n; r++)
            assert_true(bounds[1] - bounds[0] < bounds[r + 1] - bounds[r]);
        uint64_t best = brute_min_max(22, n, 0, TL_LAYER, TL_EXTRA, 0);
        assert_int_equal(plan_max_bytes(&tiny_llama, bounds, n), best);
    }
}

/* Every small geometry: layer counts 1..9, extras from none to many layers'
 * worth, every rank count up to the layer count: the plan is valid and its
 * largest rank is as small as any contiguous partition allows. */
static void test_balanced_is_optimal(void **state)
{
    (void)state;
    const int32_t vocabs[] = {1, 3, 16, 64, 200, 1000};
    for (int32_t L = 1; L <= 9; L++)
        for (size_t v = 0; v < sizeof vocabs / sizeof vocabs[0]; v++)
            for (int32_t tied = 0; tied <= 1; tied++) {
                mdi_config c = {.dim = 8,
                                .hidden_dim = 16,
                                .n_layers = L,
                                .n_heads = 2,
                                .n_kv_heads = 1,
                                .head_dim = 4,
                                .vocab_size = vocabs[v],
                                .max_seq_len = 16,
                                .rope_theta = 10000.0f,
                                .norm_eps = 1e-5f,
                                .tied_head = tied};
                uint64_t layer = mdi_config_layer_params(&c), extra = mdi_config_extra_params(&c);
                for (int32_t n = 1; n <= L && n <= MAX_RANKS; n++) {
                    int32_t bounds[MAX_RANKS + 1];
                    mdi_err err;
                    assert_int_equal(mdi_plan_balanced(&c, n, bounds, &err), MDI_OK);
                    check_bounds(bounds, n, L);
                    uint64_t got = plan_max_bytes(&c, bounds, n);
                    uint64_t best = brute_min_max(L, n, 0, layer, extra, 0);
                    if (got != best)
                        fail_msg("L=%d vocab=%d tied=%d n=%d: largest rank %llu bytes, best %llu",
                                 L, vocabs[v], tied, n, (unsigned long long)got,
                                 (unsigned long long)best);
                }
            }
}

static void test_balanced_errors(void **state)
{
    (void)state;
    int32_t bounds[32];
    mdi_err err;
    mdi_err_clear(&err);
    assert_int_equal(mdi_plan_balanced(&tiny_llama, 23, bounds, &err), MDI_ERR_RANGE);
    assert_int_equal(err.status, MDI_ERR_RANGE);
    assert_non_null(strstr(err.msg, "22 layers"));
    assert_int_equal(mdi_plan_balanced(&tiny_llama, 0, bounds, &err), MDI_ERR_ARG);
    assert_int_equal(mdi_plan_balanced(&tiny_llama, -2, bounds, &err), MDI_ERR_ARG);
    /* one layer per rank is still fine */
    assert_int_equal(mdi_plan_balanced(&tiny_llama, 22, bounds, &err), MDI_OK);
    check_bounds(bounds, 22, 22);
}

static void test_from_counts(void **state)
{
    (void)state;
    int32_t bounds[8];
    mdi_err err;
    const int32_t ok[] = {3, 9, 10};
    assert_int_equal(mdi_plan_from_counts(&tiny_llama, ok, 3, bounds, &err), MDI_OK);
    const int32_t want[] = {0, 3, 12, 22};
    assert_memory_equal(bounds, want, sizeof want);
    const int32_t one[] = {22};
    assert_int_equal(mdi_plan_from_counts(&tiny_llama, one, 1, bounds, &err), MDI_OK);
    assert_int_equal(bounds[1], 22);

    const int32_t bad[][3] = {{3, 9, 9},   {3, 9, 11},  {30, 1, 1},
                              {0, 12, 10}, {12, 10, 0}, {-1, 13, 10}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        mdi_err_clear(&err);
        mdi_status s = mdi_plan_from_counts(&tiny_llama, bad[i], 3, bounds, &err);
        if (s == MDI_OK)
            fail_msg("counts {%d, %d, %d} accepted", bad[i][0], bad[i][1], bad[i][2]);
        assert_int_equal(err.status, s);
        assert_true(err.msg[0] != '\0');
    }
}

/* Parse text with room for cap entries; expect failure. */
static void expect_parse_error(const char *text, int32_t cap)
{
    int32_t counts[8], n = -7;
    mdi_err err;
    mdi_err_clear(&err);
    mdi_status s = mdi_plan_parse_split(text, counts, cap, &n, &err);
    if (s == MDI_OK)
        fail_msg("--split '%s' (cap %d) parsed as %d entries", text ? text : "(null)", cap, n);
    assert_int_equal(err.status, s);
    assert_true(err.msg[0] != '\0');
}

static void test_parse_split(void **state)
{
    (void)state;
    int32_t counts[8], n = 0;
    mdi_err err;
    assert_int_equal(mdi_plan_parse_split("2,4,4", counts, 8, &n, &err), MDI_OK);
    assert_int_equal(n, 3);
    assert_int_equal(counts[0], 2);
    assert_int_equal(counts[1], 4);
    assert_int_equal(counts[2], 4);
    assert_int_equal(mdi_plan_parse_split("22", counts, 1, &n, &err), MDI_OK);
    assert_int_equal(n, 1);
    assert_int_equal(counts[0], 22);
    assert_int_equal(mdi_plan_parse_split("1,2,3", counts, 3, &n, &err), MDI_OK); /* full */
    assert_int_equal(n, 3);

    expect_parse_error("", 8);
    expect_parse_error(NULL, 8);
    expect_parse_error("2,,4", 8);
    expect_parse_error("2,x", 8);
    expect_parse_error("2x", 8);
    expect_parse_error("-1", 8);
    expect_parse_error("0", 8);
    expect_parse_error("2,0,4", 8);
    expect_parse_error("2,4,", 8);
    expect_parse_error(",2,4", 8);
    expect_parse_error("2;4", 8);
    expect_parse_error("1,1,1,1", 3); /* too many entries */
    expect_parse_error("1", 0);
    expect_parse_error("4097", 8); /* beyond MDI_MAX_LAYERS */
    expect_parse_error("99999999999999999999999", 8);
}

/* ---- mdi_plan_check ------------------------------------------------------------ */

static mdi_shard_info make_info(const mdi_config *c, const char *id, int32_t first, int32_t last,
                                int32_t index, int32_t count)
{
    mdi_shard_info in;
    memset(&in, 0, sizeof in);
    in.format_version = 1;
    snprintf(in.model_id, sizeof in.model_id, "%s", id);
    in.cfg = *c;
    in.layer_first = first;
    in.layer_last = last;
    in.shard_index = index;
    in.shard_count = count;
    snprintf(in.dtype, sizeof in.dtype, "f32");
    in.has_extras = first == 0;
    return in;
}

/* n ranks that each found the whole TinyLlama file. */
static void whole_files(mdi_shard_info *in, int32_t n)
{
    for (int32_t r = 0; r < n; r++)
        in[r] = make_info(&tiny_llama, "0123456789abcdef", 0, 22, 0, 1);
}

/* Three ranks with TinyLlama cut at 7 and 15. */
static void three_shards(mdi_shard_info *in)
{
    const int32_t cut[] = {0, 7, 15, 22};
    for (int32_t r = 0; r < 3; r++)
        in[r] = make_info(&tiny_llama, "0123456789abcdef", cut[r], cut[r + 1], r, 3);
}

/* mdi_plan_check must fail with want and a message containing word. */
static void expect_check_error(const mdi_shard_info *in, int32_t n, const int32_t *counts,
                               int32_t n_counts, mdi_status want, const char *word)
{
    int32_t bounds[MAX_RANKS + 1];
    mdi_err err;
    mdi_err_clear(&err);
    mdi_status s = mdi_plan_check(in, n, counts, n_counts, bounds, &err);
    if (s != want)
        fail_msg("mdi_plan_check returned %d (%s), want %d", s, err.msg, want);
    assert_int_equal(err.status, want);
    if (!strstr(err.msg, word))
        fail_msg("message '%s' does not mention '%s'", err.msg, word);
}

static void test_check_whole_files(void **state)
{
    (void)state;
    mdi_shard_info in[MAX_RANKS];
    int32_t bounds[MAX_RANKS + 1], want[MAX_RANKS + 1];
    mdi_err err;
    for (int32_t n = 1; n <= 5; n++) {
        whole_files(in, n);
        assert_int_equal(mdi_plan_check(in, n, NULL, 0, bounds, &err), MDI_OK);
        assert_int_equal(mdi_plan_balanced(&tiny_llama, n, want, &err), MDI_OK);
        assert_memory_equal(bounds, want, (size_t)(n + 1) * sizeof(int32_t));
    }
    /* with an explicit split */
    whole_files(in, 3);
    const int32_t split[] = {2, 10, 10};
    assert_int_equal(mdi_plan_check(in, 3, split, 3, bounds, &err), MDI_OK);
    const int32_t ws[] = {0, 2, 12, 22};
    assert_memory_equal(bounds, ws, sizeof ws);
    /* a split with the wrong number of entries, or the wrong sum */
    expect_check_error(in, 3, split, 2, MDI_ERR_MISMATCH, "entries");
    const int32_t four[] = {2, 10, 5, 5};
    expect_check_error(in, 3, four, 4, MDI_ERR_MISMATCH, "entries");
    const int32_t short_sum[] = {2, 10, 9};
    expect_check_error(in, 3, short_sum, 3, MDI_ERR_RANGE, "21");
    /* more ranks than layers */
    mdi_config two = tiny_llama;
    two.n_layers = 2;
    for (int32_t r = 0; r < 3; r++)
        in[r] = make_info(&two, "0123456789abcdef", 0, 2, 0, 1);
    expect_check_error(in, 3, NULL, 0, MDI_ERR_RANGE, "layers");
    /* a whole-model file that does not hold every layer */
    whole_files(in, 2);
    in[1].layer_last = 21;
    expect_check_error(in, 2, NULL, 0, MDI_ERR_MISMATCH, "rank 1");
}

static void test_check_shards(void **state)
{
    (void)state;
    mdi_shard_info in[MAX_RANKS];
    int32_t bounds[MAX_RANKS + 1];
    mdi_err err;
    three_shards(in);
    assert_int_equal(mdi_plan_check(in, 3, NULL, 0, bounds, &err), MDI_OK);
    const int32_t want[] = {0, 7, 15, 22};
    assert_memory_equal(bounds, want, sizeof want);
    /* a split that agrees with the shards is accepted, one that does not is not */
    const int32_t agree[] = {7, 8, 7}, disagree[] = {8, 7, 7};
    assert_int_equal(mdi_plan_check(in, 3, agree, 3, bounds, &err), MDI_OK);
    expect_check_error(in, 3, disagree, 3, MDI_ERR_MISMATCH, "split");
    expect_check_error(in, 3, agree, 2, MDI_ERR_MISMATCH, "split");

    /* a gap: rank 1 starts at 8 */
    three_shards(in);
    in[1].layer_first = 8;
    expect_check_error(in, 3, NULL, 0, MDI_ERR_MISMATCH, "gap");
    /* an overlap: rank 2 starts at 14 */
    three_shards(in);
    in[2].layer_first = 14;
    expect_check_error(in, 3, NULL, 0, MDI_ERR_MISMATCH, "overlap");
    /* the last shard stops short of the last layer */
    three_shards(in);
    in[2].layer_last = 21;
    expect_check_error(in, 3, NULL, 0, MDI_ERR_MISMATCH, "22");
    /* a 3-way split started on 2 or 4 ranks */
    three_shards(in);
    expect_check_error(in, 2, NULL, 0, MDI_ERR_MISMATCH, "-np 3");
    in[3] = in[2];
    expect_check_error(in, 4, NULL, 0, MDI_ERR_MISMATCH, "-np 3");
    /* ranks 1 and 2 found each other's shard */
    three_shards(in);
    mdi_shard_info t = in[1];
    in[1] = in[2];
    in[2] = t;
    expect_check_error(in, 3, NULL, 0, MDI_ERR_MISMATCH, "rank 1");
    /* shards of another split of the same model */
    three_shards(in);
    in[1].shard_count = 4;
    expect_check_error(in, 3, NULL, 0, MDI_ERR_MISMATCH, "rank 1");
    /* shards of two different models */
    three_shards(in);
    snprintf(in[2].model_id, sizeof in[2].model_id, "fedcba9876543210");
    expect_check_error(in, 3, NULL, 0, MDI_ERR_MISMATCH, "different models");
    /* the same id but another geometry */
    three_shards(in);
    in[1].cfg.hidden_dim = 5633;
    expect_check_error(in, 3, NULL, 0, MDI_ERR_MISMATCH, "geometry");
    three_shards(in);
    in[2].cfg.rope_theta = 500000.0f;
    expect_check_error(in, 3, NULL, 0, MDI_ERR_MISMATCH, "geometry");
    /* a whole-model file next to shards, either way round */
    three_shards(in);
    in[1] = make_info(&tiny_llama, "0123456789abcdef", 0, 22, 0, 1);
    expect_check_error(in, 3, NULL, 0, MDI_ERR_MISMATCH, "whole-model");
    whole_files(in, 3);
    in[2] = make_info(&tiny_llama, "0123456789abcdef", 15, 22, 2, 3);
    expect_check_error(in, 3, NULL, 0, MDI_ERR_MISMATCH, "whole-model");
    /* more ranks than layers, as shards */
    mdi_config two = tiny_llama;
    two.n_layers = 2;
    for (int32_t r = 0; r < 3; r++)
        in[r] = make_info(&two, "0123456789abcdef", r < 2 ? r : 1, 2, r, 3);
    expect_check_error(in, 3, NULL, 0, MDI_ERR_RANGE, "layers");
}

/* Shards that meet end to start but run backwards in the middle, [0, 7),
 * [7, 5), [5, 22), hold layers 5 and 6 twice: the plan must not accept them
 * as "covering every layer once" (bounds would not be increasing). The
 * loader's own checks reject such a file, so this guards mdi_plan_check's
 * contract for callers that build infos some other way. */
static void test_check_shards_reversed_range(void **state)
{
    (void)state;
    mdi_shard_info in[MAX_RANKS];
    int32_t bounds[MAX_RANKS + 1];
    mdi_err err;
    three_shards(in);
    in[1].layer_last = 5;
    in[2].layer_first = 5;
    mdi_status s = mdi_plan_check(in, 3, NULL, 0, bounds, &err);
    if (s == MDI_OK)
        fail_msg("shards [0,7) [7,5) [5,22) accepted: bounds %d %d %d %d", bounds[0], bounds[1],
                 bounds[2], bounds[3]);
    assert_int_equal(s, MDI_ERR_MISMATCH);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_param_counts),
        cmocka_unit_test(test_balanced_tinyllama),
        cmocka_unit_test(test_balanced_is_optimal),
        cmocka_unit_test(test_balanced_errors),
        cmocka_unit_test(test_from_counts),
        cmocka_unit_test(test_parse_split),
        cmocka_unit_test(test_check_whole_files),
        cmocka_unit_test(test_check_shards),
        cmocka_unit_test(test_check_shards_reversed_range),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

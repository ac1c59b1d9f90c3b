/* Layer placement: the balanced plan against a brute force over every
 * contiguous partition, explicit splits and their parser, and the agreement
 * checks over what every rank found (whole files, shards, mixtures). */
#include "test_util.h"

#include <math.h>

#include "mdi/plan.h"

#define MAX_RANKS 8

static const mdi_config tiny_llama = MDI_TEST_TINYLLAMA;

/* Worked out by hand for TinyLlama: norms 2*2048, wq and wo 2048*2048 each,
 * wk and wv 256*2048 each, w1 w2 w3 5632*2048 each; extras are the embedding
 * and the head (32000*2048 each) and the final norm (2048). */
#define TL_ATTN (2048ull + 2 * 2048 * 2048 + 2 * 256 * 2048)
#define TL_MLP (2048ull + 3 * 5632 * 2048)
#define TL_LAYER 44044288ull
#define TL_EXTRA 131074048ull
#define TL_HEAD (32000ull * 2048 + 2048)

/* The cost a balanced plan evens out, of half-layers [first, last) on rank
 * r, in parameters: the hand-made twin of mdi_plan_rank_bytes / _step_bytes. */
typedef struct costs {
    uint64_t attn, mlp, extra;
} costs;

static uint64_t cost_of(const costs *k, int32_t r, int32_t first, int32_t last)
{
    uint64_t sum = r == 0 ? k->extra : 0;
    for (int32_t h = first; h < last; h++)
        sum += h % 2 ? k->mlp : k->attn;
    return sum;
}

/* Rank r's cost at full speed: cost * MDI_SPEED_SCALE / its speed w[r]
 * (NULL: full speed), rounded up; what mdi_plan_balanced minimises the
 * largest of. */
static uint64_t scaled(const costs *k, const uint32_t *w, int32_t r, int32_t first, int32_t last)
{
    uint64_t c = cost_of(k, r, first, last), d = w ? w[r] : MDI_SPEED_SCALE;
    return (c * MDI_SPEED_SCALE + d - 1) / d;
}

/* Smallest possible largest scaled rank cost over all contiguous partitions
 * of half-layers [first, H) among ranks r..n-1, every range non-empty, by
 * enumeration. */
static uint64_t brute_min_max_w(const costs *k, const uint32_t *w, int32_t H, int32_t n, int32_t r,
                                int32_t first, uint64_t worst_so_far)
{
    if (r == n - 1) {
        uint64_t b = scaled(k, w, r, first, H);
        return worst_so_far > b ? worst_so_far : b;
    }
    uint64_t best = UINT64_MAX;
    for (int32_t end = first + 1; end <= H - (n - 1 - r); end++) {
        uint64_t b = scaled(k, w, r, first, end), m;
        m = brute_min_max_w(k, w, H, n, r + 1, end, b > worst_so_far ? b : worst_so_far);
        best = m < best ? m : best;
    }
    return best;
}

static uint64_t brute_min_max(const costs *k, int32_t H, int32_t n, int32_t r, int32_t first,
                              uint64_t worst_so_far)
{
    return brute_min_max_w(k, NULL, H, n, r, first, worst_so_far);
}

static costs costs_for(const mdi_config *c, mdi_balance how)
{
    costs k = {mdi_config_half_params(c, MDI_HALF_ATTN), mdi_config_half_params(c, MDI_HALF_MLP),
               how == MDI_BALANCE_TIME ? mdi_config_head_params(c) : mdi_config_extra_params(c)};
    return k;
}

/* bounds are a valid plan: start at 0, end at H, every range non-empty. */
static void check_bounds(const int32_t *bounds, int32_t n, int32_t H)
{
    assert_int_equal(bounds[0], 0);
    assert_int_equal(bounds[n], H);
    for (int32_t r = 0; r < n; r++)
        if (bounds[r + 1] <= bounds[r])
            fail_msg("rank %d of %d has the empty or reversed range [%d, %d)", r, n, bounds[r],
                     bounds[r + 1]);
}

/* Largest rank cost of a plan as the library counts it, in parameters. */
static uint64_t plan_max(const mdi_config *c, const int32_t *bounds, int32_t n, mdi_balance how)
{
    uint64_t worst = 0;
    for (int32_t r = 0; r < n; r++) {
        uint64_t b = how == MDI_BALANCE_TIME ? mdi_plan_rank_step_bytes(c, bounds, r)
                                             : mdi_plan_rank_bytes(c, bounds, r);
        worst = b / 4 > worst ? b / 4 : worst;
    }
    return worst;
}

static void test_param_counts(void **state)
{
    (void)state;
    assert_int_equal(mdi_config_layer_params(&tiny_llama), TL_LAYER);
    assert_int_equal(mdi_config_half_params(&tiny_llama, MDI_HALF_ATTN), TL_ATTN);
    assert_int_equal(mdi_config_half_params(&tiny_llama, MDI_HALF_MLP), TL_MLP);
    assert_int_equal(TL_ATTN + TL_MLP, TL_LAYER);
    assert_int_equal(mdi_config_extra_params(&tiny_llama), TL_EXTRA);
    assert_int_equal(mdi_config_head_params(&tiny_llama), TL_HEAD);
    int32_t b[3] = {0, 20, 44};
    assert_int_equal(mdi_plan_rank_bytes(&tiny_llama, b, 0), (10 * TL_LAYER + TL_EXTRA) * 4);
    assert_int_equal(mdi_plan_rank_bytes(&tiny_llama, b, 1), 12 * TL_LAYER * 4);
    assert_int_equal(mdi_plan_rank_step_bytes(&tiny_llama, b, 0), (10 * TL_LAYER + TL_HEAD) * 4);
    assert_int_equal(mdi_plan_rank_step_bytes(&tiny_llama, b, 1), 12 * TL_LAYER * 4);
    /* half-layer ends: [0, 21) ends with layer 10's attention, [21, 44) starts with its MLP */
    int32_t h[3] = {0, 21, 44};
    assert_int_equal(mdi_plan_rank_bytes(&tiny_llama, h, 0),
                     (10 * TL_LAYER + TL_ATTN + TL_EXTRA) * 4);
    assert_int_equal(mdi_plan_rank_bytes(&tiny_llama, h, 1), (TL_MLP + 11 * TL_LAYER) * 4);
    int32_t odd[3] = {0, 1, 4}; /* [1, 4): MLP 0, layer 1 */
    assert_int_equal(mdi_plan_rank_bytes(&tiny_llama, odd, 1), (TL_MLP + TL_LAYER) * 4);
    int32_t one[4] = {0, 3, 4, 44}; /* [3, 4): MLP of layer 1 alone */
    assert_int_equal(mdi_plan_rank_step_bytes(&tiny_llama, one, 1), TL_MLP * 4);
}

static void test_balanced_tinyllama(void **state)
{
    (void)state;
    /* Memory: the extras weigh ~2.98 layers, so rank 0 takes about three
     * fewer. Time: the head weighs ~1.49 layers. In half-layers. */
    const int32_t want[2][6][MAX_RANKS] = {[MDI_BALANCE_MEMORY] = {{0},
                                                                   {0, 44},
                                                                   {0, 19, 44},
                                                                   {0, 10, 27, 44},
                                                                   {0, 5, 18, 31, 44},
                                                                   {0, 4, 14, 24, 34, 44}},
                                           [MDI_BALANCE_TIME] = {{0},
                                                                 {0, 44},
                                                                 {0, 21, 44},
                                                                 {0, 12, 28, 44},
                                                                 {0, 8, 20, 32, 44},
                                                                 {0, 4, 14, 24, 34, 44}}};
    for (int how = 0; how < 2; how++)
        for (int32_t n = 1; n <= 5; n++) {
            int32_t bounds[MAX_RANKS + 1];
            mdi_err err;
            if (mdi_plan_balanced(&tiny_llama, n, (mdi_balance)how, NULL, bounds, &err) != MDI_OK)
                fail_msg("%d ranks: %s", n, err.msg);
            check_bounds(bounds, n, 44);
            for (int32_t r = 0; r <= n; r++)
                if (bounds[r] != want[how][n][r])
                    fail_msg("balance %s, %d ranks: bound %d is %d, want %d",
                             mdi_plan_balance_name((mdi_balance)how), n, r, bounds[r],
                             want[how][n][r]);
            costs k = costs_for(&tiny_llama, (mdi_balance)how);
            uint64_t best = brute_min_max(&k, 44, n, 0, 0, 0);
            assert_int_equal(plan_max(&tiny_llama, bounds, n, (mdi_balance)how), best);
        }
}

/* Every small geometry: layer counts 1..6, extras from none to many layers'
 * worth, both balances, every rank count up to the half-layer count: the plan
 * is valid, its largest rank is as small as any contiguous partition allows,
 * and rank 0 carries no more than it must (later ranks take what they can). */
static void test_balanced_is_optimal(void **state)
{
    (void)state;
    const int32_t vocabs[] = {1, 3, 16, 64, 200, 1000};
    const int32_t hiddens[] = {2, 16, 100};
    for (int32_t L = 1; L <= 6; L++)
        for (size_t v = 0; v < sizeof vocabs / sizeof vocabs[0]; v++)
            for (size_t hd = 0; hd < sizeof hiddens / sizeof hiddens[0]; hd++)
                for (int32_t tied = 0; tied <= 1; tied++)
                    for (int how = 0; how < 2; how++) {
                        mdi_config c = {.dim = 8,
                                        .hidden_dim = hiddens[hd],
                                        .n_layers = L,
                                        .n_heads = 2,
                                        .n_kv_heads = 1,
                                        .head_dim = 4,
                                        .vocab_size = vocabs[v],
                                        .max_seq_len = 16,
                                        .rope_theta = 10000.0f,
                                        .norm_eps = 1e-5f,
                                        .tied_head = tied};
                        costs k = costs_for(&c, (mdi_balance)how);
                        for (int32_t n = 1; n <= 2 * L && n <= MAX_RANKS; n++) {
                            int32_t bounds[MAX_RANKS + 1];
                            mdi_err err;
                            assert_int_equal(
                                mdi_plan_balanced(&c, n, (mdi_balance)how, NULL, bounds, &err),
                                MDI_OK);
                            check_bounds(bounds, n, 2 * L);
                            uint64_t got = plan_max(&c, bounds, n, (mdi_balance)how);
                            uint64_t best = brute_min_max(&k, 2 * L, n, 0, 0, 0);
                            if (got != best)
                                fail_msg("L=%d vocab=%d hidden=%d tied=%d %s n=%d: largest rank "
                                         "%llu, best %llu",
                                         L, vocabs[v], hiddens[hd], tied,
                                         mdi_plan_balance_name((mdi_balance)how), n,
                                         (unsigned long long)got, (unsigned long long)best);
                            /* no plan with the same largest rank gives rank 0 less */
                            for (int32_t e = 1; n > 1 && e < bounds[1]; e++)
                                if (cost_of(&k, 0, 0, e) <= best &&
                                    brute_min_max(&k, 2 * L, n, 1, e, cost_of(&k, 0, 0, e)) == best)
                                    fail_msg("L=%d n=%d: rank 0 could end at %d, not %d", L, n, e,
                                             bounds[1]);
                        }
                    }
}

/* Largest scaled rank cost of a plan. */
static uint64_t plan_max_w(const costs *k, const uint32_t *w, const int32_t *bounds, int32_t n)
{
    uint64_t worst = 0;
    for (int32_t r = 0; r < n; r++) {
        uint64_t b = scaled(k, w, r, bounds[r], bounds[r + 1]);
        worst = b > worst ? b : worst;
    }
    return worst;
}

/* Ranks of different speeds: the plan's largest cost / speed is the
 * smallest any contiguous partition allows, over small geometries and speed
 * mixes from equal to 1000:1, and equal speeds give the unweighted plan. */
static void test_balanced_speeds_optimal(void **state)
{
    (void)state;
    const uint32_t pool[] = {1, 7, 250, 333, 500, 999, 1000};
    uint32_t seed = 12345;
    for (int32_t L = 1; L <= 5; L++)
        for (int32_t vocab = 1; vocab <= 300; vocab += 299)
            for (int how = 0; how < 2; how++) {
                mdi_config c = {.dim = 8,
                                .hidden_dim = 20,
                                .n_layers = L,
                                .n_heads = 2,
                                .n_kv_heads = 1,
                                .head_dim = 4,
                                .vocab_size = vocab,
                                .max_seq_len = 16,
                                .rope_theta = 1e4f,
                                .norm_eps = 1e-5f};
                costs k = costs_for(&c, (mdi_balance)how);
                for (int32_t n = 1; n <= 2 * L && n <= 5; n++)
                    for (int trial = 0; trial < 12; trial++) {
                        uint32_t w[MAX_RANKS];
                        int32_t bounds[MAX_RANKS + 1], plain[MAX_RANKS + 1];
                        mdi_err err;
                        for (int32_t r = 0; r < n; r++) {
                            seed = seed * 1103515245u + 12345u;
                            w[r] = trial == 0 ? 1000 : pool[(seed >> 16) % 7];
                        }
                        assert_int_equal(
                            mdi_plan_balanced(&c, n, (mdi_balance)how, w, bounds, &err), MDI_OK);
                        check_bounds(bounds, n, 2 * L);
                        uint64_t got = plan_max_w(&k, w, bounds, n);
                        uint64_t best = brute_min_max_w(&k, w, 2 * L, n, 0, 0, 0);
                        if (got != best)
                            fail_msg("L=%d vocab=%d n=%d speeds %u,%u,...: largest %llu, best %llu",
                                     L, vocab, n, w[0], n > 1 ? w[1] : 0, (unsigned long long)got,
                                     (unsigned long long)best);
                        if (trial == 0) { /* all equal */
                            assert_int_equal(
                                mdi_plan_balanced(&c, n, (mdi_balance)how, NULL, plain, &err),
                                MDI_OK);
                            assert_memory_equal(bounds, plain, (size_t)(n + 1) * sizeof *bounds);
                        }
                    }
            }
}

/* TinyLlama on a fast and a half-speed host: the slow one reads about half
 * as much per token, within half a layer; and the reverse. */
static void test_balanced_speeds_tinyllama(void **state)
{
    (void)state;
    const uint32_t fast_slow[2] = {1000, 500}, slow_fast[2] = {500, 1000};
    int32_t b[3];
    mdi_err err;
    assert_int_equal(mdi_plan_balanced(&tiny_llama, 2, MDI_BALANCE_TIME, fast_slow, b, &err),
                     MDI_OK);
    double r0 = (double)mdi_plan_rank_step_bytes(&tiny_llama, b, 0),
           r1 = (double)mdi_plan_rank_step_bytes(&tiny_llama, b, 1), tol = TL_MLP * 4.0;
    assert_true(fabs(r1 - r0 / 2) <= tol);
    assert_int_equal(mdi_plan_balanced(&tiny_llama, 2, MDI_BALANCE_TIME, slow_fast, b, &err),
                     MDI_OK);
    r0 = (double)mdi_plan_rank_step_bytes(&tiny_llama, b, 0);
    r1 = (double)mdi_plan_rank_step_bytes(&tiny_llama, b, 1);
    assert_true(fabs(r0 - r1 / 2) <= tol);
    /* a speed outside 1..1000 */
    const uint32_t bad[2] = {0, 1000}, big[2] = {1001, 1000};
    assert_int_equal(mdi_plan_balanced(&tiny_llama, 2, MDI_BALANCE_TIME, bad, b, &err),
                     MDI_ERR_ARG);
    assert_int_equal(mdi_plan_balanced(&tiny_llama, 2, MDI_BALANCE_TIME, big, b, &err),
                     MDI_ERR_ARG);
}

static void test_parse_speeds(void **state)
{
    (void)state;
    double v[4];
    int32_t n = 0;
    mdi_err err;
    assert_int_equal(mdi_plan_parse_speeds("2,1,0.5", v, 4, &n, &err), MDI_OK);
    assert_int_equal(n, 3);
    assert_true(v[0] == 2.0 && v[1] == 1.0 && v[2] == 0.5);
    assert_int_equal(mdi_plan_parse_speeds(".25,2.5e2", v, 4, &n, &err), MDI_OK);
    assert_true(n == 2 && v[0] == 0.25 && v[1] == 250.0);
    /* speeds are kept in thousandths of the fastest: at most 1000:1 */
    assert_int_equal(mdi_plan_parse_speeds("1000,1", v, 4, &n, &err), MDI_OK);
    assert_int_equal(mdi_plan_parse_speeds("1e6,1e9,1e6", v, 4, &n, &err), MDI_OK);
    assert_int_equal(mdi_plan_parse_speeds("1001,1", v, 4, &n, &err), MDI_ERR_RANGE);
    assert_non_null(strstr(err.msg, "the fastest rank is 1001 times as fast as the slowest"));
    assert_int_equal(mdi_plan_parse_speeds("2,1,0.001", NULL, 100, &n, &err), MDI_ERR_RANGE);
    assert_non_null(strstr(err.msg, "2000 times"));
    /* just over: the ratio is printed so that it is over 1000 */
    assert_int_equal(mdi_plan_parse_speeds("1,0.0009999", NULL, 100, &n, &err), MDI_ERR_RANGE);
    assert_non_null(strstr(err.msg, "1000.1 times"));
    assert_int_equal(mdi_plan_parse_speeds("1,2,3,4,5", NULL, 100, &n, &err), MDI_OK);
    assert_int_equal(n, 5);
    assert_int_equal(mdi_plan_parse_speeds("1,2,3,4,5", v, 4, &n, &err), MDI_ERR_RANGE);
    const char *bad[] = {"",    "0",     "-1",     "+1",  " 1", "1,",   ",1",  "1,,2",  "nan",
                         "inf", "1e400", "1e-400", "2e9", "1x", "0x10", "1;2", "auto,1"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        mdi_err_clear(&err);
        if (mdi_plan_parse_speeds(bad[i], v, 4, &n, &err) != MDI_ERR_ARG)
            fail_msg("--speeds '%s' was accepted", bad[i]);
        assert_non_null(strstr(err.msg, "--speeds"));
    }
}

static void test_speed_weights(void **state)
{
    (void)state;
    const double a[3] = {2, 1, 1}, b[2] = {1, 1e-6}, c[3] = {3.5, 3.5, 3.5};
    uint32_t w[3];
    mdi_plan_speed_weights(a, 3, w);
    assert_true(w[0] == 1000 && w[1] == 500 && w[2] == 500);
    mdi_plan_speed_weights(b, 2, w);
    assert_true(w[0] == 1000 && w[1] == 1);
    mdi_plan_speed_weights(c, 3, w);
    assert_true(w[0] == 1000 && w[1] == 1000 && w[2] == 1000);
    /* snapping: within a 32nd of an octave of the fastest is the fastest,
     * a half stays a half, every speed moves by at most a 32nd of an octave */
    double s[5] = {10.0, 9.85, 5.0, 2.6, 10.0 * exp2(-1.0 / 16)};
    const double orig[5] = {10.0, 9.85, 5.0, 2.6, 10.0 * exp2(-1.0 / 16)};
    mdi_plan_snap_speeds(s, 5);
    assert_true(s[0] == 10.0 && s[1] == 10.0 && fabs(s[2] - 5.0) < 1e-9);
    assert_true(fabs(s[4] - orig[4]) < 1e-9);
    for (int i = 0; i < 5; i++)
        assert_true(fabs(log2(s[i] / orig[i])) <= 1.0 / 32 + 1e-12);
}

static void test_balanced_errors(void **state)
{
    (void)state;
    int32_t bounds[64];
    mdi_err err;
    mdi_err_clear(&err);
    assert_int_equal(mdi_plan_balanced(&tiny_llama, 45, MDI_BALANCE_MEMORY, NULL, bounds, &err),
                     MDI_ERR_RANGE);
    assert_int_equal(err.status, MDI_ERR_RANGE);
    assert_non_null(strstr(err.msg, "22 layers"));
    assert_int_equal(mdi_plan_balanced(&tiny_llama, 0, MDI_BALANCE_TIME, NULL, bounds, &err),
                     MDI_ERR_ARG);
    assert_int_equal(mdi_plan_balanced(&tiny_llama, -2, MDI_BALANCE_MEMORY, NULL, bounds, &err),
                     MDI_ERR_ARG);
    /* half a layer per rank is still fine */
    assert_int_equal(mdi_plan_balanced(&tiny_llama, 44, MDI_BALANCE_MEMORY, NULL, bounds, &err),
                     MDI_OK);
    check_bounds(bounds, 44, 44);
}

static void test_parse_balance(void **state)
{
    (void)state;
    mdi_balance how = MDI_BALANCE_TIME;
    mdi_err err;
    assert_int_equal(mdi_plan_parse_balance("memory", &how, &err), MDI_OK);
    assert_int_equal(how, MDI_BALANCE_MEMORY);
    assert_int_equal(mdi_plan_parse_balance("time", &how, &err), MDI_OK);
    assert_int_equal(how, MDI_BALANCE_TIME);
    assert_string_equal(mdi_plan_balance_name(MDI_BALANCE_TIME), "time");
    assert_string_equal(mdi_plan_balance_name(MDI_BALANCE_MEMORY), "memory");
    const char *bad[] = {"", "Memory", "time ", "speed", "memoryx", NULL};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        mdi_err_clear(&err);
        assert_int_equal(mdi_plan_parse_balance(bad[i], &how, &err), MDI_ERR_ARG);
        assert_non_null(strstr(err.msg, "memory or time"));
    }
}

static void test_describe(void **state)
{
    (void)state;
    char buf[96];
    const struct {
        int32_t first, last;
        const char *want;
    } cases[] = {
        {0, 44, "layers 0-21"},
        {0, 21, "layers 0-9 and layer 10's attention"},
        {21, 44, "layer 10's MLP and layers 11-21"},
        {21, 22, "layer 10's MLP"},
        {20, 21, "layer 10's attention"},
        {20, 22, "layer 10"},
        {21, 25, "layer 10's MLP and layer 11 and layer 12's attention"},
        {1, 4, "layer 0's MLP and layer 1"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        mdi_plan_describe(cases[i].first, cases[i].last, buf, sizeof buf);
        assert_string_equal(buf, cases[i].want);
    }
    mdi_plan_describe(21, 25, buf, 12); /* truncated, still terminated */
    assert_int_equal(strlen(buf), 11);
}

static void test_from_counts(void **state)
{
    (void)state;
    int32_t bounds[8];
    mdi_err err;
    const int32_t ok[] = {6, 17, 21}; /* 3, 8.5, 10.5 layers */
    assert_int_equal(mdi_plan_from_counts(&tiny_llama, ok, 3, bounds, &err), MDI_OK);
    const int32_t want[] = {0, 6, 23, 44};
    assert_memory_equal(bounds, want, sizeof want);
    const int32_t one[] = {44};
    assert_int_equal(mdi_plan_from_counts(&tiny_llama, one, 1, bounds, &err), MDI_OK);
    assert_int_equal(bounds[1], 44);

    const int32_t bad[][3] = {{6, 18, 19}, {6, 18, 21}, {60, 1, 1},
                              {0, 24, 20}, {24, 20, 0}, {-1, 25, 20}};
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
    if (text && strchr(text, '.') && !strstr(err.msg, "expected layer counts like"))
        fail_msg("--split '%s': '%s' does not say what an entry looks like", text, err.msg);
}

static void test_parse_split(void **state)
{
    (void)state;
    int32_t counts[8], n = 0;
    mdi_err err;
    assert_int_equal(mdi_plan_parse_split("2,4,4", counts, 8, &n, &err), MDI_OK);
    assert_int_equal(n, 3);
    assert_int_equal(counts[0], 4);
    assert_int_equal(counts[1], 8);
    assert_int_equal(counts[2], 8);
    assert_int_equal(mdi_plan_parse_split("22", counts, 1, &n, &err), MDI_OK);
    assert_int_equal(n, 1);
    assert_int_equal(counts[0], 44);
    assert_int_equal(mdi_plan_parse_split("1,2,3", counts, 3, &n, &err), MDI_OK); /* full */
    assert_int_equal(n, 3);
    assert_int_equal(mdi_plan_parse_split("10.5,11.5", counts, 8, &n, &err), MDI_OK);
    assert_int_equal(n, 2);
    assert_int_equal(counts[0], 21);
    assert_int_equal(counts[1], 23);
    assert_int_equal(mdi_plan_parse_split("0.5,3.0,4096", counts, 8, &n, &err), MDI_OK);
    assert_int_equal(n, 3);
    assert_int_equal(counts[0], 1);
    assert_int_equal(counts[1], 6);
    assert_int_equal(counts[2], 8192);
    assert_int_equal(mdi_plan_parse_split("2.50,5.00,1.000", counts, 8, &n, &err), MDI_OK);
    assert_int_equal(n, 3); /* trailing zeros, as any decimal number may have */
    assert_int_equal(counts[0], 5);
    assert_int_equal(counts[1], 10);
    assert_int_equal(counts[2], 2);

    expect_parse_error("", 8);
    expect_parse_error(NULL, 8);
    expect_parse_error("2,,4", 8);
    expect_parse_error("2,x", 8);
    expect_parse_error("2x", 8);
    expect_parse_error("-1", 8);
    expect_parse_error("0", 8);
    expect_parse_error("0.0", 8);
    expect_parse_error("2,0,4", 8);
    expect_parse_error("2,4,", 8);
    expect_parse_error(",2,4", 8);
    expect_parse_error("2;4", 8);
    expect_parse_error("1,1,1,1", 3); /* too many entries */
    expect_parse_error("2.25", 8);
    expect_parse_error("2.05", 8);
    expect_parse_error("2.501", 8);
    expect_parse_error("2.", 8);
    expect_parse_error(".5", 8);
    expect_parse_error("2.5.5", 8);
    expect_parse_error(" 2", 8);
    expect_parse_error("+2", 8);
    expect_parse_error("4096.5", 8); /* beyond MDI_MAX_LAYERS */
    expect_parse_error("1", 0);
    expect_parse_error("4097", 8); /* beyond MDI_MAX_LAYERS */
    expect_parse_error("99999999999999999999999", 8);
}

/* ---- mdi_plan_check ------------------------------------------------------------ */

/* What a rank found: a file of half-layers [first, last). */
static mdi_shard_info make_info(const mdi_config *c, const char *id, int32_t first, int32_t last,
                                int32_t index, int32_t count)
{
    mdi_shard_info in;
    memset(&in, 0, sizeof in);
    in.format_version = 1;
    snprintf(in.model_id, sizeof in.model_id, "%s", id);
    in.cfg = *c;
    in.layer_first = first / 2;
    in.layer_last = (last + 1) / 2;
    in.half_first = first;
    in.half_last = last;
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
        in[r] = make_info(&tiny_llama, "0123456789abcdef", 0, 44, 0, 1);
}

/* Three ranks with TinyLlama cut at layers 7 and 15. */
static void three_shards(mdi_shard_info *in)
{
    const int32_t cut[] = {0, 14, 30, 44};
    for (int32_t r = 0; r < 3; r++)
        in[r] = make_info(&tiny_llama, "0123456789abcdef", cut[r], cut[r + 1], r, 3);
}

/* mdi_plan_check must fail with want and a message containing word. */
static void expect_check_error_how(const mdi_shard_info *in, int32_t n, const int32_t *counts,
                                   int32_t n_counts, const mdi_balance *how, mdi_status want,
                                   const char *word)
{
    int32_t bounds[MAX_RANKS + 1];
    mdi_err err;
    mdi_err_clear(&err);
    mdi_status s = mdi_plan_check(in, n, counts, n_counts, how, NULL, bounds, &err);
    if (s != want)
        fail_msg("mdi_plan_check returned %d (%s), want %d", s, err.msg, want);
    assert_int_equal(err.status, want);
    if (!strstr(err.msg, word))
        fail_msg("message '%s' does not mention '%s'", err.msg, word);
}

static void expect_check_error(const mdi_shard_info *in, int32_t n, const int32_t *counts,
                               int32_t n_counts, mdi_status want, const char *word)
{
    expect_check_error_how(in, n, counts, n_counts, NULL, want, word);
}

static void test_check_whole_files(void **state)
{
    (void)state;
    mdi_shard_info in[MAX_RANKS];
    int32_t bounds[MAX_RANKS + 1], want[MAX_RANKS + 1];
    mdi_err err;
    for (int32_t n = 1; n <= 5; n++) {
        whole_files(in, n);
        /* no balance given: time */
        assert_int_equal(mdi_plan_check(in, n, NULL, 0, NULL, NULL, bounds, &err), MDI_OK);
        assert_int_equal(mdi_plan_balanced(&tiny_llama, n, MDI_BALANCE_TIME, NULL, want, &err),
                         MDI_OK);
        assert_memory_equal(bounds, want, (size_t)(n + 1) * sizeof(int32_t));
        for (int how = 0; how < 2; how++) {
            mdi_balance b = (mdi_balance)how;
            assert_int_equal(mdi_plan_check(in, n, NULL, 0, &b, NULL, bounds, &err), MDI_OK);
            assert_int_equal(mdi_plan_balanced(&tiny_llama, n, b, NULL, want, &err), MDI_OK);
            assert_memory_equal(bounds, want, (size_t)(n + 1) * sizeof(int32_t));
        }
    }
    /* with an explicit split, in half-layers */
    whole_files(in, 3);
    const int32_t split[] = {5, 19, 20};
    assert_int_equal(mdi_plan_check(in, 3, split, 3, NULL, NULL, bounds, &err), MDI_OK);
    const int32_t ws[] = {0, 5, 24, 44};
    assert_memory_equal(bounds, ws, sizeof ws);
    /* a split and a balance at once */
    const mdi_balance time = MDI_BALANCE_TIME;
    expect_check_error_how(in, 3, split, 3, &time, MDI_ERR_ARG, "--balance");
    /* a split with the wrong number of entries, or the wrong sum */
    expect_check_error(in, 3, split, 2, MDI_ERR_MISMATCH, "entries");
    const int32_t four[] = {4, 20, 10, 10};
    expect_check_error(in, 3, four, 4, MDI_ERR_MISMATCH, "entries");
    const int32_t short_sum[] = {4, 20, 19};
    expect_check_error(in, 3, short_sum, 3, MDI_ERR_RANGE, "21.5");
    /* more ranks than half-layers */
    mdi_config two = tiny_llama;
    two.n_layers = 2;
    for (int32_t r = 0; r < 5; r++)
        in[r] = make_info(&two, "0123456789abcdef", 0, 4, 0, 1);
    expect_check_error(in, 5, NULL, 0, MDI_ERR_RANGE, "half a layer");
    assert_int_equal(mdi_plan_check(in, 4, NULL, 0, NULL, NULL, bounds, &err), MDI_OK);
    /* a whole-model file that does not hold every layer, or lacks one half */
    whole_files(in, 2);
    in[1] = make_info(&tiny_llama, "0123456789abcdef", 0, 42, 0, 1);
    expect_check_error(in, 2, NULL, 0, MDI_ERR_MISMATCH, "rank 1");
    in[1] = make_info(&tiny_llama, "0123456789abcdef", 0, 43, 0, 1);
    expect_check_error(in, 2, NULL, 0, MDI_ERR_MISMATCH, "rank 1");
}

static void test_check_shards(void **state)
{
    (void)state;
    mdi_shard_info in[MAX_RANKS];
    int32_t bounds[MAX_RANKS + 1];
    mdi_err err;
    three_shards(in);
    assert_int_equal(mdi_plan_check(in, 3, NULL, 0, NULL, NULL, bounds, &err), MDI_OK);
    const int32_t want[] = {0, 14, 30, 44};
    assert_memory_equal(bounds, want, sizeof want);
    /* a split that agrees with the shards is accepted, one that does not is not */
    const int32_t agree[] = {14, 16, 14}, disagree[] = {16, 14, 14}, half_off[] = {15, 15, 14};
    assert_int_equal(mdi_plan_check(in, 3, agree, 3, NULL, NULL, bounds, &err), MDI_OK);
    expect_check_error(in, 3, half_off, 3, MDI_ERR_MISMATCH, "split");
    /* shards fix the placement: --balance is refused, whichever */
    const mdi_balance mem = MDI_BALANCE_MEMORY;
    expect_check_error_how(in, 3, NULL, 0, &mem, MDI_ERR_ARG, "--balance");

    /* shards cut inside layers: [0, 15) ends with layer 7's attention */
    const int32_t cut[] = {0, 15, 29, 44};
    for (int32_t r = 0; r < 3; r++)
        in[r] = make_info(&tiny_llama, "0123456789abcdef", cut[r], cut[r + 1], r, 3);
    assert_int_equal(mdi_plan_check(in, 3, NULL, 0, NULL, NULL, bounds, &err), MDI_OK);
    assert_memory_equal(bounds, cut, sizeof cut);
    /* a half-layer gap: rank 1 starts with layer 7's MLP, rank 2 with layer 14's MLP */
    in[2] = make_info(&tiny_llama, "0123456789abcdef", 29 + 1, 44, 2, 3);
    expect_check_error(in, 3, NULL, 0, MDI_ERR_MISMATCH, "layer 14's MLP");
    /* a half-layer overlap */
    in[2] = make_info(&tiny_llama, "0123456789abcdef", 28, 44, 2, 3);
    expect_check_error(in, 3, NULL, 0, MDI_ERR_MISMATCH, "overlap");
    three_shards(in);
    expect_check_error(in, 3, disagree, 3, MDI_ERR_MISMATCH, "split");
    expect_check_error(in, 3, agree, 2, MDI_ERR_MISMATCH, "split");

    /* a gap: rank 1 starts at 8 */
    three_shards(in);
    in[1].half_first = 16;
    expect_check_error(in, 3, NULL, 0, MDI_ERR_MISMATCH, "gap");
    /* an overlap: rank 2 starts at 14 */
    three_shards(in);
    in[2].half_first = 28;
    expect_check_error(in, 3, NULL, 0, MDI_ERR_MISMATCH, "overlap");
    /* the last shard stops short of the last layer */
    three_shards(in);
    in[2].half_last = 43;
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
    in[1] = make_info(&tiny_llama, "0123456789abcdef", 0, 44, 0, 1);
    expect_check_error(in, 3, NULL, 0, MDI_ERR_MISMATCH, "whole-model");
    whole_files(in, 3);
    in[2] = make_info(&tiny_llama, "0123456789abcdef", 30, 44, 2, 3);
    expect_check_error(in, 3, NULL, 0, MDI_ERR_MISMATCH, "whole-model");
    /* more ranks than half-layers, as shards */
    mdi_config two = tiny_llama;
    two.n_layers = 2;
    for (int32_t r = 0; r < 5; r++)
        in[r] = make_info(&two, "0123456789abcdef", r < 4 ? r : 3, 4, r, 5);
    expect_check_error(in, 5, NULL, 0, MDI_ERR_RANGE, "layers");
}

/* Shards that meet end to start but run backwards in the middle, layers
 * [0, 7), [7, 5), [5, 22), hold layers 5 and 6 twice: the plan must not accept them
 * as "covering every layer once" (bounds would not be increasing). The
 * loader's own checks reject such a file, so this guards mdi_plan_check's
 * contract for callers that build infos some other way. */
/* --speeds weighs the time balance of a whole-model file; with --split,
 * --balance memory or shards it is refused, naming --speeds. */
static void test_check_speeds(void **state)
{
    (void)state;
    mdi_shard_info in[MAX_RANKS];
    int32_t bounds[MAX_RANKS + 1], want[MAX_RANKS + 1];
    const uint32_t w[3] = {1000, 250, 600};
    const int32_t split[3] = {10, 14, 20};
    mdi_balance time = MDI_BALANCE_TIME, memory = MDI_BALANCE_MEMORY;
    mdi_err err;
    whole_files(in, 3);
    assert_int_equal(mdi_plan_balanced(&tiny_llama, 3, MDI_BALANCE_TIME, w, want, &err), MDI_OK);
    assert_int_equal(mdi_plan_check(in, 3, NULL, 0, NULL, w, bounds, &err), MDI_OK);
    assert_memory_equal(bounds, want, sizeof want[0] * 4);
    assert_int_equal(mdi_plan_check(in, 3, NULL, 0, &time, w, bounds, &err), MDI_OK);
    assert_memory_equal(bounds, want, sizeof want[0] * 4);
    const mdi_status refused[3] = {
        mdi_plan_check(in, 3, NULL, 0, &memory, w, bounds, &err),
        mdi_plan_check(in, 3, split, 3, NULL, w, bounds, &err),
        (three_shards(in), mdi_plan_check(in, 3, NULL, 0, NULL, w, bounds, &err)),
    };
    for (int i = 0; i < 3; i++)
        assert_int_equal(refused[i], MDI_ERR_ARG);
    assert_non_null(strstr(err.msg, "--speeds"));
}

static void test_check_shards_reversed_range(void **state)
{
    (void)state;
    mdi_shard_info in[MAX_RANKS];
    int32_t bounds[MAX_RANKS + 1];
    mdi_err err;
    three_shards(in);
    in[1].half_last = 10;
    in[2].half_first = 10;
    mdi_status s = mdi_plan_check(in, 3, NULL, 0, NULL, NULL, bounds, &err);
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
        cmocka_unit_test(test_balanced_speeds_optimal),
        cmocka_unit_test(test_balanced_speeds_tinyllama),
        cmocka_unit_test(test_parse_speeds),
        cmocka_unit_test(test_speed_weights),
        cmocka_unit_test(test_balanced_errors),
        cmocka_unit_test(test_parse_balance),
        cmocka_unit_test(test_describe),
        cmocka_unit_test(test_from_counts),
        cmocka_unit_test(test_parse_split),
        cmocka_unit_test(test_check_whole_files),
        cmocka_unit_test(test_check_shards),
        cmocka_unit_test(test_check_speeds),
        cmocka_unit_test(test_check_shards_reversed_range),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

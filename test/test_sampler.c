/* Sampler: RNG streams, greedy, top-k, top-p, and frequencies against softmax. */
#include "test_util.h"

#include <math.h>

#include "mdi/sampler.h"

/* Sampler over vocab n with the given parameters; fails the test on error. */
static void make_sampler(mdi_sampler *s, int32_t n, float t, int32_t k, float p)
{
    mdi_sampler_params sp = {.temperature = t, .top_k = k, .top_p = p};
    mdi_err err;
    mdi_status st = mdi_sampler_init(s, n, &sp, &err);
    if (st != MDI_OK)
        fail_msg("mdi_sampler_init: %s", err.msg);
}

/* One sample from a copy of logits (n), which sample() overwrites. */
static int32_t draw(mdi_sampler *s, const float *logits, float *work, mdi_rng *rng)
{
    memcpy(work, logits, (size_t)s->vocab_size * sizeof(float));
    return mdi_sampler_sample(s, work, rng);
}

/* Deterministic pseudo-random logits in [-scale, scale). */
static void fill_logits(float *l, int32_t n, uint64_t seed, float scale)
{
    mdi_rng r;
    mdi_rng_seed(&r, seed, 99);
    for (int32_t i = 0; i < n; i++)
        l[i] = (2.0f * mdi_rng_f32(&r) - 1.0f) * scale;
}

static void test_rng_reproducible(void **state)
{
    (void)state;
    mdi_rng a, b;
    mdi_rng_seed(&a, 42, 3);
    mdi_rng_seed(&b, 42, 3);
    for (int i = 0; i < 1000; i++)
        assert_int_equal(mdi_rng_u32(&a), mdi_rng_u32(&b));
}

static void test_rng_pcg32_reference(void **state)
{
    (void)state;
    /* pcg32_srandom(42, 54) from the PCG reference (pcg32-demo): the generator
     * core must match it bit for bit. */
    mdi_rng r = {0, (54u << 1) | 1u};
    mdi_rng_u32(&r);
    r.state += 42u;
    mdi_rng_u32(&r);
    const uint32_t want[] = {0xa15c02b7u, 0x7b47f409u, 0xba1d3330u,
                             0x83d2f293u, 0xbfa4784bu, 0xcbed606eu};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        assert_int_equal(mdi_rng_u32(&r), want[i]);
}

static void test_rng_streams_and_seeds_differ(void **state)
{
    (void)state;
    /* Neighbouring streams and seeds: outputs should agree only by chance (~1/2^32). */
    const uint64_t pairs[][4] = {{42, 0, 42, 1}, {42, 1, 42, 2}, {0, 0, 1, 0}, {1, 0, 0, 1}};
    for (size_t c = 0; c < sizeof pairs / sizeof pairs[0]; c++) {
        mdi_rng a, b;
        mdi_rng_seed(&a, pairs[c][0], pairs[c][1]);
        mdi_rng_seed(&b, pairs[c][2], pairs[c][3]);
        int same = 0;
        for (int i = 0; i < 1000; i++)
            same += mdi_rng_u32(&a) == mdi_rng_u32(&b);
        assert_true(same <= 1);
    }
}

static void test_rng_f32_range(void **state)
{
    (void)state;
    mdi_rng r;
    mdi_rng_seed(&r, 7, 0);
    double sum = 0.0;
    const int n = 1000000;
    for (int i = 0; i < n; i++) {
        float u = mdi_rng_f32(&r);
        assert_true(u >= 0.0f && u < 1.0f);
        sum += u;
    }
    /* Mean of U[0,1): sd of the mean is 1/sqrt(12 n) ~ 2.9e-4. */
    assert_true(fabs(sum / n - 0.5) < 5 * 2.9e-4);
}

static void test_defaults_valid(void **state)
{
    (void)state;
    mdi_sampler_params p = mdi_sampler_default_params();
    mdi_err err;
    assert_true(fabsf(p.temperature - 0.8f) < 1e-6f);
    assert_int_equal(p.top_k, 0);
    assert_true(fabsf(p.top_p - 0.95f) < 1e-6f);
    assert_int_equal(mdi_sampler_params_validate(&p, &err), MDI_OK);
}

/* Validation fails with st and a message naming flag. */
static void expect_invalid(float t, int32_t k, float p, const char *flag)
{
    mdi_sampler_params sp = {.temperature = t, .top_k = k, .top_p = p};
    mdi_err err;
    mdi_err_clear(&err);
    mdi_status st = mdi_sampler_params_validate(&sp, &err);
    assert_int_not_equal(st, MDI_OK);
    assert_int_equal(err.status, st);
    if (!strstr(err.msg, flag))
        fail_msg("message '%s' does not name %s", err.msg, flag);
}

static void test_validate(void **state)
{
    (void)state;
    mdi_err err;
    const mdi_sampler_params ok[] = {{0.0f, 0, 1.0f}, {100.0f, 50, 1e-6f}, {1.0f, 1, 0.5f}};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
        assert_int_equal(mdi_sampler_params_validate(&ok[i], &err), MDI_OK);
    expect_invalid(-1.0f, 0, 0.9f, "--temperature");
    expect_invalid(NAN, 0, 0.9f, "--temperature");
    expect_invalid(INFINITY, 0, 0.9f, "--temperature");
    expect_invalid(100.5f, 0, 0.9f, "--temperature");
    expect_invalid(1.0f, -1, 0.9f, "--top-k");
    expect_invalid(1.0f, 0, 0.0f, "--top-p");
    expect_invalid(1.0f, 0, -0.1f, "--top-p");
    expect_invalid(1.0f, 0, 1.5f, "--top-p");
    expect_invalid(1.0f, 0, NAN, "--top-p");
    mdi_sampler_params bad = {1.0f, 0, 1.5f};
    mdi_sampler_params_validate(&bad, &err);
    assert_string_equal(err.msg, "--top-p 1.5 is outside (0, 1]");
    assert_int_not_equal(mdi_sampler_params_validate(NULL, &err), MDI_OK);
}

static void test_init_errors(void **state)
{
    (void)state;
    mdi_sampler s;
    mdi_sampler_params p = mdi_sampler_default_params();
    mdi_err err;
    assert_int_equal(mdi_sampler_init(&s, 0, &p, &err), MDI_ERR_ARG);
    assert_null(s.scratch);
    p.top_p = 2.0f;
    assert_int_equal(mdi_sampler_init(&s, 10, &p, &err), MDI_ERR_RANGE);
    assert_null(s.scratch);
    mdi_sampler_free(&s);
    mdi_sampler_free(NULL);
}

static void test_greedy(void **state)
{
    (void)state;
    mdi_sampler s;
    mdi_rng rng;
    mdi_rng_seed(&rng, 1, 0);
    make_sampler(&s, 6, 0.0f, 0, 0.9f);
    float l1[6] = {0.1f, 3.0f, -2.0f, 2.9f, 3.0f, 1.0f};
    assert_int_equal(mdi_sampler_sample(&s, l1, &rng), 1); /* tie 1 vs 4: lowest id */
    float l2[6] = {NAN, -1.0f, NAN, -0.5f, -INFINITY, NAN};
    assert_int_equal(mdi_sampler_sample(&s, l2, &rng), 3);
    float l3[6] = {NAN, NAN, NAN, NAN, NAN, NAN};
    assert_int_equal(mdi_sampler_sample(&s, l3, &rng), 0);
    float l4[6] = {NAN, NAN, 5.0f, NAN, NAN, NAN};
    assert_int_equal(mdi_sampler_sample(&s, l4, &rng), 2);
    mdi_sampler_free(&s);
}

static void test_top_k_one_is_greedy(void **state)
{
    (void)state;
    enum { N = 1000 };
    static float logits[N], work[N];
    const float temps[] = {0.01f, 0.5f, 1.0f, 7.0f, 100.0f};
    mdi_rng rng;
    mdi_rng_seed(&rng, 5, 0);
    for (size_t t = 0; t < sizeof temps / sizeof temps[0]; t++) {
        mdi_sampler g, k1;
        make_sampler(&g, N, 0.0f, 0, 1.0f);
        make_sampler(&k1, N, temps[t], 1, 0.9f);
        for (uint64_t trial = 0; trial < 20; trial++) {
            fill_logits(logits, N, trial, 4.0f);
            logits[(trial * 37) % N] = 10.0f; /* a tie for the maximum */
            logits[(trial * 91 + 5) % N] = 10.0f;
            int32_t want = draw(&g, logits, work, &rng);
            assert_int_equal(draw(&k1, logits, work, &rng), want);
        }
        mdi_sampler_free(&g);
        mdi_sampler_free(&k1);
    }
}

static void test_reproducible_samples(void **state)
{
    (void)state;
    enum { N = 500 };
    static float logits[N], work[N];
    mdi_sampler s;
    make_sampler(&s, N, 1.2f, 40, 0.9f);
    fill_logits(logits, N, 11, 3.0f);
    mdi_rng a, b, c;
    mdi_rng_seed(&a, 42, 0);
    mdi_rng_seed(&b, 42, 0);
    mdi_rng_seed(&c, 42, 1);
    int differ = 0;
    for (int i = 0; i < 200; i++) {
        int32_t ta = draw(&s, logits, work, &a);
        assert_int_equal(draw(&s, logits, work, &b), ta);
        differ += draw(&s, logits, work, &c) != ta;
    }
    assert_true(differ > 50); /* another stream gives another sequence */
    mdi_sampler_free(&s);
}

static void test_top_k_stays_in_k_best(void **state)
{
    (void)state;
    enum { N = 32000, K = 5, DRAWS = 3000 };
    static float logits[N], work[N];
    fill_logits(logits, N, 3, 1.0f);
    /* The k best, well apart from the rest but close to each other. */
    const int32_t best[K] = {31999, 17, 4000, 0, 12345};
    for (int i = 0; i < K; i++)
        logits[best[i]] = 1.5f + 0.1f * (float)i;
    mdi_sampler s;
    make_sampler(&s, N, 5.0f, K, 1.0f);
    mdi_rng rng;
    mdi_rng_seed(&rng, 42, 0);
    int hits[K] = {0};
    for (int d = 0; d < DRAWS; d++) {
        int32_t t = draw(&s, logits, work, &rng);
        int found = -1;
        for (int i = 0; i < K; i++)
            if (t == best[i])
                found = i;
        if (found < 0)
            fail_msg("top-k returned token %d outside the k best", t);
        hits[found]++;
    }
    for (int i = 0; i < K; i++)
        assert_true(hits[i] > DRAWS / K / 2);
    mdi_sampler_free(&s);
}

/* Logits for a distribution: logits[i] = log(p[i]). */
static void logits_of(float *l, const double *p, int32_t n)
{
    for (int32_t i = 0; i < n; i++)
        l[i] = (float)log(p[i]);
}

static void test_top_p_stays_in_nucleus(void **state)
{
    (void)state;
    enum { N = 1000, DRAWS = 20000 };
    static double p[N];
    static float logits[N], work[N];
    /* Token 7: 0.5, token 900: 0.3, the other 998 share 0.2. Nucleus for top_p
     * 0.75 is {7, 900}; for 0.45 it is {7}. */
    for (int i = 0; i < N; i++)
        p[i] = 0.2 / (N - 2);
    p[7] = 0.5;
    p[900] = 0.3;
    logits_of(logits, p, N);
    mdi_rng rng;
    mdi_rng_seed(&rng, 42, 0);

    mdi_sampler s;
    make_sampler(&s, N, 1.0f, 0, 0.75f);
    int n7 = 0;
    for (int d = 0; d < DRAWS; d++) {
        int32_t t = draw(&s, logits, work, &rng);
        if (t != 7 && t != 900)
            fail_msg("top-p 0.75 returned token %d outside the nucleus {7, 900}", t);
        n7 += t == 7;
    }
    /* Renormalised: P(7) = 0.5 / 0.8 = 0.625; sd over DRAWS ~ 0.0034. */
    assert_true(fabs((double)n7 / DRAWS - 0.625) < 5 * 0.0035);
    mdi_sampler_free(&s);

    make_sampler(&s, N, 1.0f, 0, 0.45f);
    for (int d = 0; d < 1000; d++)
        assert_int_equal(draw(&s, logits, work, &rng), 7);
    mdi_sampler_free(&s);

    /* Same nucleus behind a top-k of 3: {7, 900, 0} (the tail tie goes to id 0). */
    make_sampler(&s, N, 1.0f, 3, 0.9f);
    for (int d = 0; d < 1000; d++) {
        int32_t t = draw(&s, logits, work, &rng);
        assert_true(t == 7 || t == 900);
    }
    mdi_sampler_free(&s);
}

/* Chi-square of DRAWS samples against expected probabilities q (n); also checks
 * every bin within 5 sigma. */
static void expect_frequencies(mdi_sampler *s, const float *logits, const double *q, int32_t n,
                               int draws)
{
    float work[16];
    long counts[16] = {0};
    mdi_rng rng;
    mdi_rng_seed(&rng, 2024, 0);
    for (int d = 0; d < draws; d++)
        counts[draw(s, logits, work, &rng)]++;
    double chi2 = 0.0;
    int dof = -1;
    for (int32_t i = 0; i < n; i++) {
        double e = q[i] * draws;
        if (q[i] == 0.0) {
            assert_int_equal(counts[i], 0);
            continue;
        }
        double sd = sqrt(draws * q[i] * (1.0 - q[i]));
        if (fabs((double)counts[i] - e) > 5.0 * sd)
            fail_msg("token %d: %ld draws, expected %.1f +- %.1f", i, counts[i], e, sd);
        chi2 += ((double)counts[i] - e) * ((double)counts[i] - e) / e;
        dof++;
    }
    /* 99.999th percentile of chi-square with <= 4 degrees of freedom is < 30. */
    if (dof > 0 && chi2 > 30.0)
        fail_msg("chi-square %.2f with %d dof", chi2, dof);
}

/* softmax(l / t) restricted to the listed ids (others get 0), into q (n). */
static void softmax_restricted(double *q, const float *l, int32_t n, float t, const int *keep)
{
    double sum = 0.0;
    for (int32_t i = 0; i < n; i++) {
        q[i] = keep[i] ? exp((double)l[i] / t) : 0.0;
        sum += q[i];
    }
    for (int32_t i = 0; i < n; i++)
        q[i] /= sum;
}

static void test_frequencies_match_softmax(void **state)
{
    (void)state;
    enum { N = 5, DRAWS = 200000 };
    const float l[N] = {1.0f, 0.5f, -0.3f, 2.0f, 0.0f};
    const int all[N] = {1, 1, 1, 1, 1};
    double q[N];
    mdi_sampler s;

    make_sampler(&s, N, 1.0f, 0, 1.0f);
    softmax_restricted(q, l, N, 1.0f, all);
    expect_frequencies(&s, l, q, N, DRAWS);
    mdi_sampler_free(&s);

    make_sampler(&s, N, 0.5f, 0, 1.0f);
    softmax_restricted(q, l, N, 0.5f, all);
    expect_frequencies(&s, l, q, N, DRAWS);
    mdi_sampler_free(&s);

    const int top3[N] = {1, 1, 0, 1, 0}; /* ids 3, 0, 1 */
    make_sampler(&s, N, 1.0f, 3, 1.0f);
    softmax_restricted(q, l, N, 1.0f, top3);
    expect_frequencies(&s, l, q, N, DRAWS);
    mdi_sampler_free(&s);

    /* softmax(l) by rank: id 3 0.547, id 0 0.201, id 1 0.122, id 4 0.074, id 2 0.055;
     * top_p 0.6 keeps {3, 0}. */
    const int nucleus[N] = {1, 0, 0, 1, 0};
    make_sampler(&s, N, 1.0f, 0, 0.6f);
    softmax_restricted(q, l, N, 1.0f, nucleus);
    expect_frequencies(&s, l, q, N, DRAWS);
    mdi_sampler_free(&s);
}

static void test_edge_logits(void **state)
{
    (void)state;
    mdi_sampler s;
    mdi_rng rng;
    mdi_rng_seed(&rng, 9, 0);
    make_sampler(&s, 4, 1.0f, 0, 0.9f);
    for (int i = 0; i < 100; i++) {
        float inf[4] = {0.0f, INFINITY, 3.0f, NAN};
        assert_int_equal(mdi_sampler_sample(&s, inf, &rng), 1);
        float nan[4] = {NAN, -1.0f, NAN, NAN};
        assert_int_equal(mdi_sampler_sample(&s, nan, &rng), 1);
        float dead[4] = {-INFINITY, -INFINITY, -INFINITY, -INFINITY};
        assert_int_equal(mdi_sampler_sample(&s, dead, &rng), 0);
    }
    mdi_sampler_free(&s);

    /* A tiny temperature acts greedily instead of overflowing to NaN. */
    make_sampler(&s, 4, 1e-30f, 0, 1.0f);
    for (int i = 0; i < 100; i++) {
        float l[4] = {1.0f, 1.5f, 1.4999f, -3.0f};
        assert_int_equal(mdi_sampler_sample(&s, l, &rng), 1);
    }
    mdi_sampler_free(&s);

    /* Flat distribution with a tiny top-p: the prefilter must keep a token, and the
     * nucleus is the single lowest id. */
    make_sampler(&s, 8, 1.0f, 0, 0.01f);
    for (int i = 0; i < 100; i++) {
        float l[8] = {0};
        assert_int_equal(mdi_sampler_sample(&s, l, &rng), 0);
    }
    mdi_sampler_free(&s);

    /* Ties at the top-k boundary keep the lowest ids: {1, 2} of {1, 2, 3}. */
    make_sampler(&s, 4, 1.0f, 2, 1.0f);
    int seen[4] = {0};
    for (int i = 0; i < 1000; i++) {
        float l[4] = {1.0f, 5.0f, 5.0f, 5.0f};
        seen[mdi_sampler_sample(&s, l, &rng)]++;
    }
    assert_true(seen[0] == 0 && seen[3] == 0 && seen[1] > 300 && seen[2] > 300);
    mdi_sampler_free(&s);

    make_sampler(&s, 1, 1.0f, 0, 0.5f);
    float one[1] = {NAN};
    assert_int_equal(mdi_sampler_sample(&s, one, &rng), 0);
    mdi_sampler_free(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rng_reproducible),
        cmocka_unit_test(test_rng_pcg32_reference),
        cmocka_unit_test(test_rng_streams_and_seeds_differ),
        cmocka_unit_test(test_rng_f32_range),
        cmocka_unit_test(test_defaults_valid),
        cmocka_unit_test(test_validate),
        cmocka_unit_test(test_init_errors),
        cmocka_unit_test(test_greedy),
        cmocka_unit_test(test_top_k_one_is_greedy),
        cmocka_unit_test(test_reproducible_samples),
        cmocka_unit_test(test_top_k_stays_in_k_best),
        cmocka_unit_test(test_top_p_stays_in_nucleus),
        cmocka_unit_test(test_frequencies_match_softmax),
        cmocka_unit_test(test_edge_logits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

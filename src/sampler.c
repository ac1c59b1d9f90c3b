/* Token sampling: PCG32 streams, greedy, temperature, top-k and top-p.
 *
 * Defaults (mdi_sampler_default_params): temperature 0.8, top_k 0 (off),
 * top_p 0.95. Accepted ranges: temperature in [0, 100] (0 = greedy),
 * top_k >= 0 (0 = off), top_p in (0, 1] (1 = off). Top-p applies after top-k,
 * to the distribution renormalised over the k survivors. */
#include "mdi/sampler.h"

#include <math.h>
#include <stdlib.h>

/* One candidate token: its (unnormalised) probability and id. */
typedef struct mdi_cand {
    float p;
    int32_t id;
} mdi_cand;

/* SplitMix64 step: advances *x and returns a well-mixed 64-bit value. */
static uint64_t mdi_splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

void mdi_rng_seed(mdi_rng *r, uint64_t seed, uint64_t stream)
{
    /* Mix the seed first, then fold in the stream, so that nearby (seed, stream)
     * pairs land on unrelated PCG states and increments. */
    uint64_t x = seed;
    uint64_t y = mdi_splitmix64(&x) ^ stream;
    uint64_t init_state = mdi_splitmix64(&y);
    uint64_t init_seq = mdi_splitmix64(&y);
    r->state = 0;
    r->inc = (init_seq << 1) | 1u;
    mdi_rng_u32(r);
    r->state += init_state;
    mdi_rng_u32(r);
}

uint32_t mdi_rng_u32(mdi_rng *r)
{
    uint64_t old = r->state;
    r->state = old * 6364136223846793005ull + r->inc;
    uint32_t xorshifted = (uint32_t)(((old >> 18) ^ old) >> 27);
    uint32_t rot = (uint32_t)(old >> 59);
    return (xorshifted >> rot) | (xorshifted << ((32u - rot) & 31u));
}

float mdi_rng_f32(mdi_rng *r)
{
    return (float)(mdi_rng_u32(r) >> 8) * (1.0f / 16777216.0f);
}

mdi_sampler_params mdi_sampler_default_params(void)
{
    mdi_sampler_params p = {.temperature = 0.8f, .top_k = 0, .top_p = 0.95f};
    return p;
}

mdi_status mdi_sampler_params_validate(const mdi_sampler_params *p, mdi_err *err)
{
    if (!p)
        return mdi_errf(err, MDI_ERR_ARG, "sampler parameters are missing");
    if (!isfinite(p->temperature))
        return mdi_errf(err, MDI_ERR_RANGE, "--temperature %g is not a finite number",
                        (double)p->temperature);
    if (p->temperature < 0.0f)
        return mdi_errf(err, MDI_ERR_RANGE, "--temperature %.9g must be >= 0 (0 = greedy)",
                        (double)p->temperature);
    if (p->temperature > MDI_SAMPLER_MAX_TEMPERATURE)
        return mdi_errf(err, MDI_ERR_RANGE, "--temperature %.9g is above the maximum %g",
                        (double)p->temperature, (double)MDI_SAMPLER_MAX_TEMPERATURE);
    if (p->top_k < 0)
        return mdi_errf(err, MDI_ERR_RANGE, "--top-k %d must be >= 0 (0 = off)", (int)p->top_k);
    if (!(p->top_p > 0.0f && p->top_p <= 1.0f))
        return mdi_errf(err, MDI_ERR_RANGE, "--top-p %.9g is outside (0, 1]", (double)p->top_p);
    return MDI_OK;
}

mdi_status mdi_sampler_init(mdi_sampler *s, int32_t vocab_size, const mdi_sampler_params *p,
                            mdi_err *err)
{
    if (!s)
        return mdi_errf(err, MDI_ERR_ARG, "sampler is NULL");
    s->scratch = NULL;
    s->vocab_size = 0;
    if (vocab_size < 1)
        return mdi_errf(err, MDI_ERR_ARG, "sampler vocabulary size must be >= 1, got %d",
                        (int)vocab_size);
    mdi_status st = mdi_sampler_params_validate(p, err);
    if (st != MDI_OK)
        return st;
    s->scratch = malloc((size_t)vocab_size * sizeof(mdi_cand));
    if (!s->scratch)
        return mdi_errf(err, MDI_ERR_NOMEM, "sampler scratch for %d tokens: out of memory",
                        (int)vocab_size);
    s->params = *p;
    s->vocab_size = vocab_size;
    return MDI_OK;
}

void mdi_sampler_free(mdi_sampler *s)
{
    if (!s)
        return;
    free(s->scratch);
    s->scratch = NULL;
    s->vocab_size = 0;
}

/* Index of the largest logit; ties go to the lowest id, NaN is never chosen
 * (0 when every logit is NaN). */
static int32_t mdi_sampler_argmax(const float *logits, int32_t n)
{
    int32_t best = 0;
    float best_v = NAN;
    for (int32_t i = 0; i < n; i++) {
        if (!isnan(logits[i]) && (isnan(best_v) || logits[i] > best_v)) {
            best_v = logits[i];
            best = i;
        }
    }
    return best;
}

/* 1 if a ranks strictly before b: higher probability, then lower id. */
static int mdi_cand_before(const mdi_cand *a, const mdi_cand *b)
{
    return a->p > b->p || (a->p == b->p && a->id < b->id);
}

/* Restore the heap below i: h (n) is a heap whose root is the LAST-ranked item. */
static void mdi_heap_sift_down(mdi_cand *h, size_t n, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, worst = i;
        if (l < n && mdi_cand_before(&h[worst], &h[l]))
            worst = l;
        if (r < n && mdi_cand_before(&h[worst], &h[r]))
            worst = r;
        if (worst == i)
            return;
        mdi_cand t = h[i];
        h[i] = h[worst];
        h[worst] = t;
        i = worst;
    }
}

static void mdi_heap_build(mdi_cand *h, size_t n)
{
    for (size_t i = n / 2; i-- > 0;)
        mdi_heap_sift_down(h, n, i);
}

/* In-place heap sort of c (n) into rank order (most likely first); no allocation. */
static void mdi_cand_sort(mdi_cand *c, size_t n)
{
    mdi_heap_build(c, n);
    for (size_t end = n; end > 1; end--) {
        mdi_cand t = c[0];
        c[0] = c[end - 1];
        c[end - 1] = t;
        mdi_heap_sift_down(c, end - 1, 0);
    }
}

/* Keep the k best of probs (n) in c[0..k), sorted; O(n log k) partial selection. */
static void mdi_select_top_k(mdi_cand *c, const float *probs, size_t n, size_t k)
{
    for (size_t i = 0; i < k; i++)
        c[i] = (mdi_cand){probs[i], (int32_t)i};
    mdi_heap_build(c, k);
    for (size_t i = k; i < n; i++) {
        mdi_cand x = {probs[i], (int32_t)i};
        if (mdi_cand_before(&x, &c[0])) {
            c[0] = x;
            mdi_heap_sift_down(c, k, 0);
        }
    }
    mdi_cand_sort(c, k);
}

/* Softmax numerators in place: logits (n) -> exp((l - max) / T), so the most
 * likely token gets exactly 1; NaN -> 0. Returns their sum, or 0 (logits left
 * untouched) when no logit is usable (all NaN or -inf). */
static double mdi_softmax_numerators(float *logits, size_t n, float temperature)
{
    float max = -INFINITY;
    for (size_t i = 0; i < n; i++)
        if (logits[i] > max)
            max = logits[i];
    if (max == -INFINITY)
        return 0.0;
    double sum = 0.0;
    for (size_t i = 0; i < n; i++) {
        float l = logits[i], p;
        if (isnan(l))
            p = 0.0f;
        else if (isinf(max))
            p = (l == max) ? 1.0f : 0.0f;
        else
            p = expf((l - max) / temperature);
        logits[i] = p;
        sum += p;
    }
    return sum;
}

/* Draw from c (n, rank-ordered or not) with total mass `mass` using one uniform u. */
static int32_t mdi_draw_cands(const mdi_cand *c, size_t n, double mass, float u)
{
    double r = (double)u * mass, cdf = 0.0;
    for (size_t i = 0; i < n; i++) {
        cdf += c[i].p;
        if (r < cdf)
            return c[i].id;
    }
    for (size_t i = n; i-- > 0;)
        if (c[i].p > 0.0f)
            return c[i].id;
    return c[0].id;
}

/* Draw straight from probs (n) in id order, no cut; one uniform u. */
static int32_t mdi_draw_probs(const float *probs, size_t n, double mass, float u)
{
    double r = (double)u * mass, cdf = 0.0;
    int32_t last = 0;
    for (size_t i = 0; i < n; i++) {
        cdf += probs[i];
        if (probs[i] > 0.0f)
            last = (int32_t)i;
        if (r < cdf)
            return (int32_t)i;
    }
    return last;
}

/* Candidates that can be in the nucleus of probs (n, mass `sum`), into c:
 * a token below (1 - top_p) / (n - 1) of the mass cannot be (llama2.c). The
 * most likely token (numerator 1) always passes, so at most n - 1 are cut. */
static size_t mdi_nucleus_prefilter(mdi_cand *c, const float *probs, size_t n, double sum,
                                    float top_p)
{
    double cutoff = fmin((1.0 - (double)top_p) / (double)(n - 1) * sum, 1.0);
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        if (probs[i] > 0.0f && (double)probs[i] >= cutoff)
            c[m++] = (mdi_cand){probs[i], (int32_t)i};
    return m;
}

/* Length of the smallest rank-ordered prefix of c (n, mass `mass`) whose mass is
 * >= top_p of it; *kept gets that prefix's mass. */
static size_t mdi_nucleus_len(const mdi_cand *c, size_t n, double mass, float top_p, double *kept)
{
    double target = (double)top_p * mass, cum = 0.0;
    for (size_t i = 0; i < n; i++) {
        cum += c[i].p;
        if (cum >= target) {
            *kept = cum;
            return i + 1;
        }
    }
    *kept = cum;
    return n;
}

int32_t mdi_sampler_sample(mdi_sampler *s, float *logits, mdi_rng *rng)
{
    const mdi_sampler_params *p = &s->params;
    size_t n = (size_t)s->vocab_size;
    if (n <= 1)
        return 0;
    if (p->temperature == 0.0f || p->top_k == 1)
        return mdi_sampler_argmax(logits, s->vocab_size);

    double sum = mdi_softmax_numerators(logits, n, p->temperature);
    if (sum == 0.0)
        return mdi_sampler_argmax(logits, s->vocab_size); /* logits left untouched */

    int use_k = p->top_k > 0 && (size_t)p->top_k < n;
    int use_p = p->top_p < 1.0f;
    float u = mdi_rng_f32(rng);
    if (!use_k && !use_p)
        return mdi_draw_probs(logits, n, sum, u);

    mdi_cand *c = s->scratch;
    size_t m;
    double mass = 0.0;
    if (use_k) {
        m = (size_t)p->top_k;
        mdi_select_top_k(c, logits, n, m);
        for (size_t i = 0; i < m; i++)
            mass += c[i].p;
    } else {
        m = mdi_nucleus_prefilter(c, logits, n, sum, p->top_p);
        mdi_cand_sort(c, m);
        mass = sum;
    }
    if (use_p)
        m = mdi_nucleus_len(c, m, mass, p->top_p, &mass);
    return mdi_draw_cands(c, m, mass, u);
}

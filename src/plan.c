/* Placement in half-layers: balanced by memory or by time, or an explicit split. */
#include "mdi/plan.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Parameters of half-layer h (attention when even, MLP when odd). */
static uint64_t half_params(const mdi_config *c, int32_t h)
{
    return mdi_config_half_params(c, h % 2 ? MDI_HALF_MLP : MDI_HALF_ATTN);
}

/* Parameters of half-layers [first, last): whole layers plus the odd ends. */
static uint64_t range_params(const mdi_config *c, int32_t first, int32_t last)
{
    uint64_t sum = 0;
    if (first >= last)
        return 0;
    if (first % 2)
        sum += half_params(c, first++);
    if (last % 2 && first < last)
        sum += half_params(c, --last);
    return sum + (uint64_t)(last - first) / 2 * mdi_config_layer_params(c);
}

uint64_t mdi_plan_rank_bytes(const mdi_config *c, const int32_t *bounds, int32_t r)
{
    uint64_t params = range_params(c, bounds[r], bounds[r + 1]);
    if (r == 0)
        params += mdi_config_extra_params(c);
    return params * sizeof(float);
}

uint64_t mdi_plan_rank_step_bytes(const mdi_config *c, const int32_t *bounds, int32_t r)
{
    uint64_t params = range_params(c, bounds[r], bounds[r + 1]);
    if (r == 0)
        params += mdi_config_head_params(c);
    return params * sizeof(float);
}

mdi_status mdi_plan_parse_balance(const char *text, mdi_balance *out, mdi_err *err)
{
    if (text && !strcmp(text, "memory"))
        *out = MDI_BALANCE_MEMORY;
    else if (text && !strcmp(text, "time"))
        *out = MDI_BALANCE_TIME;
    else
        return mdi_errf(err, MDI_ERR_ARG, "--balance '%s': expected memory or time",
                        text ? text : "");
    return MDI_OK;
}

const char *mdi_plan_balance_name(mdi_balance how)
{
    return how == MDI_BALANCE_TIME ? "time" : "memory";
}

/* Fill bounds for the largest rank cost `cap`, later ranks first, each taking
 * as many half-layers as fit while leaving one for every earlier rank; 1 if
 * rank 0 (extra + what is left) fits too. Taking the most from the end leaves
 * the least to every earlier rank, so no plan fits cap where this one fails. */
static int fill_from_end(const mdi_config *c, int32_t n_ranks, uint64_t extra, uint64_t cap,
                         int32_t *bounds)
{
    int32_t H = 2 * c->n_layers, end = H;
    bounds[n_ranks] = H;
    for (int32_t r = n_ranks - 1; r >= 1; r--) {
        int32_t start = end;
        uint64_t cost = 0;
        while (start > r && cost + half_params(c, start - 1) <= cap)
            cost += half_params(c, --start);
        if (start == end)
            return 0;
        bounds[r] = end = start;
    }
    bounds[0] = 0;
    return extra + range_params(c, 0, end) <= cap;
}

mdi_status mdi_plan_balanced(const mdi_config *c, int32_t n_ranks, mdi_balance how, int32_t *bounds,
                             mdi_err *err)
{
    int32_t H = 2 * c->n_layers;
    if (n_ranks < 1)
        return mdi_errf(err, MDI_ERR_ARG, "number of ranks must be at least 1, got %d", n_ranks);
    if (n_ranks > H)
        return mdi_errf(err, MDI_ERR_RANGE,
                        "%d ranks but the model has only %d layers (%d half-layers): every rank "
                        "needs at least half a layer",
                        n_ranks, c->n_layers, H);
    uint64_t extra =
        how == MDI_BALANCE_TIME ? mdi_config_head_params(c) : mdi_config_extra_params(c);
    /* The smallest cap that fits: between the largest half-layer and everything. */
    uint64_t lo = extra + half_params(c, 0), hi = extra + range_params(c, 0, H);
    if (half_params(c, 1) > lo)
        lo = half_params(c, 1);
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        if (fill_from_end(c, n_ranks, extra, mid, bounds))
            hi = mid;
        else
            lo = mid + 1;
    }
    fill_from_end(c, n_ranks, extra, lo, bounds);
    return MDI_OK;
}

mdi_status mdi_plan_from_counts(const mdi_config *c, const int32_t *counts, int32_t n_ranks,
                                int32_t *bounds, mdi_err *err)
{
    int64_t sum = 0, H = 2 * (int64_t)c->n_layers;
    bounds[0] = 0;
    for (int32_t r = 0; r < n_ranks; r++) {
        if (counts[r] < 1)
            return mdi_errf(err, MDI_ERR_RANGE,
                            "split entry %d is %g layers: every rank needs at least half a layer",
                            r, counts[r] / 2.0);
        sum += counts[r];
        if (sum <= H)
            bounds[r + 1] = (int32_t)sum;
    }
    if (sum != H)
        return mdi_errf(err, MDI_ERR_RANGE, "split covers %g layers but the model has %d",
                        (double)sum / 2.0, c->n_layers);
    return MDI_OK;
}

mdi_status mdi_plan_parse_split(const char *text, int32_t *counts, int32_t cap, int32_t *n,
                                mdi_err *err)
{
    const char *p = text;
    int32_t k = 0;
    if (!text || !*text)
        return mdi_errf(err, MDI_ERR_ARG, "--split is empty; expected counts like 2,4,4");
    for (;;) {
        char *end;
        long halves = -1;
        errno = 0;
        if (*p >= '0' && *p <= '9') { /* no sign, no space: strtol would take them */
            long v = strtol(p, &end, 10);
            halves = errno || v > MDI_MAX_LAYERS ? -1 : 2 * v;
            if (halves >= 0 && end[0] == '.') {
                if (end[1] == '5' || end[1] == '0')
                    halves += end[1] == '5';
                else
                    halves = -1;
                end += 2;
            }
        }
        if (halves < 1 || halves > MDI_MAX_HALVES)
            return mdi_errf(err, MDI_ERR_ARG,
                            "--split '%s': expected layer counts like 2,4,4 or 10.5,11.5 "
                            "(whole or half layers, at least 0.5 each) separated by commas",
                            text);
        if (k == cap)
            return mdi_errf(err, MDI_ERR_RANGE, "--split '%s' has more than %d entries", text, cap);
        counts[k++] = (int32_t)halves;
        if (*end == '\0')
            break;
        if (*end != ',')
            return mdi_errf(err, MDI_ERR_ARG, "--split '%s': unexpected character '%c'", text,
                            *end);
        p = end + 1;
    }
    *n = k;
    return MDI_OK;
}

void mdi_plan_describe(int32_t first, int32_t last, char *buf, size_t cap)
{
    int32_t lf = (first + 1) / 2, ll = last / 2; /* whole layers [lf, ll) */
    int n = 0;
    buf[0] = '\0';
    if (first % 2)
        n += snprintf(buf, cap, "layer %d's MLP", first / 2);
    if (ll > lf && (size_t)n < cap)
        n += snprintf(buf + n, cap - (size_t)n, "%s%s %d", n ? " and " : "",
                      ll - lf == 1 ? "layer" : "layers", lf);
    if (ll - lf > 1 && (size_t)n < cap)
        n += snprintf(buf + n, cap - (size_t)n, "-%d", ll - 1);
    if (last % 2 && (size_t)n < cap)
        snprintf(buf + n, cap - (size_t)n, "%slayer %d's attention", n ? " and " : "", last / 2);
}

static mdi_status check_same_model(const mdi_shard_info *in, int32_t n, mdi_err *err)
{
    for (int32_t r = 1; r < n; r++) {
        if (strcmp(in[r].model_id, in[0].model_id) != 0)
            return mdi_errf(err, MDI_ERR_MISMATCH,
                            "rank %d's model file is from model %s but rank 0's is from model %s: "
                            "shards of different models",
                            r, in[r].model_id, in[0].model_id);
        if (!mdi_config_equal(&in[r].cfg, &in[0].cfg))
            return mdi_errf(err, MDI_ERR_MISMATCH,
                            "rank %d's model file has a different geometry from rank 0's", r);
        if ((in[r].shard_count > 1) != (in[0].shard_count > 1))
            return mdi_errf(err, MDI_ERR_MISMATCH,
                            "rank %d and rank 0 disagree: one has a whole-model file, the other a "
                            "shard",
                            r);
    }
    return MDI_OK;
}

static mdi_status check_shards(const mdi_shard_info *in, int32_t n, int32_t *bounds, mdi_err *err)
{
    int32_t H = 2 * in[0].cfg.n_layers;
    char a[96], b[96];
    if (in[0].shard_count != n)
        return mdi_errf(err, MDI_ERR_MISMATCH,
                        "the shards are a %d-way split but %d ranks were started: run with -np %d "
                        "or convert again with --shards %d",
                        in[0].shard_count, n, in[0].shard_count, n);
    bounds[0] = 0;
    for (int32_t r = 0; r < n; r++) {
        if (in[r].shard_count != n || in[r].shard_index != r)
            return mdi_errf(err, MDI_ERR_MISMATCH, "rank %d has shard %d of %d, expected %d of %d",
                            r, in[r].shard_index, in[r].shard_count, r, n);
        if (in[r].half_last <= in[r].half_first)
            return mdi_errf(err, MDI_ERR_MISMATCH,
                            "rank %d's shard has the empty half-layer range [%d, %d)", r,
                            in[r].half_first, in[r].half_last);
        if (in[r].half_first != bounds[r]) {
            mdi_plan_describe(in[r].half_first, in[r].half_last, a, sizeof a);
            mdi_plan_describe(bounds[r], bounds[r] + 1, b, sizeof b);
            return mdi_errf(err, MDI_ERR_MISMATCH,
                            "rank %d's shard holds %s but %s is next: the shards leave a gap or "
                            "overlap",
                            r, a, b);
        }
        bounds[r + 1] = in[r].half_last;
    }
    if (bounds[n] != H) {
        mdi_plan_describe(bounds[n - 1], bounds[n], a, sizeof a);
        return mdi_errf(err, MDI_ERR_MISMATCH,
                        "the last shard holds %s but the model has %d layers: the shards stop "
                        "short",
                        a, H / 2);
    }
    return MDI_OK;
}

mdi_status mdi_plan_check(const mdi_shard_info *infos, int32_t n_ranks, const int32_t *counts,
                          int32_t n_counts, const mdi_balance *how, int32_t *bounds, mdi_err *err)
{
    mdi_status s = check_same_model(infos, n_ranks, err);
    if (s)
        return s;
    const mdi_config *c = &infos[0].cfg;
    if (n_ranks > 2 * c->n_layers)
        return mdi_errf(err, MDI_ERR_RANGE,
                        "%d ranks but the model has only %d layers (%d half-layers): every rank "
                        "needs at least half a layer",
                        n_ranks, c->n_layers, 2 * c->n_layers);
    if (counts && how)
        return mdi_errf(err, MDI_ERR_ARG, "give either --split or --balance, not both");
    if (infos[0].shard_count > 1) {
        if (how)
            return mdi_errf(err, MDI_ERR_ARG,
                            "--balance applies to a whole-model file; these shards already fix "
                            "the placement (convert with mdi-convert --balance to change it)");
        if ((s = check_shards(infos, n_ranks, bounds, err)))
            return s;
        for (int32_t r = 0; counts && r < n_ranks; r++)
            if (n_counts != n_ranks || counts[r] != bounds[r + 1] - bounds[r])
                return mdi_errf(err, MDI_ERR_MISMATCH,
                                "--split disagrees with the shards' own layer ranges");
        return MDI_OK;
    }
    for (int32_t r = 0; r < n_ranks; r++)
        if (infos[r].half_first != 0 || infos[r].half_last != 2 * c->n_layers)
            return mdi_errf(err, MDI_ERR_MISMATCH, "rank %d's file does not hold the whole model",
                            r);
    if (counts) {
        if (n_counts != n_ranks)
            return mdi_errf(err, MDI_ERR_MISMATCH,
                            "--split has %d entries but %d ranks were "
                            "started",
                            n_counts, n_ranks);
        return mdi_plan_from_counts(c, counts, n_ranks, bounds, err);
    }
    return mdi_plan_balanced(c, n_ranks, how ? *how : MDI_BALANCE_DEFAULT, bounds, err);
}

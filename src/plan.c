/* Layer placement: balanced by weight bytes, or from an explicit split. */
#include "mdi/plan.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

uint64_t mdi_plan_rank_bytes(const mdi_config *c, const int32_t *bounds, int32_t r)
{
    uint64_t layers = (uint64_t)(bounds[r + 1] - bounds[r]);
    uint64_t params = layers * mdi_config_layer_params(c);
    if (r == 0)
        params += mdi_config_extra_params(c);
    return params * sizeof(float);
}

mdi_status mdi_plan_balanced(const mdi_config *c, int32_t n_ranks, int32_t *bounds, mdi_err *err)
{
    int32_t L = c->n_layers;
    if (n_ranks < 1)
        return mdi_errf(err, MDI_ERR_ARG, "number of ranks must be at least 1, got %d", n_ranks);
    if (n_ranks > L)
        return mdi_errf(err, MDI_ERR_RANGE,
                        "%d ranks but the model has only %d layers: every rank needs at least "
                        "one layer",
                        n_ranks, L);
    bounds[0] = 0;
    bounds[n_ranks] = L;
    if (n_ranks == 1)
        return MDI_OK;

    /* Layers are all the same size, so choose rank 0's count n0 to minimise
     * max(extras + n0 * layer, ceil((L - n0) / (n_ranks - 1)) * layer);
     * ties go to the larger n0 (less traffic for the others). */
    uint64_t layer = mdi_config_layer_params(c), extra = mdi_config_extra_params(c);
    int32_t others = n_ranks - 1, best_n0 = 1;
    uint64_t best = UINT64_MAX;
    for (int32_t n0 = 1; n0 <= L - others; n0++) {
        uint64_t rest = (uint64_t)(L - n0), per = (rest + (uint64_t)others - 1) / (uint64_t)others;
        uint64_t r0 = extra + (uint64_t)n0 * layer, rk = per * layer;
        uint64_t worst = r0 > rk ? r0 : rk;
        if (worst <= best) {
            best = worst;
            best_n0 = n0;
        }
    }
    /* Remaining layers spread evenly; the earlier of the other ranks get the extra ones. */
    int32_t rest = L - best_n0, base = rest / others, extra_layers = rest % others;
    bounds[1] = best_n0;
    for (int32_t r = 1; r < n_ranks; r++)
        bounds[r + 1] = bounds[r] + base + (r - 1 < extra_layers ? 1 : 0);
    return MDI_OK;
}

mdi_status mdi_plan_from_counts(const mdi_config *c, const int32_t *counts, int32_t n_ranks,
                                int32_t *bounds, mdi_err *err)
{
    int64_t sum = 0;
    bounds[0] = 0;
    for (int32_t r = 0; r < n_ranks; r++) {
        if (counts[r] < 1)
            return mdi_errf(err, MDI_ERR_RANGE,
                            "split entry %d is %d: every rank needs at least "
                            "one layer",
                            r, counts[r]);
        sum += counts[r];
        if (sum <= c->n_layers)
            bounds[r + 1] = (int32_t)sum;
    }
    if (sum != c->n_layers)
        return mdi_errf(err, MDI_ERR_RANGE, "split covers %lld layers but the model has %d",
                        (long long)sum, c->n_layers);
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
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || errno || v < 1 || v > MDI_MAX_LAYERS)
            return mdi_errf(err, MDI_ERR_ARG,
                            "--split '%s': expected positive layer counts separated by commas",
                            text);
        if (k == cap)
            return mdi_errf(err, MDI_ERR_RANGE, "--split '%s' has more than %d entries", text, cap);
        counts[k++] = (int32_t)v;
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
    int32_t L = in[0].cfg.n_layers;
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
        if (in[r].layer_last <= in[r].layer_first)
            return mdi_errf(err, MDI_ERR_MISMATCH,
                            "rank %d's shard has the empty layer range "
                            "[%d, %d)",
                            r, in[r].layer_first, in[r].layer_last);
        if (in[r].layer_first != bounds[r])
            return mdi_errf(err, MDI_ERR_MISMATCH,
                            "rank %d's shard starts at layer %d but layer %d is next: the shards "
                            "leave a gap or overlap",
                            r, in[r].layer_first, bounds[r]);
        bounds[r + 1] = in[r].layer_last;
    }
    if (bounds[n] != L)
        return mdi_errf(err, MDI_ERR_MISMATCH, "the shards end at layer %d but the model has %d",
                        bounds[n], L);
    return MDI_OK;
}

mdi_status mdi_plan_check(const mdi_shard_info *infos, int32_t n_ranks, const int32_t *counts,
                          int32_t n_counts, int32_t *bounds, mdi_err *err)
{
    mdi_status s = check_same_model(infos, n_ranks, err);
    if (s)
        return s;
    const mdi_config *c = &infos[0].cfg;
    if (n_ranks > c->n_layers)
        return mdi_errf(err, MDI_ERR_RANGE,
                        "%d ranks but the model has only %d layers: every rank needs at least "
                        "one layer",
                        n_ranks, c->n_layers);
    if (infos[0].shard_count > 1) {
        if ((s = check_shards(infos, n_ranks, bounds, err)))
            return s;
        for (int32_t r = 0; counts && r < n_ranks; r++)
            if (n_counts != n_ranks || counts[r] != bounds[r + 1] - bounds[r])
                return mdi_errf(err, MDI_ERR_MISMATCH,
                                "--split disagrees with the shards' own layer ranges");
        return MDI_OK;
    }
    for (int32_t r = 0; r < n_ranks; r++)
        if (infos[r].layer_first != 0 || infos[r].layer_last != c->n_layers)
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
    return mdi_plan_balanced(c, n_ranks, bounds, err);
}

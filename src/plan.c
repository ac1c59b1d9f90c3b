/* Placement in half-layers: balanced by memory or by time, or an explicit split. */
#include "mdi/plan.h"

#include <errno.h>
#include <math.h>
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

/* Scratch of mdi_plan_balanced: prefix sums of the half-layers' costs and
 * which prefixes ranks 0..r-1 can cover exactly. */
typedef struct plan_work {
    int32_t n, H;
    const uint32_t *speeds; /* NULL: all 1 */
    uint64_t extra;
    uint64_t *sum;  /* (H + 1): sum[b] = cost of half-layers [0, b) */
    uint8_t *cover; /* (n, H + 1): cover[r][b] = ranks 0..r can cover [0, b) */
    int32_t *count; /* (H + 2): prefix counts of one row of cover */
} plan_work;

/* The smallest start a of a range [a, b) that rank r may take within room:
 * sum[b] - sum[a] <= room. b when not even half-layer b - 1 fits. */
static int32_t first_start(const plan_work *w, int32_t b, uint64_t room)
{
    int32_t lo = 0, hi = b; /* sum is increasing: bisect */
    while (lo < hi) {
        int32_t mid = lo + (hi - lo) / 2;
        if (w->sum[b] - w->sum[mid] <= room)
            hi = mid;
        else
            lo = mid + 1;
    }
    return lo;
}

/* What rank r may take under cap: cap at full speed (MDI_SPEED_SCALE). */
static uint64_t room_of(const plan_work *w, int32_t r, uint64_t cap)
{
    return w->speeds ? cap * w->speeds[r] / MDI_SPEED_SCALE : cap;
}

/* Fill w->cover for the largest cost `cap` (room_of); 1 if the n ranks can cover every half-layer.
 * Rank 0 starts at 0 and pays the extra; every range is non-empty. */
static int cover_all(plan_work *w, uint64_t cap)
{
    int32_t H = w->H;
    uint8_t *row = w->cover;
    uint64_t room0 = room_of(w, 0, cap);
    for (int32_t b = 0; b <= H; b++)
        row[b] = b >= 1 && room0 >= w->extra && w->sum[b] <= room0 - w->extra;
    for (int32_t r = 1; r < w->n; r++) {
        uint8_t *prev = row;
        uint64_t room = room_of(w, r, cap);
        row += H + 1;
        w->count[0] = 0;
        for (int32_t b = 0; b <= H; b++)
            w->count[b + 1] = w->count[b] + prev[b];
        for (int32_t b = 0; b <= H; b++) { /* some a in [first_start, b) that prev covers */
            int32_t a = first_start(w, b, room);
            row[b] = b > 0 && a < b && w->count[b] - w->count[a] > 0;
        }
    }
    return row[H];
}

/* The plan for a cap that cover_all accepted: from the last rank back, each
 * rank starts as early as lets the earlier ranks still cover the rest. */
static void take_from_end(const plan_work *w, uint64_t cap, int32_t *bounds)
{
    int32_t end = w->H;
    bounds[w->n] = end;
    for (int32_t r = w->n - 1; r >= 1; r--) {
        const uint8_t *prev = w->cover + (size_t)(r - 1) * (size_t)(w->H + 1);
        int32_t a = first_start(w, end, room_of(w, r, cap));
        while (!prev[a])
            a++;
        bounds[r] = end = a;
    }
    bounds[0] = 0;
}

mdi_status mdi_plan_balanced(const mdi_config *c, int32_t n_ranks, mdi_balance how,
                             const uint32_t *speeds, int32_t *bounds, mdi_err *err)
{
    int32_t H = 2 * c->n_layers;
    if (n_ranks < 1)
        return mdi_errf(err, MDI_ERR_ARG, "number of ranks must be at least 1, got %d", n_ranks);
    if (n_ranks > H)
        return mdi_errf(err, MDI_ERR_RANGE,
                        "%d ranks but the model has only %d layer%s (%d half-layers): every "
                        "rank needs at least half a layer",
                        n_ranks, c->n_layers, c->n_layers == 1 ? "" : "s", H);
    for (int32_t r = 0; speeds && r < n_ranks; r++)
        if (speeds[r] < 1 || speeds[r] > MDI_SPEED_SCALE)
            return mdi_errf(err, MDI_ERR_ARG, "rank %d's speed %u is outside 1..%d", r,
                            (unsigned)speeds[r], MDI_SPEED_SCALE);
    plan_work w = {
        .n = n_ranks,
        .H = H,
        .speeds = speeds,
        .extra = how == MDI_BALANCE_TIME ? mdi_config_head_params(c) : mdi_config_extra_params(c),
        .sum = malloc(((size_t)H + 1) * sizeof *w.sum),
        .cover = malloc((size_t)n_ranks * ((size_t)H + 1)),
        .count = malloc(((size_t)H + 2) * sizeof *w.count),
    };
    mdi_status s = MDI_OK;
    if (!w.sum || !w.cover || !w.count) {
        s = mdi_errf(err, MDI_ERR_NOMEM, "cannot allocate the placement search (%d ranks)",
                     n_ranks);
        goto done;
    }
    w.sum[0] = 0;
    for (int32_t h = 0; h < H; h++)
        w.sum[h + 1] = w.sum[h] + half_params(c, h);
    /* The smallest cap that fits: everything fits a cap of the whole model
     * times MDI_SPEED_SCALE, since every speed is at least 1. */
    uint64_t lo = 0, hi = (w.extra + w.sum[H]) * (speeds ? MDI_SPEED_SCALE : 1);
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        if (cover_all(&w, mid))
            hi = mid;
        else
            lo = mid + 1;
    }
    cover_all(&w, lo);
    take_from_end(&w, lo, bounds);
done:
    free(w.sum);
    free(w.cover);
    free(w.count);
    return s;
}

/* One entry of a comma list at p: its value, or a negative one when p does
 * not start with one; *end past what was read. */
typedef double (*list_entry)(const char *p, char **end);

/* Where parse_list stores entry k: as a double or as an int32, or nowhere;
 * and the smallest and largest entry. */
typedef struct list_out {
    double *d;
    int32_t *i;
    double lo, hi;
} list_out;

/* Parse text, entries separated by commas, at most cap of them, into out;
 * *n gets their number. flag and `expect` (what an entry looks like) name
 * the option in messages. */
static mdi_status parse_list(const char *flag, const char *text, const char *expect, list_entry one,
                             list_out *out, int32_t cap, int32_t *n, mdi_err *err)
{
    int32_t k = 0;
    if (!text || !*text)
        return mdi_errf(err, MDI_ERR_ARG, "%s is empty; expected %s", flag, expect);
    for (const char *p = text;;) {
        char *end = (char *)p;
        double v = one(p, &end);
        if (v < 0.0)
            return mdi_errf(err, MDI_ERR_ARG, "%s '%s': expected %s separated by commas", flag,
                            text, expect);
        if (k == cap)
            return mdi_errf(err, MDI_ERR_RANGE, "%s '%s' has more than %d entries", flag, text,
                            cap);
        if (out->d)
            out->d[k] = v;
        if (out->i)
            out->i[k] = (int32_t)v;
        out->lo = k == 0 || v < out->lo ? v : out->lo;
        out->hi = k == 0 || v > out->hi ? v : out->hi;
        k++;
        if (*end == '\0')
            break;
        if (*end != ',')
            return mdi_errf(err, MDI_ERR_ARG,
                            "%s '%s': unexpected character '%c'; expected %s separated by "
                            "commas",
                            flag, text, *end, expect);
        p = end + 1;
    }
    *n = k;
    return MDI_OK;
}

/* A relative speed: a positive decimal number up to 1e9; no sign, space,
 * inf, nan or hexadecimal, which strtod would take. */
static double speed_entry(const char *p, char **end)
{
    double v = -1.0;
    errno = 0;
    if ((*p >= '0' && *p <= '9') || *p == '.')
        v = strtod(p, end);
    for (const char *q = p; q < *end; q++)
        if (*q == 'x' || *q == 'X' || *q == 'p' || *q == 'P')
            v = -1.0;
    return *end == p || errno || !(v > 0.0) || v > 1e9 ? -1.0 : v;
}

mdi_status mdi_plan_parse_speeds(const char *text, double *speeds, int32_t cap, int32_t *n,
                                 mdi_err *err)
{
    list_out out = {speeds, NULL, 0.0, 0.0};
    mdi_status s = parse_list("--speeds", text,
                              "auto, or one positive number (at most 1e9) per rank like 2,1,1 "
                              "(relative speeds)",
                              speed_entry, &out, cap, n, err);
    /* speeds become thousandths of the fastest: a wider spread would be
     * changed, so it is refused */
    if (!s && out.hi / out.lo > MDI_SPEED_SCALE)
        return mdi_errf(err, MDI_ERR_RANGE,
                        "--speeds '%s': the fastest rank is %.7g times as fast as the slowest; "
                        "speeds may differ by at most %d:1",
                        text, out.hi / out.lo, MDI_SPEED_SCALE);
    return s;
}

void mdi_plan_snap_speeds(double *speeds, int32_t n)
{
    double top = 0.0;
    for (int32_t r = 0; r < n; r++)
        top = speeds[r] > top ? speeds[r] : top;
    for (int32_t r = 0; r < n && top > 0.0; r++)
        if (speeds[r] > 0.0)
            speeds[r] =
                top * exp2(round(MDI_SPEED_STEPS * log2(speeds[r] / top)) / MDI_SPEED_STEPS);
}

void mdi_plan_speed_weights(const double *speeds, int32_t n, uint32_t *weights)
{
    double top = 0.0;
    for (int32_t r = 0; r < n; r++)
        top = speeds[r] > top ? speeds[r] : top;
    for (int32_t r = 0; r < n; r++) {
        double w = top > 0.0 ? speeds[r] / top * MDI_SPEED_SCALE + 0.5 : 1.0;
        weights[r] = w < 1.0 ? 1u : w > MDI_SPEED_SCALE ? MDI_SPEED_SCALE : (uint32_t)w;
    }
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

/* A layer count in half-layers: a whole number or one and a half ("10",
 * "10.5", "10.0", "10.50"), at least half a layer; no sign or space. */
static double split_entry(const char *p, char **end)
{
    long halves = -1;
    errno = 0;
    if (*p >= '0' && *p <= '9') {
        long v = strtol(p, end, 10);
        halves = errno || v > MDI_MAX_LAYERS ? -1 : 2 * v;
        if (halves >= 0 && (*end)[0] == '.') { /* .0 or .5, then any zeros: 2.50 is 2.5 */
            if ((*end)[1] != '5' && (*end)[1] != '0')
                return -1.0; /* "2.", "2.25" */
            halves += (*end)[1] == '5';
            *end += 2;
            while (**end == '0')
                (*end)++;
            if (**end >= '0' && **end <= '9') /* 2.05, 2.501: not a half */
                halves = -1;
        }
    }
    return halves < 1 || halves > MDI_MAX_HALVES ? -1.0 : (double)halves;
}

mdi_status mdi_plan_parse_split(const char *text, int32_t *counts, int32_t cap, int32_t *n,
                                mdi_err *err)
{
    list_out out = {NULL, counts, 0.0, 0.0};
    return parse_list("--split", text,
                      "layer counts like 2,4,4 or 10.5,11.5 (whole or half layers, at least 0.5 "
                      "each)",
                      split_entry, &out, cap, n, err);
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
                        "the shards are a %d-way split but %d rank%s started: run with -np %d "
                        "or convert again with --shards %d",
                        in[0].shard_count, n, n == 1 ? " was" : "s were", in[0].shard_count, n);
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
                          int32_t n_counts, const mdi_balance *how, const uint32_t *speeds,
                          int32_t *bounds, mdi_err *err)
{
    mdi_status s = check_same_model(infos, n_ranks, err);
    if (s)
        return s;
    const mdi_config *c = &infos[0].cfg;
    if (n_ranks > 2 * c->n_layers)
        return mdi_errf(err, MDI_ERR_RANGE,
                        "%d ranks but the model has only %d layer%s (%d half-layers): every "
                        "rank needs at least half a layer",
                        n_ranks, c->n_layers, c->n_layers == 1 ? "" : "s", 2 * c->n_layers);
    if (counts && how)
        return mdi_errf(err, MDI_ERR_ARG, "give either --split or --balance, not both");
    if (counts && speeds)
        return mdi_errf(err, MDI_ERR_ARG,
                        "give either --split or --speeds, not both (--speeds weighs the "
                        "balanced plan; --split fixes every rank's layers)");
    if (speeds && how && *how != MDI_BALANCE_TIME)
        return mdi_errf(err, MDI_ERR_ARG,
                        "--speeds weighs the time balance; --balance memory evens out memory, "
                        "which does not depend on speed");
    if (infos[0].shard_count > 1) {
        if (how || speeds)
            return mdi_errf(err, MDI_ERR_ARG,
                            "%s applies to a whole-model file; these shards already fix "
                            "the placement (convert with mdi-convert %s to change it)",
                            how ? "--balance" : "--speeds", how ? "--balance" : "--split");
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
            return mdi_errf(err, MDI_ERR_MISMATCH, "--split has %d entr%s but %d rank%s started",
                            n_counts, n_counts == 1 ? "y" : "ies", n_ranks,
                            n_ranks == 1 ? " was" : "s were");
        return mdi_plan_from_counts(c, counts, n_ranks, bounds, err);
    }
    return mdi_plan_balanced(c, n_ranks, how ? *how : MDI_BALANCE_DEFAULT, speeds, bounds, err);
}

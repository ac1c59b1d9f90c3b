/* Which rank owns which part of the model. Pure functions: every rank (and
 * the converter) computes the same plan from the same inputs.
 *
 * The unit of placement is the half-layer (model_config.h): a rank may end
 * after a layer's attention and the next rank start with that layer's MLP.
 * Whole layers are the even boundaries. */
#ifndef MDI_PLAN_H
#define MDI_PLAN_H

#include <stddef.h>
#include <stdint.h>

#include "mdi/model_config.h"
#include "mdi/status.h"

/* Boundaries: rank r owns half-layers [bounds[r], bounds[r+1]); bounds has
 * n_ranks+1 entries, bounds[0] = 0, bounds[n_ranks] = 2 * n_layers, every
 * range non-empty. Rank 0 also holds the embedding, final norm and head. */

/* What a balanced plan evens out across the ranks:
 * MEMORY: the weight bytes each rank holds (rank 0's embedding counts);
 * TIME:   the weight bytes each rank reads per generated token (rank 0's head
 *         counts, its embedding, only looked up, does not). */
typedef enum { MDI_BALANCE_TIME = 0, MDI_BALANCE_MEMORY = 1 } mdi_balance;
/* The engine's and the converter's choice when none is given: a rank that
 * reads more per token than the others sets the pace of the whole ring,
 * while memory differs by a few percent between the two plans. Zero, so that
 * zeroed options mean the default. */
#define MDI_BALANCE_DEFAULT MDI_BALANCE_TIME

/* "memory" or "time". */
mdi_status mdi_plan_parse_balance(const char *text, mdi_balance *out, mdi_err *err);
const char *mdi_plan_balance_name(mdi_balance how);

/* Relative speeds of the ranks (hosts of different kinds), in thousandths of
 * the fastest: 1..MDI_SPEED_SCALE. A rank of speed w may take w/1000 of the
 * cost a full-speed rank may take. Integers, so that every rank, whatever its
 * CPU, computes the same plan. */
#define MDI_SPEED_SCALE 1000

/* The contiguous plan whose largest rank cost (as `how` counts it, divided
 * by the rank's speed) is the smallest possible; among those, later ranks
 * take as much as they can, so rank 0 carries the least. speeds: n_ranks
 * entries, or NULL for equal ranks. Fails when n_ranks > 2 * n_layers or a
 * speed is outside 1..MDI_SPEED_SCALE. */
mdi_status mdi_plan_balanced(const mdi_config *c, int32_t n_ranks, mdi_balance how,
                             const uint32_t *speeds, int32_t *bounds, mdi_err *err);

/* Parse relative speeds "2,1,1" or "1,0.45" (positive numbers up to 1e9, at
 * most cap of them, the fastest at most MDI_SPEED_SCALE times the slowest;
 * speeds may be NULL to count only); *n gets the number parsed.
 * "auto" is the engine's to handle, not this parser's. */
mdi_status mdi_plan_parse_speeds(const char *text, double *speeds, int32_t cap, int32_t *n,
                                 mdi_err *err);
/* Round measured speeds to steps of 1/MDI_SPEED_STEPS octave from the
 * fastest (4.4%), so that hosts alike within about 2% get the same speed and
 * the same plan from run to run. */
#define MDI_SPEED_STEPS 16
void mdi_plan_snap_speeds(double *speeds, int32_t n);
/* Relative speeds (any positive scale) -> weights for mdi_plan_balanced: the
 * fastest rank gets MDI_SPEED_SCALE, every rank at least 1. */
void mdi_plan_speed_weights(const double *speeds, int32_t n, uint32_t *weights);

/* From explicit per-rank counts of half-layers (>= 1 each, summing to
 * 2 * n_layers). */
mdi_status mdi_plan_from_counts(const mdi_config *c, const int32_t *counts, int32_t n_ranks,
                                int32_t *bounds, mdi_err *err);

/* Parse layer counts "2,4,4" or "10.5,11.5" (a count is a whole number of
 * layers, or one and a half) into half-layer counts (4,8,8 / 21,23), at most
 * cap entries; *n gets the number parsed. */
mdi_status mdi_plan_parse_split(const char *text, int32_t *counts, int32_t cap, int32_t *n,
                                mdi_err *err);

/* Weight bytes (float32) rank r holds under bounds. */
uint64_t mdi_plan_rank_bytes(const mdi_config *c, const int32_t *bounds, int32_t r);
/* Weight bytes (float32) rank r reads per generated token under bounds. */
uint64_t mdi_plan_rank_step_bytes(const mdi_config *c, const int32_t *bounds, int32_t r);

/* Format half-layer range [first, last) for people: "layers 0-9 and 10's
 * attention", "layer 10's MLP and layers 11-21", "layers 0-21". */
void mdi_plan_describe(int32_t first, int32_t last, char *buf, size_t cap);

/* Decide every rank's range from what each rank found (infos[r] for rank r),
 * an optional explicit split (counts in half-layers, n_counts; NULL for none)
 * or an optional balance (NULL: MDI_BALANCE_DEFAULT) with optional speeds
 * (mdi_plan_balanced; time balance only). Whole-model files: balanced or split plan.
 * Shards: each rank's own shard, which must be of one model, one geometry,
 * one N-way split with N == n_ranks, covering every half-layer once in rank
 * order. Pure: every rank gets the same answer and the same message. */
mdi_status mdi_plan_check(const mdi_shard_info *infos, int32_t n_ranks, const int32_t *counts,
                          int32_t n_counts, const mdi_balance *how, const uint32_t *speeds,
                          int32_t *bounds, mdi_err *err);

#endif /* MDI_PLAN_H */

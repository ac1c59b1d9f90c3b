/* Which rank owns which layers. Pure functions: every rank (and the
 * converter) computes the same plan from the same inputs. */
#ifndef MDI_PLAN_H
#define MDI_PLAN_H

#include <stdint.h>

#include "mdi/model_config.h"
#include "mdi/status.h"

/* Layer boundaries: rank r owns [bounds[r], bounds[r+1]); bounds has n_ranks+1
 * entries, bounds[0] = 0, bounds[n_ranks] = n_layers, every range non-empty. */

/* Balance by bytes: rank 0 also carries the embedding, final norm and output
 * head, so it gets fewer layers; minimises the largest rank's weight bytes.
 * Fails when n_ranks > n_layers. */
mdi_status mdi_plan_balanced(const mdi_config *c, int32_t n_ranks, int32_t *bounds, mdi_err *err);

/* From explicit per-rank layer counts (must be >= 1 each and sum to n_layers). */
mdi_status mdi_plan_from_counts(const mdi_config *c, const int32_t *counts, int32_t n_ranks,
                                int32_t *bounds, mdi_err *err);

/* Parse "2,4,4" into counts (at most cap entries); *n gets the number parsed. */
mdi_status mdi_plan_parse_split(const char *text, int32_t *counts, int32_t cap, int32_t *n,
                                mdi_err *err);

/* Weight bytes (float32) that rank r holds under bounds. */
uint64_t mdi_plan_rank_bytes(const mdi_config *c, const int32_t *bounds, int32_t r);

/* Decide every rank's layer range from what each rank found (infos[r] for
 * rank r) and an optional explicit split (counts, n_counts; NULL for none).
 * Whole-model files: balanced or split plan. Shards: each rank's own shard,
 * which must be of one model, one geometry, one N-way split with N == n_ranks,
 * covering every layer once in rank order. Pure: every rank gets the same
 * answer and the same message. */
mdi_status mdi_plan_check(const mdi_shard_info *infos, int32_t n_ranks, const int32_t *counts,
                          int32_t n_counts, int32_t *bounds, mdi_err *err);

#endif /* MDI_PLAN_H */

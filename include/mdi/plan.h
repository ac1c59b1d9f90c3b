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

#endif /* MDI_PLAN_H */

/* The recurrent pipeline: rank 0 keeps several groups of samples going round
 * the ring so that while rank k runs group g, rank k+1 runs group g-1.
 * Prefill sends each prompt in blocks of rows; decode sends one row per
 * sample. A sample that ends (EOS, max tokens, context) leaves its group
 * without disturbing the others; when every sample has ended, a stop message
 * goes once round the ring and every rank returns.
 * Everything is allocated by mdi_pipeline_init; run never allocates. */
#ifndef MDI_PIPELINE_H
#define MDI_PIPELINE_H

#include <stddef.h>
#include <stdint.h>

#include "mdi/ring.h"
#include "mdi/sampler.h"
#include "mdi/stage.h"
#include "mdi/status.h"
#include "mdi/tokenizer.h"

typedef enum {
    MDI_STOP_NONE = 0,
    MDI_STOP_EOS,        /* the model produced EOS (or BOS, a document break) */
    MDI_STOP_MAX_TOKENS, /* --max-tokens reached */
    MDI_STOP_CONTEXT     /* the context (max positions) is full */
} mdi_stop_reason;

const char *mdi_stop_reason_str(mdi_stop_reason r);

/* Where rank 0 sends text as it is produced. */
typedef struct mdi_sink {
    void *ctx;
    /* bytes of sample i's text (prompt echo first, then each new token); n is
     * 0 for a token that prints nothing (a control piece), which ends a run
     * of byte pieces */
    void (*text)(void *ctx, int32_t sample, const char *bytes, size_t n);
    /* sample i has ended after n_generated tokens */
    void (*end)(void *ctx, int32_t sample, mdi_stop_reason why, int32_t n_generated);
    /* may be NULL; nonzero once the text can no longer be delivered (a write
     * failed): rank 0 then starts no more work, lets the messages in flight
     * come back, and ends the run with the unfinished samples left unended */
    int (*failed)(void *ctx);
} mdi_sink;

/* The shape of a run; identical on every rank (rank 0 broadcasts it). */
typedef struct mdi_run_shape {
    int32_t n_samples;  /* S: KV slots */
    int32_t group_size; /* samples per group */
    int32_t max_rows;   /* rows per message (prefill block budget) */
    int32_t max_pos;    /* positions per slot */
} mdi_run_shape;

/* Group size when the user gave none: the largest that still leaves at least
 * one group per rank (so every rank has work), at least 1. */
int32_t mdi_pipeline_auto_group_size(int32_t n_samples, int32_t n_ranks);

/* Message buffers each rank's ring needs for a run of n_groups groups on
 * n_ranks ranks: one message per group in flight, plus up to n_ranks - 1
 * further prompt chunks (so that a long prompt's chunks pipeline through the
 * ranks), plus the receives posted ahead and slack. */
int mdi_pipeline_ring_buffers(int32_t n_groups, int n_ranks);

typedef struct mdi_pipeline_stats {
    double compute_s;         /* forward passes, head and sampling */
    double active_s;          /* from this rank's first work item to the end of its last */
    double wall_s;            /* the whole run on this rank */
    double first_token_s;     /* rank 0: start -> first sampled token of any sample */
    int64_t tokens_generated; /* rank 0 */
    int64_t prompt_tokens;    /* rank 0 */
    /* rank 0, steady state: tokens sampled after every sample had its first
     * token, and the time from that moment to the last token (0 if none) */
    int64_t decode_tokens;
    double decode_s;
    int32_t max_in_flight; /* rank 0: most messages round the ring at once */
    /* rank 0: inter-token latency, the time from one token of a sample to its
     * next, over every such pair of every sample (itl_count of them; the
     * rest 0 if none): least, nearest-rank percentiles 50, 90 and 99, most */
    int64_t itl_count;
    double itl_min_s, itl_p50_s, itl_p90_s, itl_p99_s, itl_max_s;
} mdi_pipeline_stats;

typedef struct mdi_pipeline mdi_pipeline; /* opaque */

/* Rank 0 passes the tokenizer, sampler params, seed, max_tokens and the
 * prompt of every sample (prompts[i] holds n_prompt[i] ids, BOS first);
 * other ranks pass NULL / 0 for all of those. */
typedef struct mdi_pipeline_params {
    mdi_run_shape shape;
    const mdi_tokenizer *tok;
    mdi_sampler_params sampler;
    uint64_t seed;
    int32_t max_tokens;
    const int32_t *const *prompts;
    const int32_t *n_prompt;
} mdi_pipeline_params;

mdi_status mdi_pipeline_init(mdi_pipeline **out, mdi_stage *st, mdi_ring *ring,
                             const mdi_pipeline_params *p, mdi_err *err);
void mdi_pipeline_free(mdi_pipeline *pl);

/* Run to completion. Collective over the ring: every rank calls it. */
mdi_status mdi_pipeline_run(mdi_pipeline *pl, const mdi_sink *sink, mdi_err *err);

const mdi_pipeline_stats *mdi_pipeline_get_stats(const mdi_pipeline *pl);

/* Rank 0: the ids of sample i (prompt then generated) and their count. */
const int32_t *mdi_pipeline_sample_ids(const mdi_pipeline *pl, int32_t i, int32_t *n);

#endif /* MDI_PIPELINE_H */

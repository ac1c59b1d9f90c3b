/* Building a run: find this rank's model file, agree on placement with every
 * other rank, tokenize (rank 0), allocate and load, then run the pipeline.
 * Every setup phase ends in an agreement: all ranks return the same status
 * and rank 0 holds one message naming the rank that failed. */
#ifndef MDI_ENGINE_H
#define MDI_ENGINE_H

#include <mpi.h>
#include <stdio.h>
#include <stdint.h>

#include "mdi/cli.h"
#include "mdi/model_config.h"
#include "mdi/pipeline.h"
#include "mdi/ring.h"
#include "mdi/stage.h"
#include "mdi/status.h"
#include "mdi/tensor.h"
#include "mdi/tokenizer.h"
#include "mdi/watchdog.h"

typedef struct mdi_engine {
    MPI_Comm comm;
    int rank, n_ranks;
    char shard_path[4096];
    mdi_shard_info info;           /* of this rank's file */
    int32_t half_first, half_last; /* this rank's half-layers (plan.h) */
    int threads;                   /* --threads, or this host's share of cores */
    uint32_t speed;                /* relative speed placement used (plan.h) */
    double speed_rate;             /* --speeds auto: measured bytes/s, else 0 */
    mdi_tensor_info tensor;
    mdi_run_shape shape;
    mdi_stage stage;
    int stage_ready;
    mdi_ring *ring;
    mdi_pipeline *pipeline;
    mdi_watchdog *wd; /* start-up deadline during mdi_engine_setup, else NULL (not owned) */
    /* rank 0 */
    mdi_vocab vocab;
    mdi_tokenizer *tok;
    int32_t n_prompts;
    int32_t **prompt_ids; /* (n_samples) each (n_prompt[i]) */
    int32_t *n_prompt;    /* (n_samples) */
} mdi_engine;

/* Collective over comm. On failure every rank gets the same status and err.
 * Each step is named to wd (may be NULL), and each agreement marked as a wait. */
mdi_status mdi_engine_setup(mdi_engine *e, const mdi_cli *cli, MPI_Comm comm, mdi_watchdog *wd,
                            mdi_err *err);
/* Collective: generate; rank 0 streams text to sink. */
mdi_status mdi_engine_run(mdi_engine *e, const mdi_sink *sink, mdi_err *err);
/* Collective: per-rank statistics gathered and, on rank 0, written as JSON to f
 * (NULL on the other ranks). Write errors stay in f for the caller to check. */
mdi_status mdi_engine_write_stats(mdi_engine *e, FILE *f, mdi_err *err);
void mdi_engine_free(mdi_engine *e);

/* Rank 0 work that needs no other rank: print the ids --tokenize asks for. */
mdi_status mdi_engine_tokenize(const char *model_path, const char *text, FILE *out, mdi_err *err);

/* 1 if text[0..len) is valid UTF-8. */
int mdi_utf8_valid(const char *text, size_t len);
/* The length of the longest valid UTF-8 prefix of text[0..len). */
size_t mdi_utf8_valid_len(const char *text, size_t len);

/* Generated text made valid UTF-8 as it streams: a model can emit any bytes
 * (byte pieces), and a character may be cut between two tokens. As
 * SentencePiece decodes byte pieces, every byte that does not start a
 * well-formed character becomes one U+FFFD (a cut 3-byte character, two);
 * a sequence cut between two calls waits for its end. Zero-initialise one
 * per text. */
typedef struct mdi_utf8_repair {
    unsigned char pend[4]; /* the start of an unfinished sequence */
    int n, need;           /* bytes held, bytes the sequence needs */
} mdi_utf8_repair;

/* Repair in[0..n) into out (room for 3 * (n + 3) bytes); returns the bytes written. */
size_t mdi_utf8_repair_feed(mdi_utf8_repair *r, const char *in, size_t n, char *out);
/* End of the text, or of a run of byte pieces (SentencePiece decodes each run
 * on its own): the bytes of an unfinished sequence become one U+FFFD each
 * (out: room for 9 bytes). */
size_t mdi_utf8_repair_end(mdi_utf8_repair *r, char *out);

#endif /* MDI_ENGINE_H */

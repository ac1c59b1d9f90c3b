/* Command line of mdi-llm: a pure parser (no MPI, no I/O), so every rank can
 * parse the same argv and reach the same verdict. */
#ifndef MDI_CLI_H
#define MDI_CLI_H

#include <stdint.h>
#include <stdio.h>

#include "mdi/sampler.h"
#include "mdi/status.h"

/* Parsed options. Strings point into argv (not copied); NULL when not given. */
typedef struct mdi_cli {
    const char *model;          /* --model: .h5 file or directory of shards (required) */
    const char *prompt;         /* --prompt TEXT */
    const char *prompt_file;    /* --prompt-file: one prompt per line, one sample each */
    const char *tokenize;       /* --tokenize TEXT: print the token ids and exit */
    int32_t samples;            /* --samples; 0 = not given: number of ranks for one --prompt */
    int32_t max_tokens;         /* --max-tokens: generated tokens per sample, prompt excluded */
    int max_tokens_given;       /* --max-tokens was on the command line; when not, a sample
                                   also stops where the model's context ends */
    mdi_sampler_params sampler; /* --temperature, --top-k, --top-p */
    uint64_t seed;              /* --seed; default 42; each sample has its own stream */
    const char *stats_json;     /* --stats-json FILE, or NULL */
    const char *output;         /* --output FILE: the text goes there, not stdout; or NULL */
    const char *split;          /* --split "a,b,c": layers per rank, or NULL (balanced) */
    const char *balance;        /* --balance time|memory (checked), or NULL (time) */
    const char *speeds;         /* --speeds auto|a,b,c (checked), or NULL (equal ranks) */
    int32_t threads;            /* --threads per rank; 0 = auto (cores available) */
    int32_t group_size;         /* --group-size: samples per pipeline group; 0 = auto */
    int32_t prefill_chunk;      /* --prefill-chunk: prompt rows per prefill block; 0 auto */
    double timeout_s;           /* --timeout: seconds a rank waits for a message */
    double setup_timeout_s;     /* --setup-timeout: bound on a rank's own start-up work,
                                   and on one wait for the others (plus a grace) */
    int quiet;                  /* --quiet: generated text only, no progress or stats */
    int help;                   /* --help / -h seen: print usage, exit 0 */
    int version;                /* --version seen: print the version, exit 0 */
} mdi_cli;

#define MDI_CLI_DEFAULT_MAX_TOKENS 256
#define MDI_CLI_DEFAULT_SEED 42u
/* --prefill-chunk when not given: one rank reads the weights once per 128
 * prompt rows; several ranks take 32, so that a long prompt's chunks
 * pipeline through them (mdi_pipeline_ring_buffers). */
#define MDI_CLI_DEFAULT_PREFILL_CHUNK_1RANK 128
#define MDI_CLI_DEFAULT_PREFILL_CHUNK_NRANKS 32
#define MDI_CLI_DEFAULT_TIMEOUT_S 300.0
/* --setup-timeout when not given: room to read a few GB from a slow disk */
#define MDI_CLI_DEFAULT_SETUP_TIMEOUT_S 600.0
#define MDI_CLI_MIN_SETUP_TIMEOUT_S 1.0
#define MDI_CLI_MIN_TIMEOUT_S 1.0
/* --samples and prompt-file lines: each sample has its own KV cache, prompt
 * and sampler state on rank 0, allocated before the first token. */
#define MDI_CLI_MAX_SAMPLES 65536
#define MDI_CLI_MAX_THREADS 1024 /* as mdi_tensor_init accepts */

/* Defaults: samples 0 (auto), max_tokens 256, seed 42, threads 0 (auto),
 * group_size 0 (auto), prefill_chunk 0 (auto), timeout 300 s, setup timeout
 * 600 s, sampler from
 * mdi_sampler_default_params(); every string NULL, every switch 0. */
mdi_cli mdi_cli_default(void);

/* Parse argv[1..argc) into *out (which starts from mdi_cli_default()).
 * "--flag value" and "--flag=value" are both accepted; each option at most
 * once. On --help or --version, parsing stops there and returns MDI_OK with
 * out->help / out->version set. On error, err gets one line naming the flag. */
mdi_status mdi_cli_parse(int argc, char **argv, mdi_cli *out, mdi_err *err);

/* Options every rank must be given alike, as one hash each: all but --model
 * and --threads, which may differ from host to host (MPMD launches). Ranks
 * compare these with rank 0's before any other collective work, so that a
 * rank started with other options fails the job instead of hanging it. */
#define MDI_CLI_N_AGREED 21
void mdi_cli_agreed(const mdi_cli *c, uint64_t h[MDI_CLI_N_AGREED]);
/* The option behind entry i of mdi_cli_agreed ("--max-tokens"). */
const char *mdi_cli_agreed_name(int i);
/* Whether entry i, of value h, says its option was given: 1 or 0 for the
 * switches and string options (--help, --prompt), -1 for the numbers, which
 * always have a value. */
int mdi_cli_agreed_given(int i, uint64_t h);

/* Full --help text for program name prog. */
void mdi_cli_usage(FILE *f, const char *prog);

#endif /* MDI_CLI_H */

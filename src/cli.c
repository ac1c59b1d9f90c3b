/* Command-line parsing for mdi-llm: strict numbers, one-line errors naming the flag. */
#include "mdi/cli.h"
#include "mdi/hash.h"
#include "mdi/plan.h"
#include "mdi/tensor.h"

#include <ctype.h>
#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MDI_CLI_MAX_TIMEOUT_S 31536000.0 /* one year: keeps conversions to ms far from overflow */

typedef enum {
    MDI_OPT_MODEL,
    MDI_OPT_PROMPT,
    MDI_OPT_PROMPT_FILE,
    MDI_OPT_TOKENIZE,
    MDI_OPT_SAMPLES,
    MDI_OPT_MAX_TOKENS,
    MDI_OPT_TEMPERATURE,
    MDI_OPT_TOP_K,
    MDI_OPT_TOP_P,
    MDI_OPT_SEED,
    MDI_OPT_STATS_JSON,
    MDI_OPT_OUTPUT,
    MDI_OPT_SPLIT,
    MDI_OPT_BALANCE,
    MDI_OPT_SPEEDS,
    MDI_OPT_THREADS,
    MDI_OPT_GROUP_SIZE,
    MDI_OPT_PREFILL_CHUNK,
    MDI_OPT_TIMEOUT,
    MDI_OPT_SETUP_TIMEOUT,
    MDI_OPT_QUIET,
    MDI_OPT_HELP,
    MDI_OPT_VERSION,
    MDI_OPT_COUNT
} mdi_opt_id;

/* One long option: its name with the dashes, and whether it takes a value. */
typedef struct mdi_opt {
    const char *name;
    int takes_value;
} mdi_opt;

static const mdi_opt mdi_cli_opts[MDI_OPT_COUNT] = {
    [MDI_OPT_MODEL] = {"--model", 1},
    [MDI_OPT_PROMPT] = {"--prompt", 1},
    [MDI_OPT_PROMPT_FILE] = {"--prompt-file", 1},
    [MDI_OPT_TOKENIZE] = {"--tokenize", 1},
    [MDI_OPT_SAMPLES] = {"--samples", 1},
    [MDI_OPT_MAX_TOKENS] = {"--max-tokens", 1},
    [MDI_OPT_TEMPERATURE] = {"--temperature", 1},
    [MDI_OPT_TOP_K] = {"--top-k", 1},
    [MDI_OPT_TOP_P] = {"--top-p", 1},
    [MDI_OPT_SEED] = {"--seed", 1},
    [MDI_OPT_STATS_JSON] = {"--stats-json", 1},
    [MDI_OPT_OUTPUT] = {"--output", 1},
    [MDI_OPT_SPLIT] = {"--split", 1},
    [MDI_OPT_BALANCE] = {"--balance", 1},
    [MDI_OPT_SPEEDS] = {"--speeds", 1},
    [MDI_OPT_THREADS] = {"--threads", 1},
    [MDI_OPT_GROUP_SIZE] = {"--group-size", 1},
    [MDI_OPT_PREFILL_CHUNK] = {"--prefill-chunk", 1},
    [MDI_OPT_TIMEOUT] = {"--timeout", 1},
    [MDI_OPT_SETUP_TIMEOUT] = {"--setup-timeout", 1},
    [MDI_OPT_QUIET] = {"--quiet", 0},
    [MDI_OPT_HELP] = {"--help", 0},
    [MDI_OPT_VERSION] = {"--version", 0},
};

mdi_cli mdi_cli_default(void)
{
    mdi_cli c;
    memset(&c, 0, sizeof c);
    c.max_tokens = MDI_CLI_DEFAULT_MAX_TOKENS;
    c.sampler = mdi_sampler_default_params();
    c.seed = MDI_CLI_DEFAULT_SEED;
    c.timeout_s = MDI_CLI_DEFAULT_TIMEOUT_S;
    c.setup_timeout_s = MDI_CLI_DEFAULT_SETUP_TIMEOUT_S;
    return c;
}

/* Option whose name is the first len bytes of `name`, or MDI_OPT_COUNT. */
static mdi_opt_id mdi_cli_find(const char *name, size_t len)
{
    if (len == 2 && strncmp(name, "-h", 2) == 0)
        return MDI_OPT_HELP;
    for (int i = 0; i < MDI_OPT_COUNT; i++) {
        const char *n = mdi_cli_opts[i].name;
        if (strlen(n) == len && strncmp(n, name, len) == 0)
            return (mdi_opt_id)i;
    }
    return MDI_OPT_COUNT;
}

/* Signed integer in [min, max], base 10, the whole text. */
static mdi_status mdi_cli_int(const char *flag, const char *text, long long min, long long max,
                              long long *out, mdi_err *err)
{
    const char *digits = text[0] == '-' ? text + 1 : text;
    if (text[0] == '\0')
        return mdi_errf(err, MDI_ERR_ARG, "%s: missing value", flag);
    if (!isdigit((unsigned char)digits[0]))
        return mdi_errf(err, MDI_ERR_ARG, "%s: '%s' is not an integer", flag, text);
    char *end;
    errno = 0;
    long long v = strtoll(text, &end, 10);
    if (*end != '\0')
        return mdi_errf(err, MDI_ERR_ARG, "%s: '%s' is not an integer", flag, text);
    if ((errno == ERANGE && v > 0) || v > max)
        return mdi_errf(err, MDI_ERR_RANGE, "%s: '%s' is too large (max %lld)", flag, text, max);
    if (errno == ERANGE || v < min)
        return mdi_errf(err, MDI_ERR_RANGE, "%s: '%s' must be >= %lld", flag, text, min);
    *out = v;
    return MDI_OK;
}

/* int32 field in [min, INT32_MAX]. */
static mdi_status mdi_cli_i32(const char *flag, const char *text, int32_t min, int32_t max,
                              int32_t *out, mdi_err *err)
{
    long long v = 0;
    mdi_status st = mdi_cli_int(flag, text, min, max, &v, err);
    if (st == MDI_OK)
        *out = (int32_t)v;
    return st;
}

/* Unsigned 64-bit integer, base 10, the whole text; no sign. */
static mdi_status mdi_cli_u64(const char *flag, const char *text, uint64_t *out, mdi_err *err)
{
    if (text[0] == '\0')
        return mdi_errf(err, MDI_ERR_ARG, "%s: missing value", flag);
    if (!isdigit((unsigned char)text[0]))
        return mdi_errf(err, MDI_ERR_ARG, "%s: '%s' is not a non-negative integer", flag, text);
    char *end;
    errno = 0;
    unsigned long long v = strtoull(text, &end, 10);
    if (*end != '\0')
        return mdi_errf(err, MDI_ERR_ARG, "%s: '%s' is not a non-negative integer", flag, text);
    if (errno == ERANGE)
        return mdi_errf(err, MDI_ERR_RANGE, "%s: '%s' is too large (max %llu)", flag, text,
                        (unsigned long long)UINT64_MAX);
    *out = (uint64_t)v;
    return MDI_OK;
}

/* Finite real number, the whole text, within +-max_abs. */
static mdi_status mdi_cli_real(const char *flag, const char *text, double max_abs, double *out,
                               mdi_err *err)
{
    if (text[0] == '\0')
        return mdi_errf(err, MDI_ERR_ARG, "%s: missing value", flag);
    if (isspace((unsigned char)text[0]))
        return mdi_errf(err, MDI_ERR_ARG, "%s: '%s' is not a number", flag, text);
    char *end;
    errno = 0;
    double v = strtod(text, &end);
    if (end == text || *end != '\0')
        return mdi_errf(err, MDI_ERR_ARG, "%s: '%s' is not a number", flag, text);
    if (strpbrk(text, "xX")) /* strtod reads hex; integer options do not, nor do these */
        return mdi_errf(err, MDI_ERR_ARG, "%s: '%s' is not a decimal number", flag, text);
    if (errno == ERANGE && fabs(v) <= DBL_MIN) /* underflow: 0 or subnormal */
        return mdi_errf(err, MDI_ERR_RANGE, "%s: '%s' is too close to 0 for a double", flag, text);
    if (errno == ERANGE)
        return mdi_errf(err, MDI_ERR_RANGE, "%s: '%s' is out of range", flag, text);
    if (!isfinite(v))
        return mdi_errf(err, MDI_ERR_RANGE, "%s: '%s' is not a finite number", flag, text);
    if (fabs(v) > max_abs)
        return mdi_errf(err, MDI_ERR_RANGE, "%s: '%s' is out of range", flag, text);
    *out = v;
    return MDI_OK;
}

/* --temperature or --top-p (field): the range is checked on the number as a
 * double, before it becomes a float, so that a message quotes it and rounding
 * to float neither takes a value outside the range into it (1.0000000001 -> 1)
 * nor a value inside it out (1e-50 -> 0); digits past a double's precision are
 * rounded first. Then the sampler's own rules. */
static mdi_status mdi_cli_sampler_f32(const char *flag, const char *text, float *field,
                                      mdi_cli *out, mdi_err *err)
{
    double v = 0.0;
    int temp = field == &out->sampler.temperature;
    mdi_status st = mdi_cli_real(flag, text, INFINITY, &v, err);
    if (st != MDI_OK)
        return st;
    if (temp && v < 0.0)
        return mdi_errf(err, MDI_ERR_RANGE, "%s %s must be >= 0 (0 = greedy)", flag, text);
    if (temp && v > MDI_SAMPLER_MAX_TEMPERATURE)
        return mdi_errf(err, MDI_ERR_RANGE, "%s %s is above the maximum %g", flag, text,
                        (double)MDI_SAMPLER_MAX_TEMPERATURE);
    if (!temp && !(v > 0.0 && v <= 1.0))
        return mdi_errf(err, MDI_ERR_RANGE, "%s %s is outside (0, 1]", flag, text);
    if (v != 0.0 && v < FLT_MIN)
        return mdi_errf(err, MDI_ERR_RANGE, "%s %s is below the smallest float, %g%s", flag, text,
                        (double)FLT_MIN, temp ? " (0 = greedy)" : "");
    *field = (float)v;
    return mdi_sampler_params_validate(&out->sampler, err);
}

/* Non-empty string value. */
static mdi_status mdi_cli_str(const char *flag, const char *text, const char **out, mdi_err *err)
{
    if (text[0] == '\0')
        return mdi_errf(err, MDI_ERR_ARG, "%s is empty", flag);
    *out = text;
    return MDI_OK;
}

static mdi_status mdi_cli_timeout(const char *flag, const char *text, double min, double *out,
                                  mdi_err *err)
{
    double v = 0.0;
    mdi_status st = mdi_cli_real(flag, text, INFINITY, &v, err);
    if (st != MDI_OK)
        return st;
    if (!(v > 0.0))
        return mdi_errf(err, MDI_ERR_RANGE, "%s: '%s' must be > 0", flag, text);
    if (v < min)
        return mdi_errf(err, MDI_ERR_RANGE, "%s: '%s' must be >= %g", flag, text, min);
    if (v > MDI_CLI_MAX_TIMEOUT_S)
        return mdi_errf(err, MDI_ERR_RANGE, "%s: '%s' must be <= %.0f", flag, text,
                        MDI_CLI_MAX_TIMEOUT_S);
    *out = v;
    return MDI_OK;
}

/* Store the value of option id (text is NULL for switches). */
static mdi_status mdi_cli_apply(mdi_opt_id id, const char *text, mdi_cli *out, mdi_err *err)
{
    const char *flag = mdi_cli_opts[id].name;
    mdi_status st;
    switch (id) {
    case MDI_OPT_MODEL:
        return mdi_cli_str(flag, text, &out->model, err);
    case MDI_OPT_PROMPT:
        return mdi_cli_str(flag, text, &out->prompt, err);
    case MDI_OPT_PROMPT_FILE:
        return mdi_cli_str(flag, text, &out->prompt_file, err);
    case MDI_OPT_TOKENIZE:
        return mdi_cli_str(flag, text, &out->tokenize, err);
    case MDI_OPT_STATS_JSON:
        return mdi_cli_str(flag, text, &out->stats_json, err);
    case MDI_OPT_OUTPUT:
        return mdi_cli_str(flag, text, &out->output, err);
    case MDI_OPT_SPLIT: { /* the syntax here (exit 2); the counts against the model later */
        int32_t n;
        if ((st = mdi_cli_str(flag, text, &out->split, err)))
            return st;
        return mdi_plan_parse_split(text, NULL, MDI_MAX_HALVES, &n, err);
    }
    case MDI_OPT_BALANCE: {
        mdi_balance how;
        if ((st = mdi_cli_str(flag, text, &out->balance, err)))
            return st;
        return mdi_plan_parse_balance(text, &how, err);
    }
    case MDI_OPT_SPEEDS: {
        int32_t n;
        if ((st = mdi_cli_str(flag, text, &out->speeds, err)) || !strcmp(text, "auto"))
            return st;
        return mdi_plan_parse_speeds(text, NULL, INT32_MAX, &n, err);
    }
    case MDI_OPT_SAMPLES:
        return mdi_cli_i32(flag, text, 1, MDI_CLI_MAX_SAMPLES, &out->samples, err);
    case MDI_OPT_MAX_TOKENS:
        out->max_tokens_given = 1;
        return mdi_cli_i32(flag, text, 0, INT32_MAX, &out->max_tokens, err);
    case MDI_OPT_THREADS:
        return mdi_cli_i32(flag, text, 1, MDI_CLI_MAX_THREADS, &out->threads, err);
    case MDI_OPT_GROUP_SIZE:
        return mdi_cli_i32(flag, text, 1, MDI_CLI_MAX_SAMPLES, &out->group_size, err);
    case MDI_OPT_PREFILL_CHUNK:
        return mdi_cli_i32(flag, text, 1, INT32_MAX, &out->prefill_chunk, err);
    case MDI_OPT_TOP_K:
        st = mdi_cli_i32(flag, text, 0, INT32_MAX, &out->sampler.top_k, err);
        return st != MDI_OK ? st : mdi_sampler_params_validate(&out->sampler, err);
    case MDI_OPT_TEMPERATURE:
        return mdi_cli_sampler_f32(flag, text, &out->sampler.temperature, out, err);
    case MDI_OPT_TOP_P:
        return mdi_cli_sampler_f32(flag, text, &out->sampler.top_p, out, err);
    case MDI_OPT_SEED:
        return mdi_cli_u64(flag, text, &out->seed, err);
    case MDI_OPT_TIMEOUT:
        /* below 1 s, a slow step or a busy host reads as a stuck rank */
        return mdi_cli_timeout(flag, text, MDI_CLI_MIN_TIMEOUT_S, &out->timeout_s, err);
    case MDI_OPT_SETUP_TIMEOUT: /* below 1 s, even a small model's start-up fails */
        return mdi_cli_timeout(flag, text, MDI_CLI_MIN_SETUP_TIMEOUT_S, &out->setup_timeout_s, err);
    case MDI_OPT_QUIET:
        out->quiet = 1;
        return MDI_OK;
    case MDI_OPT_HELP:
        out->help = 1;
        return MDI_OK;
    case MDI_OPT_VERSION:
        out->version = 1;
        return MDI_OK;
    case MDI_OPT_COUNT:
        break;
    }
    return mdi_errf(err, MDI_ERR_INTERNAL, "option %d has no handler", (int)id);
}

/* Cross-option rules once every flag is in: required inputs and exclusions. */
static mdi_status mdi_cli_check(const mdi_cli *c, const int *seen, mdi_err *err)
{
    const char *given[3];
    int n = 0;
    if (c->prompt)
        given[n++] = "--prompt";
    if (c->prompt_file)
        given[n++] = "--prompt-file";
    if (c->tokenize)
        given[n++] = "--tokenize";
    if (n > 1)
        return mdi_errf(err, MDI_ERR_ARG, "%s and %s are mutually exclusive", given[0], given[1]);
    if (!c->model)
        return mdi_errf(err, MDI_ERR_ARG, "--model is required (see --help)");
    if (n == 0)
        return mdi_errf(err, MDI_ERR_ARG,
                        "one of --prompt, --prompt-file or --tokenize is required (see --help)");
    if (c->tokenize) /* it only tokenizes: an option for the run would be ignored */
        for (int id = 0; id < MDI_OPT_COUNT; id++)
            if (seen[id] && id != MDI_OPT_MODEL && id != MDI_OPT_TOKENIZE && id != MDI_OPT_QUIET &&
                id != MDI_OPT_SETUP_TIMEOUT)
                return mdi_errf(err, MDI_ERR_ARG,
                                "%s does not apply to --tokenize, which only prints token ids",
                                mdi_cli_opts[id].name);
    if (c->prompt_file && c->samples > 0)
        return mdi_errf(err, MDI_ERR_ARG,
                        "--samples cannot be used with --prompt-file (one sample per line)");
    return mdi_sampler_params_validate(&c->sampler, err);
}

/* 1 if arg looks like an option rather than a value ("--x", not "-1" or "--"). */
static int mdi_cli_is_long_option(const char *arg)
{
    return arg[0] == '-' && arg[1] == '-' && arg[2] != '\0';
}

/* Error for a value flag with no value; next is the following argument, if any. */
static mdi_status mdi_cli_missing(const char *flag, const char *next, mdi_err *err)
{
    if (next)
        return mdi_errf(err, MDI_ERR_ARG,
                        "%s: missing value (for a value starting with --, write %s=VALUE)", flag,
                        flag);
    return mdi_errf(err, MDI_ERR_ARG, "%s: missing value", flag);
}

mdi_status mdi_cli_parse(int argc, char **argv, mdi_cli *out, mdi_err *err)
{
    int seen[MDI_OPT_COUNT] = {0};
    *out = mdi_cli_default();
    mdi_err_clear(err);
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (arg[0] != '-' || strcmp(arg, "-") == 0 || strcmp(arg, "--") == 0)
            return mdi_errf(err, MDI_ERR_ARG, "unexpected argument '%s' (see --help)", arg);
        const char *eq = strchr(arg, '=');
        size_t len = eq ? (size_t)(eq - arg) : strlen(arg);
        mdi_opt_id id = mdi_cli_find(arg, len);
        if (id == MDI_OPT_COUNT)
            return mdi_errf(err, MDI_ERR_ARG, "unknown option '%.*s' (see --help)", (int)len, arg);
        const char *flag = mdi_cli_opts[id].name, *text = NULL;
        if (seen[id]++)
            return mdi_errf(err, MDI_ERR_ARG, "%s is given more than once", flag);
        if (!mdi_cli_opts[id].takes_value) {
            if (eq)
                return mdi_errf(err, MDI_ERR_ARG, "%s takes no value", flag);
        } else if (eq) {
            text = eq + 1;
        } else if (i + 1 < argc && !mdi_cli_is_long_option(argv[i + 1])) {
            text = argv[++i];
        }
        if (mdi_cli_opts[id].takes_value && !text)
            return mdi_cli_missing(flag, i + 1 < argc ? argv[i + 1] : NULL, err);
        mdi_status st = mdi_cli_apply(id, text, out, err);
        if (st != MDI_OK)
            return st;
        if (out->help || out->version)
            return MDI_OK;
    }
    return mdi_cli_check(out, seen, err);
}

/* A string option: absent and empty differ. */
static uint64_t hash_str(const char *s)
{
    return s ? mdi_fnv1a(MDI_FNV_INIT ^ 1, s, strlen(s)) : MDI_FNV_INIT;
}

static uint64_t hash_num(double v)
{
    v = v == 0.0 ? 0.0 : v; /* -0 and 0 act alike */
    return mdi_fnv1a(MDI_FNV_INIT, &v, sizeof v);
}

/* The modes first, so that a rank given --version or --tokenize is named for it
 * rather than for the --prompt it lacks. */
static const struct {
    const char *name;
    char kind; /* 'f' a switch, 's' a string (absent or given), 'n' a number */
} agreed[MDI_CLI_N_AGREED] = {
    {"--help", 'f'},        {"--version", 'f'},       {"--tokenize", 's'},
    {"--prompt-file", 's'}, {"--prompt", 's'},        {"--samples", 'n'},
    {"--max-tokens", 'n'},  {"--temperature", 'n'},   {"--top-k", 'n'},
    {"--top-p", 'n'},       {"--seed", 'n'},          {"--stats-json", 's'},
    {"--output", 's'},      {"--split", 's'},         {"--balance", 's'},
    {"--speeds", 's'},      {"--group-size", 'n'},    {"--prefill-chunk", 'n'},
    {"--timeout", 'n'},     {"--setup-timeout", 'n'}, {"--quiet", 'f'}};

void mdi_cli_agreed(const mdi_cli *c, uint64_t h[MDI_CLI_N_AGREED])
{
    int i = 0;
    h[i++] = hash_num(c->help);
    h[i++] = hash_num(c->version);
    h[i++] = hash_str(c->tokenize);
    h[i++] = hash_str(c->prompt_file);
    h[i++] = hash_str(c->prompt);
    h[i++] = hash_num(c->samples);
    h[i++] = hash_num(c->max_tokens_given ? c->max_tokens : -1.0);
    h[i++] = hash_num(c->sampler.temperature);
    h[i++] = hash_num(c->sampler.top_k);
    h[i++] = hash_num(c->sampler.top_p);
    h[i++] = mdi_fnv1a(MDI_FNV_INIT, &c->seed, sizeof c->seed);
    h[i++] = hash_str(c->stats_json);
    h[i++] = hash_str(c->output);
    h[i++] = hash_str(c->split);
    h[i++] = hash_str(c->balance);
    h[i++] = hash_str(c->speeds);
    h[i++] = hash_num(c->group_size);
    h[i++] = hash_num(c->prefill_chunk);
    h[i++] = hash_num(c->timeout_s);
    h[i++] = hash_num(c->setup_timeout_s);
    h[i++] = hash_num(c->quiet);
}

int mdi_cli_agreed_given(int i, uint64_t h)
{
    if (i < 0 || i >= MDI_CLI_N_AGREED || agreed[i].kind == 'n')
        return -1;
    return h != (agreed[i].kind == 'f' ? hash_num(0) : hash_str(NULL));
}

const char *mdi_cli_agreed_name(int i)
{
    return i >= 0 && i < MDI_CLI_N_AGREED ? agreed[i].name : "?";
}

void mdi_cli_usage(FILE *f, const char *prog)
{
    const mdi_cli d = mdi_cli_default();
    fprintf(f,
            "Usage: mpirun -np N %s --model PATH (--prompt TEXT | --prompt-file FILE) [options]\n"
            "       %s --model PATH --tokenize TEXT\n"
            "\n"
            "Runs a Llama model split across N MPI ranks in a ring (recurrent pipeline):\n"
            "each rank holds a contiguous range of layers (or half-layers); rank 0 also\n"
            "holds the embedding and the output head, samples the tokens, prints the text.\n"
            "\n"
            "Model and input (--model and exactly one of the other three):\n"
            "  --model PATH        one HDF5 model file, or a directory of shards (one per rank)\n"
            "  --prompt TEXT       prompt shared by every sample\n"
            "  --prompt-file FILE  one prompt per line, one sample per line\n"
            "  --tokenize TEXT     print the token ids of TEXT and exit\n"
            "\n"
            "Generation:\n"
            "  --samples S         samples of --prompt to generate (1-%d; default: N, the\n"
            "                      number of ranks, which keeps every rank busy)\n"
            "  --max-tokens N      tokens to generate per sample, prompt not counted (>= 0;\n"
            "                      default %d, or fewer where the model's context ends)\n"
            "  --temperature T     0 = greedy (the most likely token), else (0, 100]; default %g\n"
            "  --top-k K           sample among the K most likely tokens; 0 = off (default %d)\n"
            "  --top-p P           sample among the smallest set of tokens with probability\n"
            "                      >= P, after top-k; in (0, 1], 1 = off (default %g)\n"
            "  --seed N            random seed, 0 to 2^64-1; each sample draws from its own\n"
            "                      stream of it, so a run can be repeated (default %llu)\n"
            "\n"
            "Placement and performance:\n"
            "  --split a,b,c       layers per rank in rank order, whole or half (10.5,11.5:\n"
            "                      rank 0 ends after layer 10's attention); shards must agree\n"
            "  --balance time|memory  without --split, even out the weight bytes each rank\n"
            "                      reads per token (time, default) or holds (memory)\n"
            "  --speeds auto|a,b,c weigh the time balance by the ranks' relative speeds (2,1:\n"
            "                      rank 0 is twice as fast); auto measures them at start-up\n"
            "  --threads N         threads per rank for matrix work (1-%d; default: the cores\n"
            "                      this rank may run on, shared among the ranks on its host)\n"
            "  --group-size G      samples per pipeline group (1-S; default: samples / N, at\n"
            "                      least 1, so that every rank has a group to work on)\n"
            "  --prefill-chunk N   prompt rows per message, shared by a group's samples (>= 1,\n"
            "                      and 1 per sample at least; default %d on one rank, %d on\n"
            "                      several, whose chunks overlap); while messages hold at\n"
            "                      most %zu rows, prompt rows use the engine's kernel, else BLIS\n"
            "  --timeout SECONDS   rank 0 ends the run, naming the rank that stopped answering,\n"
            "                      when no message has come back for this long; the others\n"
            "                      wait twice as long (1-%.0f, one year; default %g)\n"
            "  --setup-timeout S   a rank ends the job if its start-up work (reading prompts and\n"
            "                      weights) or a wait for others passes S (1-%.0f, default %g)\n"
            "\n"
            "Output:\n"
            "  --output FILE       the text to FILE (on rank 0's host), not stdout; a failed\n"
            "                      write fails the run, even under mpirun, which would drop it\n"
            "  --stats-json FILE   write run statistics as JSON to FILE\n"
            "  --quiet             no progress or timing lines on stderr\n"
            "  -h, --help          show this help and exit (--version: the version)\n"
            "\n"
            "One sample streams its text (prompt first) as it is produced. Several samples\n"
            "print each completed line of sample i as \"[i] text\" (past 4096 bytes, a line\n"
            "goes on in \"[i]+ text\" lines), then \"[i] (end: eos|max-tokens|context-full,\n"
            "N tokens)\". Text is UTF-8, with U+FFFD for ill-formed bytes; timing on stderr.\n"
            "\n"
            "Values go as \"--flag value\" or \"--flag=value\" (for one starting with --).\n"
            "\n"
            "Example (3 ranks, 3 samples of one prompt):\n"
            "  mpirun -np 3 %s --model shards/ --prompt \"Once upon a time\" --samples 3\n",
            prog, prog, MDI_CLI_MAX_SAMPLES, (int)d.max_tokens, (double)d.sampler.temperature,
            (int)d.sampler.top_k, (double)d.sampler.top_p, (unsigned long long)d.seed,
            MDI_CLI_MAX_THREADS, MDI_CLI_DEFAULT_PREFILL_CHUNK_1RANK,
            MDI_CLI_DEFAULT_PREFILL_CHUNK_NRANKS, mdi_matmul_stream_max_rows(),
            MDI_CLI_MAX_TIMEOUT_S, d.timeout_s, MDI_CLI_MAX_TIMEOUT_S, d.setup_timeout_s, prog);
}

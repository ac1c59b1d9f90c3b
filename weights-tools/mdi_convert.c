/* mdi-convert: command line front end of the converter (parse flags, pick a
 * reader by input content, write, report). The only place that exits. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <hdf5.h>

#include "convert.h"
#include "inspect.h"
#include "mdi/plan.h"

#define CLI_VERSION "0.1.0"
#define CLI_EXIT_FAIL 1
#define CLI_EXIT_USAGE 2

typedef struct cli_opts {
    const char *input, *tokenizer, *output, *synthetic, *inspect, *split_text, *balance_text;
    cv_dtype dtype;
    mdi_balance balance;
    int32_t shards;
    uint64_t seed;
    int have_shards, have_seed, have_dtype, quiet, help, version;
    int32_t split[MDI_MAX_HALVES]; /* half-layers per shard */
    int32_t n_split;
} cli_opts;

static void print_help(FILE *out)
{
    fputs("Usage:\n"
          "  mdi-convert INPUT [--tokenizer FILE] -o OUTPUT\n"
          "              [--shards N [--balance time|memory] | --split a,b,c]\n"
          "              [--dtype f32|f16|bf16] [--quiet]\n"
          "  mdi-convert --synthetic NAME|CONFIG.json [--seed N] [--tokenizer FILE] -o OUTPUT\n"
          "              [--shards N [--balance time|memory] | --split a,b,c]\n"
          "              [--dtype f32|f16|bf16] [--quiet]\n"
          "  mdi-convert --inspect PATH\n"
          "  mdi-convert --help | --version\n"
          "\n"
          "Converts a Llama-architecture checkpoint into the mdi-llm HDF5 format\n"
          "(docs/FORMAT.md): one file, or a directory with one shard file per host.\n"
          "INPUT is recognised by its content, not its name: a llama2.c checkpoint\n"
          "(legacy v0, float32), a GGUF file, or a Hugging Face model directory\n"
          "(config.json + *.safetensors).\n"
          "\n"
          "Options:\n"
          "  -o, --output OUTPUT   where to write: a file, or with --shards N > 1 or --split\n"
          "                        a,b,... (2+ ranks) a directory of model-II-of-NN.LFFF-\n"
          "                        LLL.h5 files (first and last layer; FFFm: starts with\n"
          "                        that layer's MLP, LLLa: ends with that layer's\n"
          "                        attention). OUTPUT must not exist (the tool never\n"
          "                        overwrites; remove it first).\n"
          "                        Written under OUTPUT.tmp-PID, renamed at the end;\n"
          "                        removed after an error or a signal (not SIGKILL).\n"
          "  --tokenizer FILE      tokenizer.bin (llama2.c) or tokenizer.model\n"
          "                        (SentencePiece). Required for llama2.c input; optional\n"
          "                        for Hugging Face and --synthetic; not used with GGUF.\n"
          "  --shards N            split the model over N shard files, planned exactly as\n"
          "                        the engine plans N ranks: in half-layers (a layer's\n"
          "                        attention or its MLP), balanced as --balance says\n"
          "                        (--shards 1: one file)\n",
          out);
    fprintf(out,
            "  --balance time|memory with --shards N: what the shards even out. time: the\n"
            "                        weight bytes each rank reads per generated token (the\n"
            "                        embedding, only looked up, does not count); memory:\n"
            "                        the weight bytes each shard holds. Default: %s (the\n"
            "                        engine's default too)\n",
            mdi_plan_balance_name(MDI_BALANCE_DEFAULT));
    fputs("  --split a,b,c         one shard per entry holding exactly that many layers,\n"
          "                        in steps of half a layer (e.g. --split 10.5,11.5:\n"
          "                        layers 0-9 and layer 10's attention, then layer 10's\n"
          "                        MLP and layers 11-21); the counts must add up to the\n"
          "                        model's layers\n"
          "  --dtype f32|f16|bf16  storage type of the weight matrices (default f32; norm\n"
          "                        vectors always stay f32; rounding is to nearest even)\n"
          "  --synthetic SPEC      random weights instead of INPUT: a preset geometry name\n"
          "                        (e.g. stories260k-geometry, tinyllama-1.1b) or a JSON\n"
          "                        config file\n"
          "  --seed N              random seed for --synthetic (default 1)\n"
          "  --inspect PATH        describe and validate a model file or shard directory\n"
          "  -q, --quiet           no progress output on stderr\n"
          "  -h, --help            show this help and exit\n"
          "  --version             show the version and exit\n"
          "\n"
          "Examples:\n"
          "  mdi-convert stories260K.bin --tokenizer tok512.bin -o stories260K.h5\n"
          "  mdi-convert stories260K.gguf --shards 2 -o stories260K-shards\n"
          "  mdi-convert TinyLlama-1.1B-Chat/ --split 6,8,8 --dtype bf16 -o tinyllama\n"
          "  mdi-convert TinyLlama-1.1B-Chat/ --shards 3 --balance memory -o tinyllama-m\n"
          "  mdi-convert --synthetic tinyllama-1.1b --seed 7 --dtype f16 -o synth.h5\n"
          "  mdi-convert --inspect tinyllama\n"
          "\n"
          "Exit status: 0 success, 1 conversion failed, 2 usage error.\n",
          out);
}

/* Strict decimal int32 in [lo, hi] (lo >= 0): digits only, no sign, spaces or
 * suffix; a negative number is out of the range, not "not a number". */
static mdi_status parse_i32(const char *flag, const char *text, int32_t lo, int32_t hi, int32_t *v,
                            mdi_err *err)
{
    char *end;
    int negative = text[0] == '-' && text[1] >= '0' && text[1] <= '9';
    if (!negative && (!text[0] || text[0] < '0' || text[0] > '9'))
        return mdi_errf(err, MDI_ERR_ARG, "%s '%s': expected a number", flag, text);
    errno = 0;
    long x = strtol(text, &end, 10);
    if (negative || *end || errno || x < lo || x > hi)
        return mdi_errf(err, MDI_ERR_ARG, "%s '%s': expected a whole number in [%d, %d]", flag,
                        text, (int)lo, (int)hi);
    *v = (int32_t)x;
    return MDI_OK;
}

static mdi_status parse_u64(const char *flag, const char *text, uint64_t *v, mdi_err *err)
{
    char *end;
    if (!text[0] || text[0] < '0' || text[0] > '9')
        return mdi_errf(err, MDI_ERR_ARG, "%s '%s': expected a non-negative number", flag, text);
    errno = 0;
    unsigned long long x = strtoull(text, &end, 10);
    if (*end || errno)
        return mdi_errf(err, MDI_ERR_ARG, "%s '%s': expected a whole number below 2^64", flag,
                        text);
    *v = (uint64_t)x;
    return MDI_OK;
}

static mdi_status parse_dtype(const char *text, cv_dtype *d, mdi_err *err)
{
    if (!strcmp(text, "f32"))
        *d = CV_DTYPE_F32;
    else if (!strcmp(text, "f16"))
        *d = CV_DTYPE_F16;
    else if (!strcmp(text, "bf16"))
        *d = CV_DTYPE_BF16;
    else
        return mdi_errf(err, MDI_ERR_ARG, "--dtype '%s': expected f32, f16 or bf16", text);
    return MDI_OK;
}

/* Set *slot to val, refusing a flag given twice. */
static mdi_status set_once(const char **slot, const char *flag, const char *val, mdi_err *err)
{
    if (*slot)
        return mdi_errf(err, MDI_ERR_ARG, "%s given twice", flag);
    *slot = val;
    return MDI_OK;
}

/* One flag that takes a value (argv[*i] is the flag; the value follows). */
static mdi_status take_value(cli_opts *o, int argc, char **argv, int *i, mdi_err *err)
{
    const char *f = argv[*i];
    if (*i + 1 >= argc)
        return mdi_errf(err, MDI_ERR_ARG, "%s needs a value", f);
    const char *v = argv[++*i];
    mdi_status s;
    if (!strcmp(f, "-o") || !strcmp(f, "--output"))
        return set_once(&o->output, "-o/--output", v, err);
    if (!strcmp(f, "--tokenizer"))
        return set_once(&o->tokenizer, f, v, err);
    if (!strcmp(f, "--synthetic"))
        return set_once(&o->synthetic, f, v, err);
    if (!strcmp(f, "--inspect"))
        return set_once(&o->inspect, f, v, err);
    if (!strcmp(f, "--split")) {
        if ((s = set_once(&o->split_text, f, v, err)))
            return s;
        return mdi_plan_parse_split(v, o->split, MDI_MAX_HALVES, &o->n_split, err);
    }
    if (!strcmp(f, "--balance")) {
        if ((s = set_once(&o->balance_text, f, v, err)))
            return s;
        return mdi_plan_parse_balance(v, &o->balance, err);
    }
    if ((!strcmp(f, "--shards") && o->have_shards++) || (!strcmp(f, "--seed") && o->have_seed++) ||
        (!strcmp(f, "--dtype") && o->have_dtype++))
        return mdi_errf(err, MDI_ERR_ARG, "%s given twice", f);
    if (!strcmp(f, "--shards"))
        return parse_i32(f, v, 1, MDI_MAX_HALVES, &o->shards, err);
    if (!strcmp(f, "--seed"))
        return parse_u64(f, v, &o->seed, err);
    return parse_dtype(v, &o->dtype, err);
}

/* Whether flag takes a value. */
static int has_value(const char *f)
{
    static const char *const with[] = {"-o",        "--output", "--tokenizer", "--synthetic",
                                       "--inspect", "--split",  "--balance",   "--shards",
                                       "--seed",    "--dtype"};
    for (size_t i = 0; i < sizeof with / sizeof with[0]; i++)
        if (!strcmp(f, with[i]))
            return 1;
    return 0;
}

static mdi_status parse_args(int argc, char **argv, cli_opts *o, mdi_err *err)
{
    mdi_status s;
    int only_positional = 0;
    o->seed = 1;
    o->balance = MDI_BALANCE_DEFAULT;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (only_positional || a[0] != '-' || !a[1]) {
            if (o->input)
                return mdi_errf(err, MDI_ERR_ARG, "unexpected extra argument '%s'", a);
            o->input = a;
        } else if (!strcmp(a, "--")) {
            only_positional = 1;
        } else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            o->help = 1;
        } else if (!strcmp(a, "--version")) {
            o->version = 1;
        } else if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) {
            o->quiet = 1;
        } else if (has_value(a)) {
            if ((s = take_value(o, argc, argv, &i, err)))
                return s;
        } else {
            return mdi_errf(err, MDI_ERR_ARG, "unknown option '%s'", a);
        }
    }
    return MDI_OK;
}

/* Which combinations make sense, once every flag is known. */
static mdi_status check_args(const cli_opts *o, mdi_err *err)
{
    if (o->inspect) {
        if (o->input || o->output || o->synthetic || o->tokenizer || o->split_text ||
            o->balance_text || o->have_shards || o->have_seed || o->have_dtype)
            return mdi_errf(err, MDI_ERR_ARG, "--inspect PATH takes no other arguments");
        return MDI_OK;
    }
    if (o->synthetic && o->input)
        return mdi_errf(err, MDI_ERR_ARG, "give either INPUT or --synthetic, not both");
    if (!o->synthetic && !o->input)
        return mdi_errf(err, MDI_ERR_ARG, "no INPUT given");
    if (o->have_seed && !o->synthetic)
        return mdi_errf(err, MDI_ERR_ARG, "--seed only applies to --synthetic");
    if (!o->output)
        return mdi_errf(err, MDI_ERR_ARG, "no output given: add -o OUTPUT");
    if (!o->output[0])
        return mdi_errf(err, MDI_ERR_ARG, "-o/--output is empty: give a file or directory");
    if (o->tokenizer && !o->tokenizer[0])
        return mdi_errf(err, MDI_ERR_ARG, "--tokenizer is empty: give the tokenizer file");
    if (o->have_shards && o->split_text)
        return mdi_errf(err, MDI_ERR_ARG, "give either --shards or --split, not both");
    if (o->balance_text && o->split_text)
        return mdi_errf(err, MDI_ERR_ARG,
                        "give either --balance or --split, not both (--split fixes every "
                        "shard's size)");
    if (o->balance_text && !o->have_shards)
        return mdi_errf(err, MDI_ERR_ARG,
                        "--balance needs --shards N: it decides how N shards divide the model");
    return MDI_OK;
}

/* Open the source named by the options, choosing the reader by content. */
static mdi_status open_source(const cli_opts *o, cv_source *src, mdi_err *err)
{
    struct stat st;
    if (o->synthetic)
        return cv_open_synthetic(o->synthetic, o->seed, o->tokenizer, src, err);
    if (stat(o->input, &st) != 0)
        return mdi_errf(err, MDI_ERR_IO, "%s: %s", o->input, strerror(errno));
    switch (cv_detect(o->input)) {
    case CV_INPUT_LLAMA2C:
        return cv_open_llama2c(o->input, o->tokenizer, src, err);
    case CV_INPUT_GGUF:
        if (o->tokenizer)
            return mdi_errf(err, MDI_ERR_ARG,
                            "%s: --tokenizer is not used with GGUF input (the "
                            "tokenizer is inside the file)",
                            o->input);
        return cv_open_gguf(o->input, src, err);
    case CV_INPUT_HF_DIR:
        return cv_open_hf(o->input, o->tokenizer, src, err);
    case CV_INPUT_LLAMA2C_AK42:
        return mdi_errf(err, MDI_ERR_UNSUPPORTED,
                        "%s: a llama2.c export in the newer \"ak42\" format (export.py "
                        "--version 1 or 2), which is not read; export with --version 0 (the "
                        "legacy layout), or convert the GGUF or Hugging Face form",
                        o->input);
    case CV_INPUT_UNKNOWN:
    default:
        break;
    }
    return mdi_errf(err, MDI_ERR_FORMAT,
                    "%s: not a recognised model (expected a llama2.c checkpoint whose size matches "
                    "its header, a GGUF file, or a Hugging Face directory with config.json)",
                    o->input);
}

/* Convert: open, write, close. */
static mdi_status run_convert(const cli_opts *o, mdi_err *err)
{
    static const char *const dtypes[] = {"f32", "f16", "bf16"};
    cv_source src;
    struct stat st;
    memset(&src, 0, sizeof src);
    if (lstat(o->output, &st) == 0) /* fail before reading a large input; cv_write checks too */
        return mdi_errf(err, MDI_ERR_ARG, "%s exists; remove it first", o->output);
    mdi_status s = open_source(o, &src, err);
    if (s) {
        cv_source_close(&src); /* readers clean up on failure; this is only a safety net */
        return s;
    }
    src.path = o->synthetic ? NULL : o->input;
    cv_write_opts w = {.dtype = o->dtype, .quiet = o->quiet, .balance = o->balance};
    w.n_shards = o->split_text ? o->n_split : (o->have_shards ? o->shards : 1);
    w.split = o->split_text ? o->split : NULL;
    if (!(s = cv_write(&src, o->output, &w, err)) && !o->quiet)
        fprintf(stderr, "mdi-convert: wrote %s (%s input, %d layers, %s, %d %s, model_id %s)\n",
                o->output, src.kind ? src.kind : "?", (int)src.cfg.n_layers, dtypes[o->dtype],
                (int)(w.n_shards > 1 ? w.n_shards : 1), w.n_shards > 1 ? "shards" : "file",
                src.model_id);
    cv_source_close(&src);
    return s;
}

int main(int argc, char **argv)
{
    mdi_err err;
    mdi_err_clear(&err);
    cli_opts *o = calloc(1, sizeof *o);
    if (!o) {
        fputs("mdi-convert: out of memory\n", stderr);
        return CLI_EXIT_FAIL;
    }
    int code = 0;
    /* A file whose H5Fclose failed (say, the file size limit was hit while
     * flushing) stays in HDF5's table, and the library's own exit handler then
     * crashes on it; so the library is closed here, and only after success. */
    H5dont_atexit();
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    if (parse_args(argc, argv, o, &err)) {
        fprintf(stderr, "mdi-convert: %s (see mdi-convert --help)\n", err.msg);
        code = CLI_EXIT_USAGE;
    } else if (o->help) {
        print_help(stdout);
    } else if (o->version) {
        printf("mdi-convert %s (mdi-llm model format version 2, HDF5 %d.%d.%d)\n", CLI_VERSION,
               H5_VERS_MAJOR, H5_VERS_MINOR, H5_VERS_RELEASE);
    } else if (check_args(o, &err)) {
        fprintf(stderr, "mdi-convert: %s (see mdi-convert --help)\n", err.msg);
        code = CLI_EXIT_USAGE;
    } else if (o->inspect ? cv_inspect(o->inspect, stdout, &err) : run_convert(o, &err)) {
        fprintf(stderr, "mdi-convert: %s\n", err.msg);
        code = CLI_EXIT_FAIL;
    }
    free(o);
    if (fflush(stdout) != 0 && code == 0) {
        fputs("mdi-convert: cannot write to standard output\n", stderr);
        code = CLI_EXIT_FAIL;
    }
    if (code == 0)
        H5close();
    exit(code);
}

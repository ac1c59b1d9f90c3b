/* Command line: every flag in both forms, and every way a value can be wrong. */
#include "test_util.h"

#include <math.h>

#include "mdi/cli.h"

#define MAX_ARGS 64

/* Parse the NULL-terminated argument list that follows `first` (argv[0] is added). */
static mdi_status parse_list(mdi_cli *c, mdi_err *err, const char *first, va_list ap)
{
    char *argv[MAX_ARGS];
    int argc = 0;
    argv[argc++] = (char *)"mdi-llm";
    for (const char *a = first; a; a = va_arg(ap, const char *)) {
        assert_true(argc < MAX_ARGS - 1);
        argv[argc++] = (char *)a;
    }
    argv[argc] = NULL;
    return mdi_cli_parse(argc, argv, c, err);
}

/* Parse must succeed; fails the test with the parser's message otherwise. */
static void parse_ok(mdi_cli *c, const char *first, ...)
{
    mdi_err err;
    va_list ap;
    va_start(ap, first);
    mdi_status st = parse_list(c, &err, first, ap);
    va_end(ap);
    if (st != MDI_OK)
        fail_msg("expected success, got: %s", err.msg);
    assert_string_equal(err.msg, "");
}

/* Parse must fail, with a message containing every needle ('|'-separated). */
static void parse_err(const char *needles, const char *first, ...)
{
    mdi_cli c;
    mdi_err err;
    va_list ap;
    va_start(ap, first);
    mdi_status st = parse_list(&c, &err, first, ap);
    va_end(ap);
    if (st == MDI_OK)
        fail_msg("expected an error containing \"%s\", parse succeeded", needles);
    assert_int_equal(err.status, st);
    assert_null(strchr(err.msg, '\n'));
    char buf[256];
    snprintf(buf, sizeof buf, "%s", needles);
    for (char *save = NULL, *n = strtok_r(buf, "|", &save); n; n = strtok_r(NULL, "|", &save))
        if (!strstr(err.msg, n))
            fail_msg("message \"%s\" lacks \"%s\"", err.msg, n);
}

static void test_defaults(void **state)
{
    (void)state;
    mdi_cli d = mdi_cli_default();
    mdi_sampler_params sp = mdi_sampler_default_params();
    assert_null(d.model);
    assert_null(d.prompt);
    assert_null(d.prompt_file);
    assert_null(d.tokenize);
    assert_null(d.stats_json);
    assert_null(d.output);
    assert_null(d.split);
    assert_int_equal(d.samples, 0);
    assert_int_equal(d.max_tokens, 256);
    assert_int_equal(d.max_tokens_given, 0); /* the default also stops at the context's end */
    assert_true(d.sampler.temperature == sp.temperature);
    assert_int_equal(d.sampler.top_k, sp.top_k);
    assert_true(d.sampler.top_p == sp.top_p);
    assert_true(d.seed == 42u);
    assert_int_equal(d.threads, 0);
    assert_int_equal(d.group_size, 0);
    assert_int_equal(d.prefill_chunk, 0); /* auto: 128 on one rank, 32 on several */
    assert_true(d.timeout_s == 300.0);
    assert_true(d.setup_timeout_s == 600.0);
    assert_int_equal(d.quiet + d.help + d.version, 0);

    mdi_cli c;
    parse_ok(&c, "--model", "m.h5", "--prompt", "hi", NULL);
    assert_string_equal(c.model, "m.h5");
    assert_string_equal(c.prompt, "hi");
    assert_int_equal(c.max_tokens, 256);
    assert_int_equal(c.max_tokens_given, 0);
    assert_true(c.seed == 42u);
}

/* Every value flag at once, in "--flag value" (eq = 0) or "--flag=value" form. */
static void check_all_flags(int eq)
{
    static const char *const pairs[][2] = {
        {"--model", "shards/"},     {"--prompt", "Once upon a time"},
        {"--samples", "7"},         {"--max-tokens", "0"},
        {"--temperature", "1.25"},  {"--top-k", "40"},
        {"--top-p", "0.5"},         {"--seed", "18446744073709551615"},
        {"--stats-json", "s.json"}, {"--split", "2,4,4"},
        {"--threads", "8"},         {"--group-size", "3"},
        {"--prefill-chunk", "64"},  {"--timeout", "12.5"},
        {"--setup-timeout", "90"},  {"--output", "out.txt"},
    };
    enum { N = sizeof pairs / sizeof pairs[0] };
    static char joined[N][64];
    char *argv[2 * N + 3];
    int argc = 0;
    argv[argc++] = (char *)"mdi-llm";
    for (int i = 0; i < N; i++) {
        if (eq) {
            snprintf(joined[i], sizeof joined[i], "%s=%s", pairs[i][0], pairs[i][1]);
            argv[argc++] = joined[i];
        } else {
            argv[argc++] = (char *)pairs[i][0];
            argv[argc++] = (char *)pairs[i][1];
        }
    }
    argv[argc++] = (char *)"--quiet";
    argv[argc] = NULL;
    mdi_cli c;
    mdi_err err;
    if (mdi_cli_parse(argc, argv, &c, &err) != MDI_OK)
        fail_msg("form %d: %s", eq, err.msg);
    assert_string_equal(c.model, "shards/");
    assert_string_equal(c.prompt, "Once upon a time");
    assert_int_equal(c.samples, 7);
    assert_int_equal(c.max_tokens, 0);
    assert_int_equal(c.max_tokens_given, 1);
    assert_true(c.sampler.temperature == 1.25f);
    assert_int_equal(c.sampler.top_k, 40);
    assert_true(c.sampler.top_p == 0.5f);
    assert_true(c.seed == UINT64_MAX);
    assert_string_equal(c.stats_json, "s.json");
    assert_string_equal(c.output, "out.txt");
    assert_string_equal(c.split, "2,4,4");
    assert_int_equal(c.threads, 8);
    assert_int_equal(c.group_size, 3);
    assert_int_equal(c.prefill_chunk, 64);
    assert_true(c.timeout_s == 12.5);
    assert_true(c.setup_timeout_s == 90.0);
    assert_int_equal(c.quiet, 1);
    assert_int_equal(c.help + c.version, 0);
}

static void test_every_flag_both_forms(void **state)
{
    (void)state;
    check_all_flags(0);
    check_all_flags(1);
    mdi_cli c;
    parse_ok(&c, "--model", "m", "--prompt-file", "p.txt", NULL);
    assert_string_equal(c.prompt_file, "p.txt");
    assert_null(c.prompt);
    parse_ok(&c, "--model=m", "--prompt-file=p.txt", NULL);
    assert_string_equal(c.prompt_file, "p.txt");
    parse_ok(&c, "--model", "m", "--tokenize", "Hello world", NULL);
    assert_string_equal(c.tokenize, "Hello world");
    parse_ok(&c, "--model=m", "--tokenize=a=b", NULL);
    assert_string_equal(c.tokenize, "a=b"); /* only the first '=' splits */
    parse_ok(&c, "--model", "m", "--prompt=--not a flag", NULL);
    assert_string_equal(c.prompt, "--not a flag");
    parse_ok(&c, "--model", "m", "--prompt", "-", "--temperature", "0", NULL);
    assert_string_equal(c.prompt, "-");
    assert_true(c.sampler.temperature == 0.0f);
    parse_ok(&c, "--model", "m", "--prompt", "x", "--max-tokens", "2147483647", "--seed", "0",
             "--top-p", "1", "--temperature", "100", "--timeout", "1", NULL);
    assert_int_equal(c.max_tokens, INT32_MAX);
    assert_true(c.seed == 0);
    assert_true(c.sampler.top_p == 1.0f);
    assert_true(c.timeout_s == 1.0); /* the least --timeout */
}

static void test_help_and_version(void **state)
{
    (void)state;
    mdi_cli c;
    parse_ok(&c, "--help", NULL);
    assert_int_equal(c.help, 1);
    parse_ok(&c, "-h", NULL);
    assert_int_equal(c.help, 1);
    parse_ok(&c, "--version", NULL);
    assert_int_equal(c.version, 1);
    assert_int_equal(c.help, 0);
    /* Stops at --help: later mistakes and missing requirements do not matter. */
    parse_ok(&c, "--prompt", "x", "--help", "--bogus", "stray", NULL);
    assert_int_equal(c.help, 1);
    parse_err("unknown option '--bogus'", "--bogus", "--help", NULL);
    parse_err("--help takes no value", "--help=yes", NULL);
    parse_err("--quiet takes no value", "--model", "m", "--prompt", "x", "--quiet=1", NULL);
}

static void test_out_of_range(void **state)
{
    (void)state;
    parse_err("--samples: '0' must be >= 1", "--model", "m", "--prompt", "x", "--samples", "0",
              NULL);
    parse_err("--max-tokens: '-1' must be >= 0", "--model", "m", "--prompt", "x", "--max-tokens",
              "-1", NULL);
    parse_err("--threads: '0' must be >= 1", "--model", "m", "--prompt", "x", "--threads=0", NULL);
    parse_err("--group-size: '-2' must be >= 1", "--model", "m", "--prompt", "x", "--group-size",
              "-2", NULL);
    parse_err("--prefill-chunk: '0' must be >= 1", "--model", "m", "--prompt", "x",
              "--prefill-chunk", "0", NULL);
    parse_err("--timeout: '0' must be > 0", "--model", "m", "--prompt", "x", "--timeout", "0",
              NULL);
    parse_err("--timeout: '-5' must be > 0", "--model", "m", "--prompt", "x", "--timeout=-5", NULL);
    parse_err("--timeout|must be <=", "--model", "m", "--prompt", "x", "--timeout", "1e300", NULL);
    parse_err("--timeout: '1e-300' must be >= 1", "--model", "m", "--prompt", "x", "--timeout",
              "1e-300", NULL);
    parse_err("--setup-timeout: '0' must be > 0", "--model", "m", "--prompt", "x",
              "--setup-timeout", "0", NULL);
    parse_err("--setup-timeout: '0.999' must be >= 1", "--model", "m", "--prompt", "x",
              "--setup-timeout", "0.999", NULL);
    parse_err("--setup-timeout: '31536001' must be <= 31536000", "--model", "m", "--prompt", "x",
              "--setup-timeout=31536001", NULL);
    parse_err("--temperature|-1|must be >= 0", "--model", "m", "--prompt", "x", "--temperature",
              "-1", NULL);
    parse_err("--temperature|101", "--model", "m", "--prompt", "x", "--temperature", "101", NULL);
    parse_err("--top-k: '-1' must be >= 0", "--model", "m", "--prompt", "x", "--top-k", "-1", NULL);
    parse_err("--top-p 1.5 is outside (0, 1]", "--model", "m", "--prompt", "x", "--top-p", "1.5",
              NULL);
    parse_err("--top-p 0 is outside (0, 1]", "--model", "m", "--prompt", "x", "--top-p=0", NULL);
    parse_err("--seed: '-1' is not a non-negative integer", "--model", "m", "--prompt", "x",
              "--seed", "-1", NULL);
}

static void test_overflow(void **state)
{
    (void)state;
    parse_err("--seed: '99999999999999999999999' is too large", "--model", "m", "--prompt", "x",
              "--seed", "99999999999999999999999", NULL);
    parse_err("--seed|18446744073709551616", "--model", "m", "--prompt", "x", "--seed",
              "18446744073709551616", NULL);
    parse_err("--max-tokens: '3000000000' is too large (max 2147483647)", "--model", "m",
              "--prompt", "x", "--max-tokens", "3000000000", NULL);
    parse_err("--samples|too large", "--model", "m", "--prompt", "x", "--samples", "2147483648",
              NULL);
    parse_err("--top-k|too large", "--model", "m", "--prompt", "x", "--top-k",
              "99999999999999999999999", NULL);
    parse_err("--threads|must be >= 1", "--model", "m", "--prompt", "x", "--threads",
              "-99999999999999999999999", NULL);
    parse_err("--temperature: '1e999' is out of range", "--model", "m", "--prompt", "x",
              "--temperature", "1e999", NULL);
    parse_err("--temperature: '1e-999' is too close to 0 for a double", "--model", "m", "--prompt",
              "x", "--temperature", "1e-999", NULL);
    parse_err("--top-p 1e300 is outside (0, 1]", "--model", "m", "--prompt", "x", "--top-p",
              "1e300", NULL);
    /* ranges hold for the number as written, and messages quote it: float
     * rounding takes none into the range (1.0000000001 -> 1) or out (1e-50 -> 0) */
    parse_err("--top-p 1.0000000001 is outside (0, 1]", "--model", "m", "--prompt", "x", "--top-p",
              "1.0000000001", NULL);
    parse_err("--top-p 1e-50 is below the smallest float", "--model", "m", "--prompt", "x",
              "--top-p", "1e-50", NULL);
    parse_err("--temperature 1e-50 is below the smallest float, 1.17549e-38 (0 = greedy)",
              "--model", "m", "--prompt", "x", "--temperature", "1e-50", NULL);
    parse_err("--temperature 100.000001 is above the maximum 100", "--model", "m", "--prompt", "x",
              "--temperature", "100.000001", NULL);
    parse_err("--temperature 1e300 is above the maximum 100", "--model", "m", "--prompt", "x",
              "--temperature", "1e300", NULL);
    parse_err("--top-p -0.5 is outside (0, 1]", "--model", "m", "--prompt", "x", "--top-p=-0.5",
              NULL);
    mdi_cli c;
    parse_ok(&c, "--model", "m", "--prompt", "x", "--top-p", "1e-37", "--temperature", "1e-37",
             NULL);
    assert_true(c.sampler.top_p == 1e-37f && c.sampler.temperature == 1e-37f);
}

static void test_trailing_garbage(void **state)
{
    (void)state;
    static const char *const int_flags[] = {"--samples", "--max-tokens", "--top-k",
                                            "--threads", "--group-size", "--prefill-chunk"};
    static const char *const bad_ints[] = {"12x", "1.5", " 1", "1 ", "+1", "0x10", "abc", "-"};
    char needle[64];
    for (size_t f = 0; f < sizeof int_flags / sizeof int_flags[0]; f++) {
        for (size_t b = 0; b < sizeof bad_ints / sizeof bad_ints[0]; b++) {
            snprintf(needle, sizeof needle, "%s: '%s' is not an integer", int_flags[f],
                     bad_ints[b]);
            parse_err(needle, "--model", "m", "--prompt", "x", int_flags[f], bad_ints[b], NULL);
        }
    }
    parse_err("--seed: '12x' is not a non-negative integer", "--model", "m", "--prompt", "x",
              "--seed", "12x", NULL);
    parse_err("--seed: ' 7' is not", "--model", "m", "--prompt", "x", "--seed", " 7", NULL);
    static const char *const real_flags[] = {"--temperature", "--top-p", "--timeout",
                                             "--setup-timeout"};
    static const char *const bad_reals[] = {"0.5x", " 0.5", "0.5 ", "x", "1,5", "."};
    for (size_t f = 0; f < sizeof real_flags / sizeof real_flags[0]; f++) {
        for (size_t b = 0; b < sizeof bad_reals / sizeof bad_reals[0]; b++) {
            snprintf(needle, sizeof needle, "%s: '%s' is not a number", real_flags[f],
                     bad_reals[b]);
            parse_err(needle, "--model", "m", "--prompt", "x", real_flags[f], bad_reals[b], NULL);
        }
    }
}

static void test_not_finite(void **state)
{
    (void)state;
    static const char *const flags[] = {"--temperature", "--top-p", "--timeout", "--setup-timeout"};
    static const char *const values[] = {"nan", "NaN", "inf", "-inf", "infinity", "nan(1)"};
    char needle[64];
    for (size_t f = 0; f < sizeof flags / sizeof flags[0]; f++) {
        for (size_t v = 0; v < sizeof values / sizeof values[0]; v++) {
            snprintf(needle, sizeof needle, "%s: '%s' is not a finite number", flags[f], values[v]);
            parse_err(needle, "--model", "m", "--prompt", "x", flags[f], values[v], NULL);
        }
        /* decimal only, like the integer options: strtod alone would read hex */
        snprintf(needle, sizeof needle, "%s: '0x1p-3' is not a decimal number", flags[f]);
        parse_err(needle, "--model", "m", "--prompt", "x", flags[f], "0x1p-3", NULL);
    }
}

static void test_missing_value(void **state)
{
    (void)state;
    static const char *const flags[] = {
        "--model",      "--prompt",        "--prompt-file", "--tokenize",   "--samples",
        "--max-tokens", "--temperature",   "--top-k",       "--top-p",      "--seed",
        "--stats-json", "--split",         "--threads",     "--group-size", "--prefill-chunk",
        "--timeout",    "--setup-timeout", "--output"};
    char needle[64];
    for (size_t f = 0; f < sizeof flags / sizeof flags[0]; f++) {
        snprintf(needle, sizeof needle, "%s: missing value", flags[f]);
        /* At the end of argv, and followed by another option. */
        parse_err(needle, flags[f], NULL);
        parse_err(needle, flags[f], "--quiet", NULL);
    }
    parse_err("--samples: missing value", "--model", "m", "--prompt", "x", "--samples=", NULL);
    parse_err("--seed: missing value", "--model", "m", "--prompt", "x", "--seed=", NULL);
    parse_err("--top-p: missing value", "--model", "m", "--prompt", "x", "--top-p=", NULL);
    parse_err("--prompt: missing value|--prompt=VALUE", "--model", "m", "--prompt", "--help", NULL);
}

static void test_empty_strings(void **state)
{
    (void)state;
    parse_err("--prompt is empty", "--model", "m", "--prompt", "", NULL);
    parse_err("--prompt is empty", "--model", "m", "--prompt=", NULL);
    parse_err("--model is empty", "--model", "", "--prompt", "x", NULL);
    parse_err("--prompt-file is empty", "--model", "m", "--prompt-file", "", NULL);
    parse_err("--tokenize is empty", "--model", "m", "--tokenize=", NULL);
    parse_err("--stats-json is empty", "--model", "m", "--prompt", "x", "--stats-json", "", NULL);
    parse_err("--output is empty", "--model", "m", "--prompt", "x", "--output=", NULL);
    parse_err("--split is empty", "--model", "m", "--prompt", "x", "--split=", NULL);
}

static void test_unknown_and_positional(void **state)
{
    (void)state;
    parse_err("unknown option '--foo' (see --help)", "--model", "m", "--prompt", "x", "--foo",
              NULL);
    parse_err("unknown option '--foo' (see --help)", "--foo=3", NULL);
    parse_err("unknown option '-x'", "-x", NULL);
    parse_err("unknown option '--prompts'", "--prompts", "x", NULL);
    parse_err("unknown option '--Model'", "--Model", "m", NULL);
    parse_err("unexpected argument 'stray'", "--model", "m", "--prompt", "x", "stray", NULL);
    parse_err("unexpected argument 'extra words'", "--model", "m", "--prompt", "x", "extra words",
              NULL);
    parse_err("unexpected argument '--'", "--model", "m", "--", "--prompt", "x", NULL);
    parse_err("unexpected argument '-'", "--model", "m", "-", NULL);
}

static void test_requirements_and_exclusions(void **state)
{
    (void)state;
    mdi_cli c;
    parse_err("--prompt and --prompt-file are mutually exclusive", "--model", "m", "--prompt", "x",
              "--prompt-file", "f", NULL);
    parse_err("--prompt and --tokenize are mutually exclusive", "--model", "m", "--tokenize", "t",
              "--prompt", "x", NULL);
    parse_err("--prompt-file and --tokenize are mutually exclusive", "--model", "m",
              "--prompt-file", "f", "--tokenize", "t", NULL);
    parse_err("--model is required", "--prompt", "x", NULL);
    parse_err("--model is required", "--tokenize", "x", "--samples", "2", NULL);
    parse_err("--model is required", NULL);
    parse_err("--stats-json does not apply to --tokenize, which only prints token ids", "--model",
              "m", "--tokenize", "t", "--stats-json", "s.json", NULL);
    parse_err("--output does not apply to --tokenize", "--model", "m", "--tokenize", "t",
              "--output", "o.txt", NULL);
    parse_err("--samples does not apply to --tokenize", "--model", "m", "--samples", "3",
              "--tokenize", "t", NULL);
    parse_ok(&c, "--model", "m", "--tokenize", "t", "--quiet", "--setup-timeout", "5", NULL);
    parse_err("--split '2.25,2.75': expected layer counts", "--model", "m", "--prompt", "x",
              "--split", "2.25,2.75", NULL);
    parse_ok(&c, "--model", "m", "--prompt", "x", "--split", "2,2.5,0.5", NULL);
    parse_err("one of --prompt, --prompt-file or --tokenize is required", "--model", "m", NULL);
    parse_err("--samples|--prompt-file", "--model", "m", "--prompt-file", "f", "--samples", "2",
              NULL);
    parse_err("--prompt is given more than once", "--model", "m", "--prompt", "a", "--prompt", "b",
              NULL);
    parse_err("--seed is given more than once", "--model", "m", "--prompt", "a", "--seed=1",
              "--seed", "2", NULL);
}

static void test_usage(void **state)
{
    (void)state;
    char *text = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&text, &size);
    assert_non_null(f);
    mdi_cli_usage(f, "mdi-llm");
    assert_int_equal(fclose(f), 0);
    static const char *const must[] = {
        "--model",
        "--prompt",
        "--prompt-file",
        "--tokenize",
        "--samples",
        "--max-tokens",
        "--temperature",
        "--top-k",
        "--top-p",
        "--seed",
        "--stats-json",
        "--output FILE",
        "--split",
        "--threads",
        "--group-size",
        "--prefill-chunk",
        "--balance time|memory",
        "--speeds auto|a,b,c",
        "10.5,11.5",
        "--timeout",
        "--setup-timeout",
        "--quiet",
        "--help",
        "-h,",
        "--version",
        "greedy",
        "default 256",
        "default 0.8",
        "default 0.95",
        "default 42",
        "default 128",
        "default 300",
        "default 600",
        "--flag=value",
        "mpirun -np 3 mdi-llm --model shards/ --prompt \"Once upon a time\" --samples 3"};
    for (size_t i = 0; i < sizeof must / sizeof must[0]; i++)
        if (!strstr(text, must[i]))
            fail_msg("--help text lacks \"%s\"", must[i]);
    int lines = 0, longest = 0, cur = 0;
    for (const char *p = text; *p; p++) {
        if (*p == '\n') {
            lines++;
            longest = cur > longest ? cur : longest;
            cur = 0;
        } else {
            cur++;
        }
    }
    assert_true(lines <= 62); /* about a screen */
    assert_true(longest <= 100);
    free(text);
}

/* Ranks compare mdi_cli_agreed: the same options in any spelling or order
 * agree, --model and --threads may differ, every other option is its own
 * entry. */
static void test_agreed(void **state)
{
    (void)state;
    mdi_cli a, b;
    uint64_t ha[MDI_CLI_N_AGREED], hb[MDI_CLI_N_AGREED];
    parse_ok(&a, "--model", "m", "--prompt", "x", "--max-tokens", "3", "--top-p", "0.5", NULL);
    parse_ok(&b, "--top-p=0.50", "--max-tokens=3", "--prompt=x", "--model", "/other/m", "--threads",
             "7", NULL);
    mdi_cli_agreed(&a, ha);
    mdi_cli_agreed(&b, hb);
    assert_memory_equal(ha, hb, sizeof ha);
    /* each agreed option changes its own entry and no other */
    static const char *const other[][2] = {
        {"--help", NULL},       {"--version", NULL},      {"--tokenize", "x"},
        {"--prompt-file", "f"}, {"--prompt", "y"},        {"--samples", "2"},
        {"--max-tokens", "4"},  {"--temperature", "0"},   {"--top-k", "3"},
        {"--top-p", "0.9"},     {"--seed", "1"},          {"--stats-json", "s"},
        {"--output", "o"},      {"--split", "1,1"},       {"--balance", "memory"},
        {"--speeds", "1,2"},    {"--group-size", "2"},    {"--prefill-chunk", "8"},
        {"--timeout", "9"},     {"--setup-timeout", "9"}, {"--quiet", NULL}};
    static const int is_string[] = {0, 0, 1, 1, 1, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0};
    assert_int_equal(sizeof other / sizeof other[0], MDI_CLI_N_AGREED);
    mdi_cli base;
    parse_ok(&base, "--model", "m", "--prompt", "x", NULL);
    mdi_cli_agreed(&base, ha);
    for (int k = 0; k < MDI_CLI_N_AGREED; k++) {
        const char *flag = other[k][0], *val = other[k][1];
        /* --prompt-file and --tokenize take --prompt's place */
        const int prompt = 4, is_prompt = k >= 2 && k <= prompt;
        char *argv[8] = {"mdi-llm", "--model", "m", "--prompt", "x"};
        int argc = is_prompt ? 3 : 5;
        argv[argc++] = (char *)flag;
        if (val)
            argv[argc++] = (char *)val;
        mdi_cli c = mdi_cli_default();
        mdi_err err;
        if (mdi_cli_parse(argc, argv, &c, &err))
            fail_msg("%s %s: %s", flag, val ? val : "", err.msg);
        uint64_t hc[MDI_CLI_N_AGREED];
        mdi_cli_agreed(&c, hc);
        for (int i = 0; i < MDI_CLI_N_AGREED; i++) {
            int differs = hc[i] != ha[i];
            /* --prompt-file and --tokenize replace --prompt, so both entries change */
            int want = i == k || (is_prompt && k != prompt && i == prompt);
            if (differs != want)
                fail_msg("%s: entry %d (%s) %s", flag, i, mdi_cli_agreed_name(i),
                         differs ? "changed" : "did not change");
        }
        assert_string_equal(mdi_cli_agreed_name(k), flag);
        /* whether it was given, for the messages naming the rank that lacks it */
        int given = k < 2 || k == MDI_CLI_N_AGREED - 1 || is_string[k];
        assert_int_equal(mdi_cli_agreed_given(k, hc[k]), given ? 1 : -1);
        assert_int_equal(mdi_cli_agreed_given(k, ha[k]), given ? k == prompt : -1);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_every_flag_both_forms),
        cmocka_unit_test(test_help_and_version),
        cmocka_unit_test(test_out_of_range),
        cmocka_unit_test(test_overflow),
        cmocka_unit_test(test_trailing_garbage),
        cmocka_unit_test(test_not_finite),
        cmocka_unit_test(test_missing_value),
        cmocka_unit_test(test_empty_strings),
        cmocka_unit_test(test_unknown_and_positional),
        cmocka_unit_test(test_requirements_and_exclusions),
        cmocka_unit_test(test_usage),
        cmocka_unit_test(test_agreed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* Run set-up: placement, agreement, prompts, allocation and loading. */
#define _GNU_SOURCE
#include "mdi/engine.h"

#include <errno.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "mdi/plan.h"
#include "mdi/shard_loader.h"

#define MAX_PROMPT_FILE (64u << 20)

int mdi_utf8_valid(const char *text, size_t len)
{
    return mdi_utf8_valid_len(text, len) == len;
}

size_t mdi_utf8_valid_len(const char *text, size_t len)
{
    const unsigned char *s = (const unsigned char *)text;
    size_t i = 0;
    while (i < len) {
        unsigned c = s[i];
        size_t n;
        uint32_t cp, min;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xe0) == 0xc0) {
            n = 1, cp = c & 0x1f, min = 0x80;
        } else if ((c & 0xf0) == 0xe0) {
            n = 2, cp = c & 0x0f, min = 0x800;
        } else if ((c & 0xf8) == 0xf0) {
            n = 3, cp = c & 0x07, min = 0x10000;
        } else {
            return i;
        }
        if (n > len - i - 1)
            return i;
        for (size_t k = 1; k <= n; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                return i;
            cp = (cp << 6) | (s[i + k] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return i;
        i += n + 1;
    }
    return len;
}

#define UTF8_REPLACEMENT "\xef\xbf\xbd" /* U+FFFD */

/* 1 if c may follow r's held bytes (Unicode table 3-7: the second byte's range
 * depends on the first; later ones are 80..BF). */
static int utf8_continues(const mdi_utf8_repair *r, unsigned char c)
{
    unsigned char lo = 0x80, hi = 0xbf;
    if (r->n == 1) {
        switch (r->pend[0]) {
        case 0xe0:
            lo = 0xa0;
            break;
        case 0xed:
            hi = 0x9f;
            break; /* no surrogates */
        case 0xf0:
            lo = 0x90;
            break;
        case 0xf4:
            hi = 0x8f;
            break; /* nothing above U+10FFFF */
        default:
            break;
        }
    }
    return c >= lo && c <= hi;
}

size_t mdi_utf8_repair_feed(mdi_utf8_repair *r, const char *in, size_t n, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)in[i];
        if (r->n > 0) {
            if (utf8_continues(r, c)) {
                r->pend[r->n++] = c;
                if (r->n == r->need) {
                    memcpy(out + o, r->pend, (size_t)r->n);
                    o += (size_t)r->n;
                    r->n = 0;
                }
                continue;
            }
            o += mdi_utf8_repair_end(r, out + o); /* one U+FFFD per held byte */
            /* and c starts afresh */
        }
        if (c < 0x80) {
            out[o++] = (char)c;
        } else if (c >= 0xc2 && c <= 0xf4) {
            r->pend[0] = c;
            r->n = 1;
            r->need = c < 0xe0 ? 2 : c < 0xf0 ? 3 : 4;
        } else {
            memcpy(out + o, UTF8_REPLACEMENT, 3);
            o += 3;
        }
    }
    return o;
}

size_t mdi_utf8_repair_end(mdi_utf8_repair *r, char *out)
{
    size_t o = 0;
    for (int k = 0; k < r->n; k++, o += 3)
        memcpy(out + o, UTF8_REPLACEMENT, 3);
    r->n = 0;
    return o;
}

/* Cores this process may run on. */
static int available_cores(void)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0)
        return CPU_COUNT(&set);
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

/* Read a prompt file into *buf (NUL-terminated) and split it into lines. */
static mdi_status read_prompt_file(const char *path, char **buf, const char ***lines,
                                   int32_t *n_lines, mdi_err *err)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return mdi_errf(err, MDI_ERR_IO, "--prompt-file %s: cannot be opened: %s", path,
                        strerror(errno));
    char *b = malloc(MAX_PROMPT_FILE + 1);
    errno = 0;
    size_t n = b ? fread(b, 1, MAX_PROMPT_FILE + 1, f) : 0;
    int bad = ferror(f), e = errno;
    fclose(f);
    if (!b)
        return mdi_errf(err, MDI_ERR_NOMEM, "cannot allocate the prompt file buffer");
    if (bad || n > MAX_PROMPT_FILE) {
        free(b);
        if (bad)
            return mdi_errf(err, MDI_ERR_IO, "--prompt-file %s: cannot be read: %s", path,
                            strerror(e ? e : EIO));
        return mdi_errf(err, MDI_ERR_IO, "--prompt-file %s: larger than 64 MiB", path);
    }
    char *t = b;
    if (n >= 3 && memcmp(b, "\xef\xbb\xbf", 3) == 0) { /* a UTF-8 byte order mark */
        t += 3;
        n -= 3;
    }
    /* Blank lines at the end (an editor's final newlines, or lines of only
     * spaces and tabs) are not prompts; the last prompt keeps its own spaces. */
    size_t keep = n;
    while (n > 0 && (t[n - 1] == '\n' || t[n - 1] == '\r' || t[n - 1] == ' ' || t[n - 1] == '\t')) {
        if (t[n - 1] == '\n')
            keep = n - 1;
        n--;
    }
    n = n > 0 ? keep : 0;
    t[n] = '\0';
    int32_t count = 0; /* lines: one per newline, and an unterminated last one */
    for (size_t i = 0; i < n; i++) {
        int nul = t[i] == '\0';
        if (nul || count >= MDI_CLI_MAX_SAMPLES) {
            free(b);
            if (nul)
                return mdi_errf(err, MDI_ERR_ARG, "line %d of --prompt-file %s has a NUL byte",
                                count + 1, path);
            return mdi_errf(err, MDI_ERR_RANGE, "--prompt-file %s has more than %d prompts", path,
                            MDI_CLI_MAX_SAMPLES);
        }
        count += t[i] == '\n' || (i + 1 == n);
    }
    const char **ls = calloc((size_t)count + 1, sizeof *ls);
    if (!ls) {
        free(b);
        return mdi_errf(err, MDI_ERR_NOMEM, "cannot allocate the prompt list");
    }
    int32_t k = 0;
    for (char *p = t; p < t + n && k < count;) {
        char *nl = memchr(p, '\n', (size_t)(t + n - p));
        char *end = nl ? nl : t + n;
        *end = '\0';
        if (end > p && end[-1] == '\r')
            end[-1] = '\0';
        if (*p && !p[strspn(p, " \t")]) { /* blank, as the final lines that are dropped */
            free(ls);
            free(b);
            return mdi_errf(err, MDI_ERR_ARG,
                            "line %d of --prompt-file %s is blank (only spaces and tabs)", k + 1,
                            path);
        }
        ls[k++] = p;
        p = end + 1;
    }
    *buf = b;
    *lines = ls;
    *n_lines = k;
    return MDI_OK;
}

/* Encode text (validated as UTF-8) into a fresh array with BOS first. */
static mdi_status encode_prompt(const mdi_tokenizer *tok, const char *what, const char *text,
                                int32_t max_pos, int32_t **ids, int32_t *n, mdi_err *err)
{
    size_t len = strlen(text), cap = len + 2, got = 0;
    if (len == 0)
        return mdi_errf(err, MDI_ERR_ARG, "%s is empty", what);
    size_t valid = mdi_utf8_valid_len(text, len);
    if (valid < len)
        return mdi_errf(err, MDI_ERR_ARG, "%s is not valid UTF-8 at byte %zu (0x%02x)", what,
                        valid + 1, (unsigned)(unsigned char)text[valid]);
    size_t least = mdi_tokenizer_min_ids(tok, len) + (mdi_tokenizer_bos(tok) >= 0);
    if (least > (size_t)max_pos)
        return mdi_errf(err, MDI_ERR_RANGE,
                        "%s has %zu bytes, at least %zu tokens: more than the model's context "
                        "of %d",
                        what, len, least, (int)max_pos);
    if (!(*ids = malloc(cap * sizeof **ids)))
        return mdi_errf(err, MDI_ERR_NOMEM, "cannot allocate prompt ids");
    mdi_status s = mdi_tokenizer_encode(tok, text, len, 1, *ids, cap, &got, err);
    if (s == MDI_ERR_RANGE && got > cap) { /* byte fallback: a space can cost 3 ids */
        int32_t *more = got <= INT32_MAX ? realloc(*ids, got * sizeof **ids) : NULL;
        if (!more)
            return mdi_errf(err, MDI_ERR_NOMEM, "%s: cannot allocate %zu prompt ids", what, got);
        *ids = more;
        cap = got;
        s = mdi_tokenizer_encode(tok, text, len, 1, *ids, cap, &got, err);
    }
    if (s)
        return s;
    *n = (int32_t)got;
    return MDI_OK;
}

/* Rank 0: tokenizer, prompts and the run's shape. */
static mdi_status prepare_prompts(mdi_engine *e, const mdi_cli *cli, mdi_err *err)
{
    mdi_status s;
    char *file_buf = NULL;
    const char **texts = NULL, *one[1];
    int32_t P = 1;
    mdi_watchdog_step(e->wd, "loading the tokenizer from %s", e->shard_path);
    if ((s = mdi_shard_load_vocab(e->shard_path, &e->vocab, err)) ||
        (s = mdi_tokenizer_create(&e->vocab, &e->tok, err)))
        return s;
    if (cli->prompt_file) {
        mdi_watchdog_step(e->wd, "reading the prompt file %s", cli->prompt_file);
        if ((s = read_prompt_file(cli->prompt_file, &file_buf, &texts, &P, err)))
            return s;
        if (P == 0)
            s = mdi_errf(err, MDI_ERR_ARG, "--prompt-file %s holds no prompt", cli->prompt_file);
    } else {
        one[0] = cli->prompt;
        texts = one;
    }
    int32_t S = cli->samples ? cli->samples : cli->prompt_file ? P : e->n_ranks;
    e->n_prompts = P;
    size_t n_slots = (size_t)(S > P ? S : P); /* one entry per sample and per prompt */
    e->prompt_ids = s ? NULL : calloc(n_slots, sizeof *e->prompt_ids);
    e->n_prompt = s ? NULL : calloc(n_slots, sizeof *e->n_prompt);
    if (!s && (!e->prompt_ids || !e->n_prompt))
        s = mdi_errf(err, MDI_ERR_NOMEM, "cannot allocate %d samples", S);
    const mdi_config *c = &e->info.cfg;
    int32_t max_pos = 1;
    mdi_watchdog_step(e->wd, "tokenizing %d prompt%s", P, P == 1 ? "" : "s");
    for (int32_t i = 0; !s && i < P; i++) {
        char what[320];
        if (cli->prompt_file)
            snprintf(what, sizeof what, "line %d of --prompt-file %s", i + 1, cli->prompt_file);
        else
            snprintf(what, sizeof what, "--prompt");
        if ((s = encode_prompt(e->tok, what, texts[i], c->max_seq_len, &e->prompt_ids[i],
                               &e->n_prompt[i], err)))
            break;
        /* the last generated token is never fed back, so it needs no position */
        int64_t need = (int64_t)e->n_prompt[i] + (cli->max_tokens > 0 ? cli->max_tokens - 1 : 0);
        if (need > c->max_seq_len && !cli->max_tokens_given) {
            /* the default --max-tokens stops at the context's end ("context-full") */
            if (e->n_prompt[i] > c->max_seq_len)
                s = mdi_errf(err, MDI_ERR_RANGE,
                             "%s has %d tokens, more than the model's context of %d", what,
                             e->n_prompt[i], c->max_seq_len);
            need = c->max_seq_len;
        } else if (need > c->max_seq_len)
            s = mdi_errf(err, MDI_ERR_RANGE,
                         "%s has %d tokens and --max-tokens is %d: that needs %lld positions, "
                         "more than the model's context of %d",
                         what, e->n_prompt[i], cli->max_tokens, (long long)need, c->max_seq_len);
        if (!s && need > max_pos)
            max_pos = (int32_t)need;
    }
    for (int32_t i = P; !s && i < S; i++) { /* samples beyond the prompts reuse them in turn */
        e->prompt_ids[i] = e->prompt_ids[i % P];
        e->n_prompt[i] = e->n_prompt[i % P];
    }
    int32_t gs = cli->group_size ? cli->group_size : mdi_pipeline_auto_group_size(S, e->n_ranks);
    if (!s && gs > S)
        s = mdi_errf(err, MDI_ERR_ARG, "--group-size %d is larger than the %d samples", gs, S);
    e->shape.n_samples = S;
    e->shape.group_size = gs;
    int32_t chunk = cli->prefill_chunk ? cli->prefill_chunk
                    : e->n_ranks > 1   ? MDI_CLI_DEFAULT_PREFILL_CHUNK_NRANKS
                                       : MDI_CLI_DEFAULT_PREFILL_CHUNK_1RANK;
    /* a message carries at least one row per sample of a group (decode) and
     * at most every prompt row of a group: no buffer beyond that */
    int32_t longest = 0;
    for (int32_t i = 0; !s && i < S; i++)
        longest = e->n_prompt[i] > longest ? e->n_prompt[i] : longest;
    if ((int64_t)gs * longest < chunk)
        chunk = (int32_t)((int64_t)gs * longest);
    e->shape.max_rows = chunk > gs ? chunk : gs;
    e->shape.max_pos = max_pos;
    free(file_buf);
    if (texts != one)
        free(texts);
    return s;
}

/* Collective: every rank's verdict on a set-up step, marked on the
 * start-up watchdog as a wait for the other ranks. */
static mdi_status agree(mdi_engine *e, mdi_status local, const mdi_err *local_err, mdi_err *err)
{
    return mdi_ring_agree(e->comm, local, local_err, e->wd, err);
}

/* Collective: this rank's threads, --threads or this host's cores shared
 * among the ranks on it. */
static int rank_threads(const mdi_engine *e, const mdi_cli *cli)
{
    int local = mdi_ring_local_size(e->comm), threads = available_cores();
    if (cli->threads)
        return cli->threads;
    threads /= local > 0 ? local : 1;
    return threads < 1 ? 1 : threads;
}

/* mdi_shard_load's progress, on the start-up watchdog. */
static void load_progress(void *ctx, uint64_t done, uint64_t total)
{
    const mdi_engine *e = ctx;
    mdi_watchdog_detail(e->wd, "%.2f of %.2f GB loaded", (double)done / 1e9, (double)total / 1e9);
}

/* Allocate this rank's stage and read its weights. */
static mdi_status load_stage(mdi_engine *e, mdi_err *err)
{
    int threads = e->threads;
    mdi_status s = mdi_tensor_init(threads, &e->tensor, err);
    if (s)
        return s;
    mdi_stage_params sp = {
        .half_first = e->half_first,
        .half_last = e->half_last,
        .has_extras = e->half_first == 0,
        .n_slots = (size_t)e->shape.n_samples,
        .max_pos = (size_t)e->shape.max_pos,
        .max_rows = (size_t)e->shape.max_rows,
        .max_logit_rows = (size_t)e->shape.group_size,
        .n_threads = threads,
    };
    mdi_watchdog_step(e->wd, "allocating its layers");
    if ((s = mdi_stage_init(&e->stage, &e->info.cfg, &sp, err)))
        return s;
    e->stage_ready = 1;
    mdi_watchdog_step(e->wd, "loading its weights from %s", e->shard_path);
    if ((s = mdi_shard_load(e->shard_path, &e->stage, e->wd ? load_progress : NULL, e, err)))
        return s;
    /* The packed layout serves the one-row product: column panels bring the
     * down projection to the read rate instead of 80-85% of it (mdi-bench
     * stream --rows 1), and rows in groups of four give each activation load
     * four independent sums (BENCHMARKS.md, "Rows in groups of four").
     * Groups of 2-4 samples get narrower panels, which the same walker
     * reads faster than row-major weights (BENCHMARKS.md "Several rows
     * through the panel walker"); larger groups stay row-major, which
     * stream_block's 8-row blocks read faster (mdi_weight_panel says 0,
     * and mdi_stage_pack leaves them). */
    mdi_watchdog_step(e->wd, "laying out its weights");
    return mdi_stage_pack(&e->stage, (size_t)e->shape.group_size, err);
}

/* Weight bytes --speeds auto streams on each rank: a rank's share of a
 * decode step, within [64 MiB, 256 MiB] (beyond the last-level caches of
 * most hosts). */
static size_t probe_bytes(const mdi_config *c, int n_ranks)
{
    double step =
        ((double)mdi_config_layer_params(c) * c->n_layers + (double)mdi_config_head_params(c)) *
        sizeof(float) / n_ranks;
    double lo = 64.0 * (1 << 20), hi = 256.0 * (1 << 20);
    return (size_t)(step < lo ? lo : step > hi ? hi : step);
}

/* Collective: every rank's relative speed from --speeds into speeds
 * (n_ranks weights, plan.h); this rank's measured rate in e->speed_rate. */
static mdi_status rank_speeds(mdi_engine *e, const char *text, uint32_t *speeds, mdi_err *err)
{
    double *rates = calloc((size_t)e->n_ranks, sizeof *rates);
    int32_t n = 0;
    mdi_status s = MDI_OK;
    if (!rates)
        return mdi_errf(err, MDI_ERR_NOMEM, "cannot allocate the speed table");
    if (!strcmp(text, "auto")) {
        /* All ranks probe at once, as they will run (ranks on one host share
         * its memory bandwidth), for 1 s: ten periods of a CPU quota, whose
         * phase moves a 0.3 s probe of a half-core cap by +-33%.
         * Every rank joins the allgather, a failed probe too (as 0). */
        if ((s = agree(e, MDI_OK, NULL, err)))
            goto done;
        mdi_watchdog_step(e->wd, "measuring its speed (--speeds auto)");
        e->speed_rate =
            mdi_matmul_stream_rate(probe_bytes(&e->info.cfg, e->n_ranks), 1.0, e->threads);
        mdi_watchdog_wait(e->wd);
        s = mdi_ring_allgather(e->comm, &e->speed_rate, sizeof e->speed_rate, rates, err);
        for (int r = 0; !s && r < e->n_ranks; r++)
            if (!(rates[r] > 0.0))
                s = mdi_errf(err, MDI_ERR_NOMEM,
                             "--speeds auto: rank %d could not allocate its %zu MiB probe", r,
                             probe_bytes(&e->info.cfg, e->n_ranks) >> 20);
        if (!s)
            mdi_plan_snap_speeds(rates, e->n_ranks);
    } else if (!(s = mdi_plan_parse_speeds(text, NULL, INT32_MAX, &n, err))) {
        if (n != e->n_ranks)
            s = mdi_errf(err, MDI_ERR_MISMATCH, "--speeds has %d entr%s but %d rank%s started", n,
                         n == 1 ? "y" : "ies", e->n_ranks, e->n_ranks == 1 ? " was" : "s were");
        else
            s = mdi_plan_parse_speeds(text, rates, n, &n, err);
    }
    /* Rank 0's weights for all: floating point may round differently on
     * other kinds of hosts, and every rank must make the same plan. */
    if (!s && e->rank == 0)
        mdi_plan_speed_weights(rates, e->n_ranks, speeds);
done:
    free(rates);
    mdi_watchdog_wait(e->wd);
    if (!s)
        s = mdi_ring_bcast(e->comm, speeds, (size_t)e->n_ranks * sizeof *speeds, 0, err);
    return s;
}

/* Collective: which layers are mine. */
static mdi_status place(mdi_engine *e, const mdi_cli *cli, mdi_err *err)
{
    int32_t counts[MDI_MAX_HALVES], n_counts = 0;
    mdi_balance how = MDI_BALANCE_DEFAULT;
    mdi_shard_info *infos = calloc((size_t)e->n_ranks, sizeof *infos);
    int32_t *bounds = calloc((size_t)e->n_ranks + 1, sizeof *bounds);
    uint32_t *speeds = calloc((size_t)e->n_ranks, sizeof *speeds);
    mdi_status s = MDI_OK;
    if (!infos || !bounds || !speeds)
        s = mdi_errf(err, MDI_ERR_NOMEM, "cannot allocate the placement table");
    mdi_watchdog_wait(e->wd);
    if (!s)
        s = mdi_ring_allgather(e->comm, &e->info, sizeof e->info, infos, err);
    if (!s && cli->split)
        s = mdi_plan_parse_split(cli->split, counts, MDI_MAX_HALVES, &n_counts, err);
    if (!s && cli->balance)
        s = mdi_plan_parse_balance(cli->balance, &how, err);
    if (!s && cli->speeds) {
        /* Refuse --speeds with --split, memory balance or shards before the
         * 1 s probe: the plan with equal speeds fails in the same way. */
        for (int32_t r = 0; r < e->n_ranks; r++)
            speeds[r] = MDI_SPEED_SCALE;
        s = mdi_plan_check(infos, e->n_ranks, cli->split ? counts : NULL, n_counts,
                           cli->balance ? &how : NULL, speeds, bounds, err);
        if (!s)
            s = rank_speeds(e, cli->speeds, speeds, err);
    }
    if (!s)
        s = mdi_plan_check(infos, e->n_ranks, cli->split ? counts : NULL, n_counts,
                           cli->balance ? &how : NULL, cli->speeds ? speeds : NULL, bounds, err);
    if (!s) {
        e->half_first = bounds[e->rank];
        e->half_last = bounds[e->rank + 1];
        e->speed = cli->speeds ? speeds[e->rank] : MDI_SPEED_SCALE;
    }
    free(infos);
    free(bounds);
    free(speeds);
    return s;
}

/* mdi_engine_setup's steps, e->wd naming them. */
static mdi_status setup_steps(mdi_engine *e, const mdi_cli *cli, mdi_err *err)
{
    mdi_err le;
    mdi_status s, ls;
    MPI_Comm comm = e->comm;
    mdi_watchdog *wd = e->wd;
    mdi_err_clear(&le);
    mdi_watchdog_step(wd, "locating its model file in %s", cli->model);
    ls = mdi_shard_locate(cli->model, e->rank, e->shard_path, sizeof e->shard_path, &e->info, &le);
    if ((s = agree(e, ls, &le, err)))
        return s;
    mdi_watchdog_step(wd, "placing the layers");
    mdi_watchdog_wait(wd); /* rank_threads counts the ranks on each host */
    e->threads = rank_threads(e, cli);
    ls = place(e, cli, &le); /* same inputs and verdict on every rank */
    if ((s = agree(e, ls, &le, err)))
        return s;
    ls = e->rank == 0 ? prepare_prompts(e, cli, &le) : MDI_OK;
    if ((s = agree(e, ls, &le, err)) ||
        (s = mdi_ring_bcast(comm, &e->shape, sizeof e->shape, 0, err)))
        return s;
    ls = load_stage(e, &le);
    if ((s = agree(e, ls, &le, err)))
        return s;
    mdi_watchdog_step(wd, "setting up the ring");
    mdi_watchdog_wait(wd); /* the ring learns every rank's host */
    int32_t n_groups = (e->shape.n_samples + e->shape.group_size - 1) / e->shape.group_size;
    ls = mdi_ring_create(comm, (size_t)e->shape.max_rows, (size_t)e->info.cfg.dim,
                         mdi_pipeline_ring_buffers(n_groups, e->n_ranks), cli->timeout_s, &e->ring,
                         &le);
    if (!ls) {
        mdi_watchdog_step(wd, "setting up the pipeline");
        mdi_pipeline_params pp = {
            .shape = e->shape,
            .tok = e->tok,
            .sampler = cli->sampler,
            .seed = cli->seed,
            .max_tokens = cli->max_tokens,
            .prompts = (const int32_t *const *)e->prompt_ids,
            .n_prompt = e->n_prompt,
        };
        ls = mdi_pipeline_init(&e->pipeline, &e->stage, e->ring, &pp, &le);
    }
    return agree(e, ls, &le, err);
}

mdi_status mdi_engine_setup(mdi_engine *e, const mdi_cli *cli, MPI_Comm comm, mdi_watchdog *wd,
                            mdi_err *err)
{
    memset(e, 0, sizeof *e);
    e->comm = comm;
    e->wd = wd;
    MPI_Comm_rank(comm, &e->rank);
    MPI_Comm_size(comm, &e->n_ranks);
    mdi_status s = setup_steps(e, cli, err);
    e->wd = NULL; /* the caller stops it */
    return s;
}

mdi_status mdi_engine_run(mdi_engine *e, const mdi_sink *sink, mdi_err *err)
{
    return mdi_pipeline_run(e->pipeline, sink, err);
}

void mdi_engine_free(mdi_engine *e)
{
    mdi_pipeline_free(e->pipeline);
    mdi_ring_free(e->ring);
    if (e->stage_ready)
        mdi_stage_free(&e->stage);
    for (int32_t i = 0; e->prompt_ids && i < e->n_prompts; i++)
        free(e->prompt_ids[i]);
    free(e->prompt_ids);
    free(e->n_prompt);
    mdi_tokenizer_free(e->tok);
    mdi_vocab_free(&e->vocab);
    memset(e, 0, sizeof *e);
}

mdi_status mdi_engine_tokenize(const char *model_path, const char *text, FILE *out, mdi_err *err)
{
    char path[4096];
    mdi_shard_info info;
    mdi_vocab v;
    mdi_tokenizer *tok = NULL;
    int32_t *ids = NULL, n = 0;
    memset(&v, 0, sizeof v);
    mdi_status s = mdi_shard_locate(model_path, 0, path, sizeof path, &info, err);
    if (!s && !info.has_extras)
        s = mdi_errf(err, MDI_ERR_ARG, "%s holds no tokenizer (it is not the layer-0 shard)", path);
    if (!s && !(s = mdi_shard_load_vocab(path, &v, err)) &&
        !(s = mdi_tokenizer_create(&v, &tok, err)) &&
        !(s = encode_prompt(tok, "--tokenize text", text, INT32_MAX, &ids, &n, err))) {
        for (int32_t i = 0; i < n; i++)
            fprintf(out, i ? " %d" : "%d", ids[i]);
        fputc('\n', out);
        fflush(out);
    }
    free(ids);
    mdi_tokenizer_free(tok);
    mdi_vocab_free(&v);
    return s;
}

/* One rank's numbers, gathered to every rank for the report. */
typedef struct rank_stats {
    char host[64];
    char blis_arch[32];
    int32_t half_first, half_last, threads;
    uint32_t speed;
    int64_t peak_rss_kb;
    double speed_rate;
    double compute_s, wait_s, wall_s, active_s;
    uint64_t bytes_sent, bytes_recv, msgs_sent, msgs_recv, weight_bytes, step_bytes, kv_bytes;
    uint64_t decode_rows_sent, decode_bytes_sent;
} rank_stats;

static void json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c < 0x20)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}

static void write_stats_json(FILE *f, const mdi_engine *e, const rank_stats *all)
{
    const mdi_pipeline_stats *ps = mdi_pipeline_get_stats(e->pipeline);
    double tps = ps->wall_s > 0 ? (double)ps->tokens_generated / ps->wall_s : 0.0;
    fprintf(f, "{\n  \"ranks\": %d,\n  \"samples\": %d,\n  \"group_size\": %d,\n", e->n_ranks,
            e->shape.n_samples, e->shape.group_size);
    fprintf(f, "  \"model_id\": ");
    json_str(f, e->info.model_id);
    fprintf(f,
            ",\n  \"n_layers\": %d,\n  \"prompt_tokens\": %lld,\n  \"tokens_generated\": %lld,\n",
            e->info.cfg.n_layers, (long long)ps->prompt_tokens, (long long)ps->tokens_generated);
    fprintf(f, "  \"wall_s\": %.6f,\n  \"first_token_s\": %.6f,\n  \"tokens_per_s\": %.4f,\n",
            ps->wall_s, ps->first_token_s, tps);
    fprintf(f,
            "  \"decode_tokens\": %lld,\n  \"decode_s\": %.6f,\n  \"decode_tokens_per_s\": %.4f,\n",
            (long long)ps->decode_tokens, ps->decode_s,
            ps->decode_s > 0 ? (double)ps->decode_tokens / ps->decode_s : 0.0);
    fprintf(f,
            "  \"inter_token_s\": {\"count\": %lld, \"min\": %.6f, \"p50\": %.6f, \"p90\": %.6f, "
            "\"p99\": %.6f, \"max\": %.6f},\n",
            (long long)ps->itl_count, ps->itl_min_s, ps->itl_p50_s, ps->itl_p90_s, ps->itl_p99_s,
            ps->itl_max_s);
    fprintf(f, "  \"max_in_flight\": %d,\n", (int)ps->max_in_flight);
    fprintf(f, "  \"message_rows\": %d,\n  \"prompt_kernel\": \"%s\",\n", e->shape.max_rows,
            mdi_stage_prompt_streams(&e->stage) ? "stream" : "blis");
    /* the same on every rank: packed (panels, rows in groups) for the groups
     * mdi_weight_panel packs for (one sample; 2-4 with AVX-512) */
    fprintf(f, "  \"weight_layout\": \"%s\",\n", e->stage.packed ? "panels" : "rows");
    fprintf(f, "  \"per_rank\": [\n");
    for (int r = 0; r < e->n_ranks; r++) {
        const rank_stats *x = &all[r];
        fprintf(f, "    {\"rank\": %d, \"host\": ", r);
        json_str(f, x->host);
        char held[96];
        mdi_plan_describe(x->half_first, x->half_last, held, sizeof held);
        fprintf(f, ", \"half_first\": %d, \"half_last\": %d, \"holds\": ", x->half_first,
                x->half_last);
        json_str(f, held);
        fprintf(f, ", \"threads\": %d, \"speed\": %.3f, \"speed_probe_bytes_per_s\": ", x->threads,
                (double)x->speed / MDI_SPEED_SCALE);
        if (x->speed_rate > 0.0)
            fprintf(f, "%.0f", x->speed_rate);
        else
            fprintf(f, "null");
        fprintf(f, ", \"blis_arch\": ");
        json_str(f, x->blis_arch);
        fprintf(f,
                ", \"peak_rss_bytes\": %lld, \"weight_bytes\": %llu, \"step_weight_bytes\": %llu, "
                "\"kv_cache_bytes\": %llu,"
                " \"compute_s\": %.6f, \"wait_s\": %.6f, \"wall_s\": %.6f, \"busy_fraction\": "
                "%.4f, \"active_s\": %.6f, \"busy_active_fraction\": %.4f, \"bytes_sent\": %llu, "
                "\"bytes_recv\": %llu, \"msgs_sent\": %llu, "
                "\"msgs_recv\": %llu, \"wire_bytes_per_token\": %.1f}%s\n",
                (long long)x->peak_rss_kb * 1024, (unsigned long long)x->weight_bytes,
                (unsigned long long)x->step_bytes, (unsigned long long)x->kv_bytes, x->compute_s,
                x->wait_s, x->wall_s, x->wall_s > 0 ? x->compute_s / x->wall_s : 0.0, x->active_s,
                x->active_s > 0 ? x->compute_s / x->active_s : 0.0,
                (unsigned long long)x->bytes_sent, (unsigned long long)x->bytes_recv,
                (unsigned long long)x->msgs_sent, (unsigned long long)x->msgs_recv,
                x->decode_rows_sent ? (double)x->decode_bytes_sent / (double)x->decode_rows_sent
                                    : 0.0,
                r + 1 < e->n_ranks ? "," : "");
    }
    fprintf(f, "  ]\n}\n");
}

mdi_status mdi_engine_write_stats(mdi_engine *e, FILE *f, mdi_err *err)
{
    rank_stats me, *all = calloc((size_t)e->n_ranks, sizeof *all);
    struct rusage ru;
    const mdi_pipeline_stats *ps = mdi_pipeline_get_stats(e->pipeline);
    const mdi_ring_stats *rs = mdi_ring_get_stats(e->ring);
    if (!all)
        return mdi_errf(err, MDI_ERR_NOMEM, "cannot allocate the statistics table");
    memset(&me, 0, sizeof me);
    gethostname(me.host, sizeof me.host - 1);
    snprintf(me.blis_arch, sizeof me.blis_arch, "%s", e->tensor.blis_arch);
    getrusage(RUSAGE_SELF, &ru);
    me.peak_rss_kb = ru.ru_maxrss;
    me.half_first = e->half_first;
    me.half_last = e->half_last;
    me.threads = e->tensor.n_threads;
    me.speed = e->speed;
    me.speed_rate = e->speed_rate;
    me.compute_s = ps->compute_s;
    me.wall_s = ps->wall_s;
    me.active_s = ps->active_s;
    me.wait_s = rs->wait_s;
    me.bytes_sent = rs->bytes_sent;
    me.bytes_recv = rs->bytes_recv;
    me.msgs_sent = rs->msgs_sent;
    me.msgs_recv = rs->msgs_recv;
    me.decode_rows_sent = rs->decode_rows_sent;
    me.decode_bytes_sent = rs->decode_bytes_sent;
    me.weight_bytes = mdi_stage_weight_bytes(&e->stage);
    me.step_bytes = mdi_stage_step_bytes(&e->stage);
    me.kv_bytes = mdi_kv_bytes(&e->stage.kv);
    mdi_status s = mdi_ring_allgather(e->comm, &me, sizeof me, all, err);
    if (!s && e->rank == 0 && f)
        write_stats_json(f, e, all); /* the caller checks the stream */
    free(all);
    return s;
}

/* mdi-llm: model-distributed inference over an MPI ring.
 * Parses flags, sets up MPI and the engine, streams text, reports, exits. */
#include <errno.h>
#include <fcntl.h>
#include <mpi.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mdi/cli.h"
#include "mdi/engine.h"
#include "mdi/plan.h"
#include "mdi/watchdog.h"

#define LINE_CAP 4096
#define OUT_CHUNK 256 /* input bytes repaired at a time */

/* Rank 0's text output, valid UTF-8: a raw stream for one sample, "[i] line"
 * records for several. A line longer than LINE_CAP bytes goes out in pieces
 * cut between characters, the later ones marked "[i]+ ". */
typedef struct out_ctx {
    FILE *f;
    int multi;
    int err;              /* errno of the first flush that failed, or 0 */
    char *lines;          /* (n_samples, LINE_CAP) pending partial lines */
    size_t *len;          /* (n_samples) */
    int *cont;            /* (n_samples) 1 if the pending line continues a longer one */
    mdi_utf8_repair *rep; /* (n_samples) */
} out_ctx;

static void out_flush_line(out_ctx *o, int32_t i)
{
    /* written as bytes: the text may hold U+0000, where %s would stop */
    fprintf(o->f, "[%d]%s ", i, o->cont[i] ? "+" : "");
    fwrite(o->lines + (size_t)i * LINE_CAP, 1, o->len[i], o->f);
    fputc('\n', o->f);
    o->len[i] = 0;
    o->cont[i] = 0;
}

/* Sample i's line is full: print it up to its last whole character (the text
 * is valid UTF-8, but its last character may still be arriving), keep the rest. */
static void out_split_line(out_ctx *o, int32_t i)
{
    char *line = o->lines + (size_t)i * LINE_CAP;
    size_t len = o->len[i], start = len - 1;
    while (start > 0 && len - start < 4 && ((unsigned char)line[start] & 0xc0) == 0x80)
        start--;
    unsigned char lead = (unsigned char)line[start];
    size_t whole = lead < 0x80 ? 1 : lead >= 0xf0 ? 4 : lead >= 0xe0 ? 3 : 2;
    size_t cut = start + whole <= len ? len : start, rest = len - cut;
    o->len[i] = cut;
    out_flush_line(o, i);
    o->cont[i] = 1;
    memmove(line, line + cut, rest);
    o->len[i] = rest;
}

/* Repaired bytes of sample i to the stream or its line. */
static void out_bytes(out_ctx *o, int32_t i, const char *bytes, size_t n)
{
    if (!o->multi) {
        fwrite(bytes, 1, n, o->f);
        return;
    }
    for (size_t k = 0; k < n; k++) {
        if (bytes[k] == '\n') {
            out_flush_line(o, i);
            continue;
        }
        if (o->len[i] == LINE_CAP)
            out_split_line(o, i);
        o->lines[(size_t)i * LINE_CAP + o->len[i]++] = bytes[k];
    }
}

/* After every token: the text is out, or the first failure's errno is kept. */
static void out_flush(out_ctx *o)
{
    if (fflush(o->f) != 0 && !o->err)
        o->err = errno ? errno : EIO;
}

static void out_text(void *ctx, int32_t i, const char *bytes, size_t n)
{
    out_ctx *o = ctx;
    char buf[3 * (OUT_CHUNK + 3)];
    if (n == 0) /* a piece without text ends a run of byte pieces */
        out_bytes(o, i, buf, mdi_utf8_repair_end(&o->rep[i], buf));
    for (size_t k = 0; k < n; k += OUT_CHUNK) {
        size_t m = n - k < OUT_CHUNK ? n - k : OUT_CHUNK;
        out_bytes(o, i, buf, mdi_utf8_repair_feed(&o->rep[i], bytes + k, m, buf));
    }
    out_flush(o);
}

static int out_failed(void *ctx)
{
    return ((const out_ctx *)ctx)->err != 0;
}

static void out_end(void *ctx, int32_t i, mdi_stop_reason why, int32_t n)
{
    out_ctx *o = ctx;
    char buf[9];
    out_bytes(o, i, buf, mdi_utf8_repair_end(&o->rep[i], buf));
    if (!o->multi) {
        fputc('\n', o->f);
    } else {
        out_flush_line(o, i); /* even empty: the text is the lines joined by newlines */
        fprintf(o->f, "[%d] (end: %s, %d token%s)\n", i, mdi_stop_reason_str(why), n,
                n == 1 ? "" : "s");
    }
    out_flush(o);
}

/* Print err once (rank 0) and return exit status code. */
static int fail(int rank, const mdi_err *err, int code)
{
    if (rank == 0)
        fprintf(stderr, "mdi-llm: %s\n", err->msg);
    return code;
}

/* Rank 0's output files. --stats-json: a regular file (or a new one) gets
 * its statistics atomically: "FILE.tmp-PID" is created and removed before
 * any work, so that a bad path fails early; after the run the statistics are
 * written to it and renamed to FILE, so that a failed or killed run leaves an
 * existing FILE as it was and no temporary behind. Anything else (a symbolic
 * link, a pipe, /dev/stdout, a device) is written through, as a shell's `>`
 * would: opened before any work and written after the run, so a link stays
 * a link. --output, the text, is always written through, as it is produced;
 * a file that its check created is removed if the run never starts, and an
 * existing one is emptied only when the run starts. A pipe must have a
 * reader when the run starts. */
typedef struct out_file {
    const char *flag; /* "--stats-json" or "--output", for messages */
    const char *path; /* NULL: not asked for */
    FILE *f;
    int fd;      /* >= 0: to be written through this descriptor, not yet begun */
    int append;  /* the path is this process's stdout or stderr: after what is there */
    int created; /* the check created the file (nothing was at the path) */
    int err;     /* errno of a write that failed while the text was produced, or 0 */
    char tmp[4200];
} out_file;

/* 1 if path is an existing HDF5 file (its signature at offset 0); only
 * regular files are read, so a pipe is never waited on. */
static int is_hdf5(const char *path)
{
    unsigned char sig[8];
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode))
        return 0;
    FILE *f = fopen(path, "rb");
    int yes = f && fread(sig, 1, 8, f) == 8 && memcmp(sig, "\x89HDF\r\n\x1a\n", 8) == 0;
    if (f)
        fclose(f);
    return yes;
}

/* 1 if a is the file open on fd. */
static int same_file(const struct stat *a, int fd)
{
    struct stat b;
    return fstat(fd, &b) == 0 && a->st_dev == b.st_dev && a->st_ino == b.st_ino;
}

/* 1 if paths p and q name one file (the same text, or one existing file). */
static int same_path(const char *p, const char *q)
{
    struct stat a, b;
    return !strcmp(p, q) ||
           (stat(p, &a) == 0 && stat(q, &b) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino);
}

/* Rank 0, before any work: check o's path (other: the other output file, or
 * NULL) and open it to write through, or make sure its temporary can be made. */
static mdi_status check_out(out_file *o, const mdi_cli *cli, const char *other, int through_only,
                            mdi_err *le)
{
    struct stat a, l;
    const char *p = o->path;
    int exists = stat(p, &a) == 0, linked = lstat(p, &l) == 0;
    int through = through_only || (linked && !S_ISREG(l.st_mode)); /* a link, pipe, device */
    int std = exists && (same_file(&a, STDOUT_FILENO) || same_file(&a, STDERR_FILENO));
    if (exists && S_ISDIR(a.st_mode))
        return mdi_errf(le, MDI_ERR_ARG, "%s %s is a directory", o->flag, p);
    if (cli->prompt_file && same_path(p, cli->prompt_file))
        return mdi_errf(le, MDI_ERR_ARG, "%s %s is the prompt file", o->flag, p);
    if (other && same_path(p, other))
        return mdi_errf(le, MDI_ERR_ARG, "--stats-json and --output name the same file, %s", p);
    if (is_hdf5(p))
        return mdi_errf(le, MDI_ERR_ARG, "%s %s is an HDF5 file (a model?); it is not overwritten",
                        o->flag, p);
    if (through || std) {
        o->fd = open(p, O_WRONLY | O_CREAT | O_NONBLOCK | O_CLOEXEC, 0666);
        if (o->fd < 0 && errno == ENXIO)
            return mdi_errf(le, MDI_ERR_IO, "%s %s is a pipe that no process reads", o->flag, p);
        if (o->fd < 0)
            return mdi_errf(le, MDI_ERR_IO, "%s %s: cannot be written: %s", o->flag, p,
                            strerror(errno));
        o->created = !linked;
        o->append = std && S_ISREG(a.st_mode);
        return MDI_OK;
    }
    if ((size_t)snprintf(o->tmp, sizeof o->tmp, "%s.tmp-%ld", p, (long)getpid()) >= sizeof o->tmp)
        return mdi_errf(le, MDI_ERR_ARG, "%s path is too long", o->flag);
    FILE *f = fopen(o->tmp, "w");
    if (!f)
        return mdi_errf(le, MDI_ERR_IO, "%s %s: cannot be written: %s", o->flag, p,
                        strerror(errno));
    fclose(f);
    unlink(o->tmp);
    return MDI_OK;
}

/* Collective: check --stats-json (*st) and --output (*txt) on rank 0, and
 * agree on the verdict. */
static mdi_status check_outputs(int rank, const mdi_cli *cli, out_file *st, out_file *txt,
                                MPI_Comm comm, mdi_watchdog *wd, mdi_err *err)
{
    mdi_err le;
    mdi_status ls = MDI_OK;
    mdi_err_clear(&le);
    *st = (out_file){"--stats-json", rank == 0 ? cli->stats_json : NULL, NULL, -1, 0, 0, 0, ""};
    *txt = (out_file){"--output", rank == 0 ? cli->output : NULL, NULL, -1, 0, 0, 0, ""};
    if (txt->path) { /* first: once it exists, --stats-json cannot name it another way */
        mdi_watchdog_step(wd, "opening --output %s", txt->path);
        ls = check_out(txt, cli, NULL, 1, &le);
    }
    if (!ls && st->path) {
        mdi_watchdog_step(wd, "opening --stats-json %s", st->path);
        ls = check_out(st, cli, txt->path, 0, &le);
    }
    return mdi_ring_agree(comm, ls, &le, wd, err);
}

/* Rank 0: open o's stream (o->f). A regular file written through is emptied
 * first, unless it is stdout or stderr, whose text stays before what comes. */
static mdi_status open_out(out_file *o, mdi_err *le)
{
    if (o->fd < 0) {
        if (!(o->f = fopen(o->tmp, "w")))
            return mdi_errf(le, MDI_ERR_IO, "%s %s: cannot be written: %s", o->flag, o->path,
                            strerror(errno));
        return MDI_OK;
    }
    struct stat a;
    int flags = fcntl(o->fd, F_GETFL);
    int ok = flags >= 0 && fstat(o->fd, &a) == 0;
    fflush(stdout); /* the text is out; a reader that left fails the write, not the process */
    signal(SIGPIPE, SIG_IGN);
    if (ok && o->append) {
        fflush(stderr);
        flags |= O_APPEND;
    } else if (ok && S_ISREG(a.st_mode)) {
        ok = ftruncate(o->fd, 0) == 0;
    }
    if (!ok || fcntl(o->fd, F_SETFL, flags & ~O_NONBLOCK) != 0 || !(o->f = fdopen(o->fd, "w")))
        return mdi_errf(le, MDI_ERR_IO, "%s %s: cannot be written: %s", o->flag, o->path,
                        strerror(errno));
    o->fd = -1; /* the stream owns it now */
    return MDI_OK;
}

/* Rank 0: finish o (ok: rename a temporary into place, else remove it) and
 * close what is open. 1 when written (or nothing to write). */
static int close_out(out_file *o, int ok)
{
    if (o->fd >= 0) { /* to be written through, but never begun */
        close(o->fd);
        o->fd = -1;
        if (o->created)
            unlink(o->path);
    }
    if (!o->f)
        return ok;
    errno = 0;
    int through = !o->tmp[0], written = fflush(o->f) == 0 && !ferror(o->f);
    written = fclose(o->f) == 0 && written;
    o->f = NULL;
    if (ok && written && (through || rename(o->tmp, o->path) == 0))
        return 1;
    int e = o->err ? o->err : errno ? errno : EIO; /* set by the call that failed */
    if (!through)
        unlink(o->tmp);
    if (ok)
        fprintf(stderr, "mdi-llm: %s %s: write failed: %s\n", o->flag, o->path, strerror(e));
    return 0;
}

static void report(const mdi_engine *e, const mdi_cli *cli)
{
    if (e->rank != 0 || cli->quiet)
        return;
    const mdi_pipeline_stats *ps = mdi_pipeline_get_stats(e->pipeline);
    fprintf(stderr,
            "mdi-llm: %lld tokens in %.3f s (%.2f tokens/s; %.2f tokens/s after every "
            "sample's first), first token after %.3f s; %d rank%s, %d sample%s, group size %d\n",
            (long long)ps->tokens_generated, ps->wall_s,
            ps->wall_s > 0 ? (double)ps->tokens_generated / ps->wall_s : 0.0,
            ps->decode_s > 0 ? (double)ps->decode_tokens / ps->decode_s : 0.0, ps->first_token_s,
            e->n_ranks, e->n_ranks == 1 ? "" : "s", e->shape.n_samples,
            e->shape.n_samples == 1 ? "" : "s", e->shape.group_size);
    if (ps->itl_count > 0)
        fprintf(stderr,
                "mdi-llm: time between a sample's tokens: median %.3g ms, 90th percentile %.3g "
                "ms, most %.3g ms (%lld gaps)\n",
                1e3 * ps->itl_p50_s, 1e3 * ps->itl_p90_s, 1e3 * ps->itl_max_s,
                (long long)ps->itl_count);
}

static int run(const mdi_cli *cli, MPI_Comm comm, int rank, mdi_watchdog *wd)
{
    mdi_err err;
    mdi_engine e;
    out_file stats, text;
    mdi_err_clear(&err);
    if (check_outputs(rank, cli, &stats, &text, comm, wd, &err)) {
        mdi_watchdog_stop(wd);
        close_out(&stats, 0);
        close_out(&text, 0);
        return fail(rank, &err, 1);
    }
    mdi_status s = mdi_engine_setup(&e, cli, comm, wd, &err);
    if (!s) { /* --output is emptied only now that the run can start */
        mdi_err le;
        mdi_err_clear(&le);
        s = mdi_ring_agree(comm, text.path ? open_out(&text, &le) : MDI_OK, &le, wd, &err);
    }
    mdi_watchdog_stop(wd); /* from here on, --timeout */
    if (s) {
        close_out(&stats, 0);
        close_out(&text, 0);
        mdi_engine_free(&e);
        return fail(rank, &err, 1);
    }
    if (e.tensor.slow_kernels)
        fprintf(stderr,
                "mdi-llm: rank %d: warning: BLIS uses its slow generic kernels on this CPU;"
                " set BLIS_ARCH_TYPE (see README)\n",
                rank);
    if (rank == 0 && !cli->quiet) {
        char held[96];
        mdi_plan_describe(e.half_first, e.half_last, held, sizeof held);
        fprintf(stderr,
                "mdi-llm: %d rank%s, %s on rank 0%s, %d sample%s, group size %d, "
                "%d thread%s per rank, BLIS %s\n",
                e.n_ranks, e.n_ranks == 1 ? "" : "s", held,
                cli->speeds ? " (placed by --speeds)" : "", e.shape.n_samples,
                e.shape.n_samples == 1 ? "" : "s", e.shape.group_size, e.tensor.n_threads,
                e.tensor.n_threads == 1 ? "" : "s", e.tensor.blis_arch);
    }
    out_ctx o = {text.f ? text.f : stdout, e.shape.n_samples > 1, 0, NULL, NULL, NULL, NULL};
    if (rank == 0) {
        size_t ns = (size_t)e.shape.n_samples;
        o.rep = calloc(ns, sizeof *o.rep);
        if (o.multi) {
            o.lines = malloc(ns * LINE_CAP);
            o.len = calloc(ns, sizeof *o.len);
            o.cont = calloc(ns, sizeof *o.cont);
        }
        if (!o.rep || (o.multi && (!o.lines || !o.len || !o.cont))) {
            fprintf(stderr, "mdi-llm: out of memory for the output buffers\n");
            MPI_Abort(comm, 1);
        }
    }
    mdi_sink sink = {&o, out_text, out_end, out_failed}; /* a failed write stops the run */
    if (mdi_engine_run(&e, &sink, &err)) {
        fprintf(stderr, "mdi-llm: rank %d: %s\n", rank, err.msg);
        for (int32_t i = 0; o.len && i < e.shape.n_samples; i++)
            if (o.len[i]) /* keep the unfinished lines generated so far */
                out_flush_line(&o, i);
        fflush(o.f);
        MPI_Abort(comm, 1); /* no statistics file was begun */
    }
    int code = 0;
    text.err = o.err;
    if (!close_out(&text, 1)) /* the text is complete: a failed write fails the run */
        code = 1;
    errno = 0;
    if (rank == 0 && !text.path && (fflush(stdout) != 0 || ferror(stdout) || o.err)) {
        int en = o.err ? o.err : errno ? errno : EIO;
        fprintf(stderr, "mdi-llm: writing to standard output failed: %s\n", strerror(en));
        clearerr(stdout); /* said once, here; and the statistics are not written */
        code = 1;
    }
    if (stats.path && open_out(&stats, &err))
        code = fail(rank, &err, 1);
    if (mdi_engine_write_stats(&e, stats.f, &err)) /* collective, written or not */
        code = fail(rank, &err, 1);
    report(&e, cli);
    if (!close_out(&stats, code == 0) && code == 0)
        code = 1;
    free(o.lines);
    free(o.len);
    free(o.cont);
    free(o.rep);
    mdi_engine_free(&e);
    return code;
}

/* Collective, before any other work: every rank parsed its command line and
 * all were given the same options (mdi_cli_agreed), else each rank returns
 * exit code 2 and rank 0 prints one line: its own parse error, or the first
 * rank that differs. A rank left out would hang the others. */
static int agree_launch(MPI_Comm comm, int rank, mdi_status parsed, const mdi_err *perr,
                        const mdi_cli *cli, mdi_watchdog *wd)
{
    int size;
    MPI_Comm_size(comm, &size);
    uint64_t mine[MDI_CLI_N_AGREED], *all = malloc((size_t)size * sizeof mine);
    mdi_err le = *perr, err;
    mdi_status s = parsed;
    if (!s && !all)
        s = mdi_errf(&le, MDI_ERR_NOMEM, "cannot allocate the option table");
    mdi_err_clear(&err);
    mdi_cli_agreed(cli, mine);
    int bad = mdi_ring_agree(comm, s, &le, wd, &err) != MDI_OK;
    mdi_watchdog_wait(wd);
    bad = bad || mdi_ring_allgather(comm, mine, sizeof mine, all, &err) != MDI_OK;
    mdi_watchdog_wait_end(wd);
    if (bad) {
        free(all);
        return fail(rank, s ? &le : &err, 2); /* rank 0's own error without "rank 0 (host)" */
    }
    for (int r = 1; !s && r < size; r++) /* every rank compares the same table */
        for (int i = 0; !s && i < MDI_CLI_N_AGREED; i++) {
            uint64_t h = all[(size_t)r * MDI_CLI_N_AGREED + (size_t)i];
            if (h == all[i])
                continue;
            int g0 = mdi_cli_agreed_given(i, all[i]), gr = mdi_cli_agreed_given(i, h);
            char what[96];
            if (g0 != gr) /* one of the two was not given it at all */
                snprintf(what, sizeof what, "rank %d was given %s and rank %d was not", gr ? r : 0,
                         mdi_cli_agreed_name(i), gr ? 0 : r);
            else
                snprintf(what, sizeof what, "rank %d was given a different %s than rank 0", r,
                         mdi_cli_agreed_name(i));
            s = mdi_errf(&err, MDI_ERR_MISMATCH,
                         "%s: every rank needs the same options (only --model and --threads may "
                         "differ)",
                         what);
        }
    free(all);
    return s ? fail(rank, &err, 2) : 0;
}

/* The start-up watchdog's end (on its own thread, so no stdio and no MPI):
 * one line, then the process ends; mpirun then ends the other ranks. */
static void setup_expired(const char *line, void *ctx)
{
    (void)ctx;
    char buf[1024];
    int n = snprintf(buf, sizeof buf, "mdi-llm: %s (--setup-timeout sets the limit)\n", line);
    if (n > 0 &&
        write(STDERR_FILENO, buf, (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1) < 0) {
        /* stderr is gone: the exit status still tells */
    }
    _exit(1);
}

/* The grace of a wait: rank 0 gathers every set-up agreement and names the
 * ranks it has not heard from; the others speak only when rank 0 has not,
 * one by one (rank < 0: not yet known, so last). */
static double wait_grace(int rank)
{
    return rank == 0 ? 2.0 : 8.0 + 2.0 * (rank > 0 && rank < 8 ? rank : 8);
}

/* Name this process to the watchdog as "rank R (host)" when there are
 * several ranks (R < 0: not known), with its grace. */
static void name_watchdog(mdi_watchdog *wd, int rank, int size)
{
    char host[64] = "?", who[MDI_WATCHDOG_WHO_MAX];
    if (gethostname(host, sizeof host - 1) != 0)
        snprintf(host, sizeof host, "?");
    if (size == 1)
        who[0] = '\0';
    else if (rank < 0)
        snprintf(who, sizeof who, "a rank (%s)", host);
    else
        snprintf(who, sizeof who, "rank %d (%s)", rank, host);
    mdi_watchdog_name(wd, who, wait_grace(rank));
}

/* The launcher's rank and size for this process before MPI_Init tells
 * (Open MPI, PMIx, MPICH's PMI, Slurm); -1 where not set, as for a process
 * started without mpirun. */
static int launcher_env(const char *const *names)
{
    for (int i = 0; names[i]; i++) {
        const char *v = getenv(names[i]);
        char *end;
        long n = v ? strtol(v, &end, 10) : -1;
        if (v && *v && !*end && n >= 0 && n < (1L << 30))
            return (int)n;
    }
    return -1;
}

/* Start the start-up deadline, before MPI_Init (which waits for every rank
 * to start): --setup-timeout, or its default when the command line was not
 * understood. A rank that waits for the others fires later than a rank at
 * work, rank 0 first, so that one line names the stuck rank. */
static mdi_watchdog *start_watchdog(const mdi_cli *cli, mdi_status parsed)
{
    static const char *const rank_vars[] = {"OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK",
                                            "SLURM_PROCID", NULL};
    static const char *const size_vars[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "SLURM_NTASKS",
                                            NULL};
    mdi_watchdog *wd = NULL;
    mdi_err err;
    int rank = launcher_env(rank_vars), size = launcher_env(size_vars);
    double limit = parsed == MDI_OK ? cli->setup_timeout_s : MDI_CLI_DEFAULT_SETUP_TIMEOUT_S;
    if (mdi_watchdog_start(limit, wait_grace(rank), setup_expired, NULL, &wd, &err))
        fprintf(stderr, "mdi-llm: warning: %s; start-up has no time limit\n", err.msg);
    name_watchdog(wd, rank, size >= 0 ? size : rank >= 0 ? 2 : 1); /* a rank: several */
    mdi_watchdog_step(wd, "starting MPI");
    mdi_watchdog_wait(wd); /* MPI_Init returns once every rank has called it */
    return wd;
}

int main(int argc, char **argv)
{
    mdi_err err, arch_err;
    mdi_err_clear(&arch_err);
    /* before BLIS, OpenMP or MPI start (it may fork) */
    mdi_status arch = mdi_tensor_choose_arch(NULL, &arch_err);
    /* The parser is pure; Open MPI leaves argv as it is. Its verdict is
     * agreed after MPI_Init, and --setup-timeout covers MPI_Init too. */
    mdi_cli cli = mdi_cli_default();
    mdi_err_clear(&err);
    mdi_status parsed = mdi_cli_parse(argc, argv, &cli, &err);
    mdi_watchdog *wd = start_watchdog(&cli, parsed);
    int provided = 0; /* OpenMP and the watchdog run threads; only this one calls MPI */
    MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided);
    MPI_Comm comm = MPI_COMM_WORLD;
    int rank, size, code = 0;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &size);
    if (provided < MPI_THREAD_FUNNELED && rank == 0)
        fprintf(stderr, "mdi-llm: warning: this MPI offers only MPI_THREAD_SINGLE; mdi-llm "
                        "runs threads that make no MPI calls\n");
    name_watchdog(wd, rank, size);
    mdi_watchdog_step(wd, "starting");
    if ((code = agree_launch(comm, rank, parsed, &err, &cli, wd))) {
        /* one line printed */
    } else if (!cli.help && !cli.version && mdi_ring_agree(comm, arch, &arch_err, wd, &err)) {
        code = fail(rank, &err, 1); /* no BLIS call after a refused BLIS_ARCH_TYPE */
    } else if (cli.help) {
        if (rank == 0)
            mdi_cli_usage(stdout, "mdi-llm");
    } else if (cli.version) {
        if (rank == 0)
            printf("mdi-llm 0.1.0\n");
    } else if (cli.tokenize) {
        mdi_err le;
        mdi_err_clear(&le);
        mdi_watchdog_step(wd, "tokenizing --tokenize's text with the tokenizer in %s", cli.model);
        mdi_status ls =
            rank == 0 ? mdi_engine_tokenize(cli.model, cli.tokenize, stdout, &le) : MDI_OK;
        if (mdi_ring_agree(comm, ls, &le, wd, &err))
            code = fail(rank, &err, 1);
    } else {
        code = run(&cli, comm, rank, wd);
        wd = NULL; /* stopped by run */
    }
    mdi_watchdog_stop(wd);
    /* Text that did not reach stdout (a full disk, a closed pipe) is lost. */
    errno = 0;
    if (rank == 0 && (fflush(stdout) != 0 || ferror(stdout))) {
        fprintf(stderr, "mdi-llm: writing to standard output failed%s%s\n", errno ? ": " : "",
                errno ? strerror(errno) : "");
        code = code ? code : 1;
    }
    MPI_Finalize();
    return code;
}

/* mdi-bench: the machine's limits, measured with the engine's own kernels,
 * so benchmark efficiencies are ratios within one run.
 *   mdi-bench read   [--mb N] [--threads T]   read bandwidth (sum of a large array), GB/s:
 *                    best pass and mean (every pass's bytes over their total time)
 *   mdi-bench triad  [--mb N] [--threads T]   STREAM triad a = b + s*c, GB/s
 *   mdi-bench sgemm  [--m M --n N --k K] [--threads T] [--panel P]  BLIS sgemm via
 *                    mdi_matmul, GFLOP/s; W row-major unless --panel P packs it (as
 *                    prompt rows meet it in BLIS when the engine packs its weights)
 *   mdi-bench stream [--rows R --n N --k K] [--threads T] [--panel P]  mdi_matmul_stream,
 *                    GB/s of weights
 *   mdi-bench decode [--layers L] [--threads T] [--reps N]  one sample's decode step of
 *                    TinyLlama-1.1B geometry (L layers and the head) through mdi_matmul_stream,
 *                    in the engine's order: GB/s of weights, best pass and mean
 *   mdi-bench decode-read [--layers L] [--threads T] [--reps N]  the same N decode passes,
 *                    with N plain read passes over the same weights between them (kernel,
 *                    read, read, kernel): a second line gives the kernel's rate over the read
 *                    passes' (median over the groups of four), which both meet the machine
 *                    in the same seconds; N even
 *   mdi-bench attention [--pos P] [--layers L] [--reps N]  one row's attention at position P
 *                    (default 1000) in L layers of TinyLlama-1.1B geometry (32 query heads,
 *                    4 KV heads of 64) on one thread, as the engine's stage computes it: ms per
 *                    token, best pass
 *   mdi-bench engine-read --model F [--threads T] [--reps N]  the engine's own decode step
 *                    (stage.h: embedding row, every layer with attention, final norm, head,
 *                    greedy pick) for one sample on one rank holding the whole model of F,
 *                    N steps, framed like decode-read by plain read passes over the weights
 *                    a step reads; N even, at most the model's context
 * --panel P packs the weights with column panels of P floats (a multiple of
 * 16; rows in groups, tensor.h) or, with 0, leaves them row-major; by default
 * they are laid out as the engine lays them out for R rows per call (one for
 * decode; mdi_weight_panel: packed, or row-major for more rows than its
 * walker takes); sgemm's, row-major. Prints one line "name value unit"
 * (decode-read and engine-read: two). A mean is a rate over time, the
 * passes' bytes over their total time, as the engine's tok/s is (not the
 * mean of the passes' rates, which counts a slow pass by its rate rather
 * than its time, and so reads higher whenever some passes are slow).
 * Arrays default to 1 GiB (far beyond any L3). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mdi/model_config.h"
#include "mdi/shard_loader.h"
#include "mdi/stage.h"
#include "mdi/tensor.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

typedef struct opts {
    size_t mb, m, n, k, rows, layers, pos;
    int threads, reps;
    long panel;        /* -1: as the engine lays the weights out */
    const char *model; /* engine-read's model file */
} opts;

/* The layout of a matrix with rows of n floats met by `rows` activation
 * rows per call, as --panel says. */
static size_t panel_of(const opts *o, size_t n, size_t rows)
{
    return o->panel < 0 ? mdi_weight_panel(n, rows) : (size_t)o->panel;
}

static int parse(int argc, char **argv, opts *o)
{
    for (int i = 2; i < argc; i++) {
        if (i + 1 >= argc) {
            fprintf(stderr, "mdi-bench: %s needs a value\n", argv[i]);
            return -1;
        }
        if (!strcmp(argv[i], "--model")) {
            o->model = argv[++i];
            continue;
        }
        char *end;
        long v = strtol(argv[i + 1], &end, 10);
        if (!strcmp(argv[i], "--panel")) {
            if (v < 0 || v % 16 != 0 || *end != '\0' || end == argv[i + 1]) {
                fprintf(stderr, "mdi-bench: --panel '%s' must be 0 or a multiple of 16\n",
                        argv[i + 1]);
                return -1;
            }
            o->panel = v;
            i++;
            continue;
        }
        if (v <= 0 || *end != '\0') {
            fprintf(stderr, "mdi-bench: %s '%s' must be a positive integer\n", argv[i],
                    argv[i + 1]);
            return -1;
        }
        if (!strcmp(argv[i], "--mb"))
            o->mb = (size_t)v;
        else if (!strcmp(argv[i], "--m"))
            o->m = (size_t)v;
        else if (!strcmp(argv[i], "--n"))
            o->n = (size_t)v;
        else if (!strcmp(argv[i], "--k"))
            o->k = (size_t)v;
        else if (!strcmp(argv[i], "--rows"))
            o->rows = (size_t)v;
        else if (!strcmp(argv[i], "--pos"))
            o->pos = (size_t)v;
        else if (!strcmp(argv[i], "--layers"))
            o->layers = (size_t)v;
        else if (!strcmp(argv[i], "--threads"))
            o->threads = (int)v;
        else if (!strcmp(argv[i], "--reps"))
            o->reps = (int)v;
        else {
            fprintf(stderr, "mdi-bench: unknown option '%s'\n", argv[i]);
            return -1;
        }
        i++;
    }
    return 0;
}

static float *filled(size_t n, float v)
{
    float *p = mdi_alloc_floats(n);
    if (!p) {
        fprintf(stderr, "mdi-bench: cannot allocate %zu floats\n", n);
        exit(1);
    }
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++)
        p[i] = v + (float)(i % 13) * 1e-3f;
    return p;
}

/* Lay W (d, n), filled row-major, out as --panel says for `rows`. */
static void lay_out(const opts *o, float *w, size_t d, size_t n, size_t rows)
{
    float *scratch = malloc(MDI_PANEL_ROWS * n * sizeof *scratch);
    if (!scratch) {
        fprintf(stderr, "mdi-bench: out of memory\n");
        exit(1);
    }
    mdi_weight_to_panels(w, d, n, panel_of(o, n, rows), scratch);
    free(scratch);
}

/* Sum of a chunk with 32 independent lanes (vectorised into 4 registers). */
static float sum_chunk(const float *a, size_t n)
{
    float acc[32] = {0};
    size_t i = 0;
    for (; i + 32 <= n; i += 32)
        for (size_t j = 0; j < 32; j++)
            acc[j] += a[i + j];
    for (; i < n; i++)
        acc[0] += a[i];
    float s = 0;
    for (size_t j = 0; j < 32; j++)
        s += acc[j];
    return s;
}

/* The sum of a[0, n) on `threads` threads, in chunks: one plain read of a. */
static float read_sum(const float *a, size_t n, int threads)
{
    const size_t chunk = 1 << 16;
    float total = 0;
#pragma omp parallel for num_threads(threads) reduction(+ : total) schedule(static)
    for (size_t i = 0; i < n; i += chunk)
        total += sum_chunk(a + i, n - i < chunk ? n - i : chunk);
    return total;
}

/* Best of reps: the machine is shared, the fastest pass is the least
 * disturbed. *mean: the rate over all the passes' time, comparable with a
 * rate taken over a longer run (an engine's tok/s). */
static double bench_read(const opts *o, double *mean)
{
    size_t n = o->mb * (1u << 20) / sizeof(float);
    float *a = filled(n, 1.0f);
    double best = 0, secs = 0;
    volatile float sink = 0;
    for (int r = 0; r < o->reps; r++) {
        double t0 = now_s();
        float total = read_sum(a, n, o->threads);
        double t = now_s() - t0, rate = n * 4.0 / t;
        sink += total;
        best = rate > best ? rate : best;
        secs += t;
    }
    *mean = n * 4.0 * o->reps / secs / 1e9;
    mdi_free_floats(a);
    return best / 1e9;
}

static double bench_triad(const opts *o)
{
    size_t n = o->mb * (1u << 20) / sizeof(float) / 3;
    float *a = filled(n, 0.0f), *b = filled(n, 1.0f), *c = filled(n, 2.0f);
    double best = 0;
    for (int r = 0; r < o->reps; r++) {
        double t0 = now_s();
#pragma omp parallel for num_threads(o->threads) schedule(static)
        for (size_t i = 0; i < n; i++)
            a[i] = b[i] + 3.0f * c[i];
        double t = now_s() - t0;
        best = 3.0 * n * 4 / t > best ? 3.0 * n * 4 / t : best;
    }
    mdi_free_floats(a), mdi_free_floats(b), mdi_free_floats(c);
    return best / 1e9;
}

/* One row at position o->pos against a KV cache of o->layers layers, every
 * query head in each, as the stage calls mdi_attention on one thread (each
 * KV head's query heads at once): seconds per token, best pass. */
static double bench_attention(const opts *o)
{
    mdi_attn_shape sh = {32, 4, 64};
    size_t qd = sh.n_heads * sh.head_dim, kvd = sh.n_kv_heads * sh.head_dim, n = o->pos + 1;
    size_t group = mdi_attn_heads_at_once(&sh, sh.n_heads);
    mdi_kv_cache kv;
    mdi_err err;
    if (mdi_kv_init(&kv, 1, o->layers, n, kvd, &err)) {
        fprintf(stderr, "mdi-bench: %s\n", err.msg);
        exit(1);
    }
    for (size_t l = 0; l < o->layers; l++)
        for (size_t t = 0; t < n; t++)
            for (size_t i = 0; i < kvd; i++) {
                mdi_kv_key(&kv, 0, l, t)[i] = (float)((t * 7 + i * 3) % 17) * 0.05f - 0.4f;
                mdi_kv_value(&kv, 0, l, t)[i] = (float)((t * 5 + i) % 11) * 0.1f - 0.5f;
            }
    float *q = filled(qd, -0.3f), *out = filled(qd, 0), *scores = filled(n * group, 0);
    double best = 1e30;
    for (int r = 0; r < o->reps; r++) {
        double t0 = now_s();
        for (size_t l = 0; l < o->layers; l++)
            for (size_t h = 0; h < sh.n_heads; h += group)
                mdi_attention(out, q, &kv, 0, l, o->pos, &sh, h, h + group, scores);
        double t = now_s() - t0;
        best = t < best ? t : best;
    }
    mdi_kv_free(&kv);
    mdi_free_floats(q), mdi_free_floats(out), mdi_free_floats(scores);
    return best;
}

static double bench_sgemm(const opts *o)
{
    size_t panel = o->panel < 0 ? 0 : (size_t)o->panel, su = mdi_matmul_scratch(o->k, panel);
    float *x = filled(o->m * o->k, 0.5f), *w = filled(o->n * o->k, 0.25f),
          *y = filled(o->m * o->n, 0), *unpack = su ? filled(su, 0) : NULL;
    if (panel)
        lay_out(o, w, o->n, o->k, 0);
    double best = 0;
    for (int r = 0; r < o->reps; r++) {
        double t0 = now_s();
        mdi_matmul(y, x, w, o->m, o->k, o->n, 0.0f, panel, unpack);
        double t = now_s() - t0, f = 2.0 * o->m * o->n * o->k / t;
        best = f > best ? f : best;
    }
    mdi_free_floats(x), mdi_free_floats(w), mdi_free_floats(y), mdi_free_floats(unpack);
    return best / 1e9;
}

/* Streams a set of weight matrices larger than any cache, like a decode step. */
static double bench_stream(const opts *o)
{
    size_t per = o->n * o->k, n_mat = (o->mb * (1u << 20) / sizeof(float)) / per + 1;
    float **w = malloc(n_mat * sizeof *w), *x = filled(o->rows * o->k, 0.5f);
    float *y = filled(o->rows * o->n, 0);
    for (size_t i = 0; i < n_mat; i++) {
        w[i] = filled(per, 0.01f * (float)i);
        lay_out(o, w[i], o->n, o->k, o->rows);
    }
    double best = 0;
    for (int r = 0; r < o->reps; r++) {
        double t0 = now_s();
        for (size_t i = 0; i < n_mat; i++)
            mdi_matmul_stream(y, x, w[i], o->rows, o->k, o->n, 0.0f, panel_of(o, o->k, o->rows),
                              o->threads);
        double t = now_s() - t0, bw = (double)n_mat * per * 4 / t;
        best = bw > best ? bw : best;
    }
    for (size_t i = 0; i < n_mat; i++)
        mdi_free_floats(w[i]);
    free(w);
    mdi_free_floats(x), mdi_free_floats(y);
    return best / 1e9;
}

/* The kernel (decode-read) or the engine's step (engine-read) against plain
 * reads of the same weights. */
typedef struct vs_read {
    double median, min, max; /* kernel or step rate / read rate, per group of four passes */
    double read_mean;        /* the read passes' rate over their time, GB/s */
    int groups;
} vs_read;

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Passes 4g, 4g + 3 of a kernel and 4g + 1, 4g + 2 of plain reads (rates
 * krate[2g], krate[2g + 1] and rrate[2g], rrate[2g + 1], of reps each): the
 * kernel's rate over the reads', per group g, into vr. Reorders krate. */
static void pair_groups(double *krate, const double *rrate, int reps, vs_read *vr)
{
    double rtime = 0; /* the read passes' seconds per byte, summed */
    vr->groups = reps / 2;
    for (int g = 0; g < vr->groups; g++) {
        rtime += 1 / rrate[2 * g] + 1 / rrate[2 * g + 1];
        krate[g] = (krate[2 * g] + krate[2 * g + 1]) / (rrate[2 * g] + rrate[2 * g + 1]);
    }
    qsort(krate, (size_t)vr->groups, sizeof *krate, cmp_double);
    int h = vr->groups / 2;
    vr->median = vr->groups % 2 ? krate[h] : (krate[h - 1] + krate[h]) / 2;
    vr->min = krate[0];
    vr->max = krate[vr->groups - 1];
    vr->read_mean = reps / rtime / 1e9;
}

/* One sample's decode step, matrices only: per layer wq, wk, wv, wo, w1, w3,
 * w2 (as the stage runs them, each layer's weights in one allocation in
 * MDI_TENSOR_LIST order, as the stage packs them), then the output head.
 * What the engine's one-sample decode rate can reach with this kernel: the
 * rate over the passes' time, and the best pass. With vr, every two kernel
 * passes frame two plain read passes over the same weights (kernel, read,
 * read, kernel), so a group's kernel and read passes meet the machine in
 * the same phase, whatever it is; o->reps is even. */
static double bench_decode(const opts *o, double *mean, double *tok_s, vs_read *vr)
{
    const mdi_config c = {.dim = 2048,
                          .hidden_dim = 5632,
                          .n_layers = (int32_t)o->layers,
                          .n_heads = 32,
                          .n_kv_heads = 4,
                          .head_dim = 64,
                          .vocab_size = 32000};
    static const mdi_tensor_kind order[] = {MDI_T_WQ, MDI_T_WK, MDI_T_WV, MDI_T_WO,
                                            MDI_T_W1, MDI_T_W3, MDI_T_W2};
    size_t off[MDI_T_COUNT] = {0}, per = 0, rows, cols;
    for (int k = 0; k < MDI_T_COUNT; k++) {
        mdi_tensor_shape(&c, (mdi_tensor_kind)k, &rows, &cols);
        if (mdi_tensor_scope_of((mdi_tensor_kind)k) == MDI_SCOPE_LAYER) {
            off[k] = per;
            per += rows * cols;
        }
    }
    size_t dim = (size_t)c.dim, vocab = (size_t)c.vocab_size;
    float **layer = malloc(o->layers * sizeof *layer), *head = filled(vocab * dim, 0.001f);
    float *x = filled((size_t)c.hidden_dim, 0.5f), *y = filled(vocab, 0.0f);
    if (!layer) {
        fprintf(stderr, "mdi-bench: out of memory\n");
        exit(1);
    }
    double bytes = ((double)per * o->layers + (double)vocab * dim) * sizeof(float), best = 0,
           secs = 0;
    for (size_t l = 0; l < o->layers; l++) {
        layer[l] = filled(per, 0.001f * (float)l);
        for (size_t i = 0; i < sizeof order / sizeof order[0]; i++) {
            mdi_tensor_shape(&c, order[i], &rows, &cols);
            lay_out(o, layer[l] + off[order[i]], rows, cols, 1);
        }
    }
    lay_out(o, head, vocab, dim, 1);
    int passes = vr ? 2 * o->reps : o->reps, nk = 0, nr = 0;
    double *krate = NULL, *rrate = NULL; /* decode-read's per-pass rates */
    if (vr && (!(krate = malloc((size_t)o->reps * sizeof *krate)) ||
               !(rrate = malloc((size_t)o->reps * sizeof *rrate)))) {
        fprintf(stderr, "mdi-bench: out of memory\n");
        exit(1);
    }
    volatile float sink = 0;
    for (int p = 0; p < passes; p++) {
        double t0 = now_s();
        if (vr && (p % 4 == 1 || p % 4 == 2)) {
            float total = 0;
            for (size_t l = 0; l < o->layers; l++)
                total += read_sum(layer[l], per, o->threads);
            sink += total + read_sum(head, vocab * dim, o->threads);
            rrate[nr++] = bytes / (now_s() - t0);
            continue;
        }
        for (size_t l = 0; l < o->layers; l++)
            for (size_t i = 0; i < sizeof order / sizeof order[0]; i++) {
                mdi_tensor_shape(&c, order[i], &rows, &cols);
                mdi_matmul_stream(y, x, layer[l] + off[order[i]], 1, cols, rows,
                                  order[i] == MDI_T_WO || order[i] == MDI_T_W2 ? 1.0f : 0.0f,
                                  panel_of(o, cols, 1), o->threads);
            }
        mdi_matmul_stream(y, x, head, 1, dim, vocab, 0.0f, panel_of(o, dim, 1), o->threads);
        double t = now_s() - t0;
        best = bytes / t > best ? bytes / t : best;
        secs += t;
        if (vr)
            krate[nk++] = bytes / t;
    }
    if (vr)
        pair_groups(krate, rrate, o->reps, vr);
    free(krate), free(rrate);
    for (size_t l = 0; l < o->layers; l++)
        mdi_free_floats(layer[l]);
    free(layer);
    mdi_free_floats(head), mdi_free_floats(x), mdi_free_floats(y);
    *mean = bytes * o->reps / secs / 1e9;
    *tok_s = o->reps / secs;
    return best / 1e9;
}

/* The engine's decode step for one sample on one rank holding the whole model
 * of o->model (mdi_stage_*, as the pipeline calls them for a group of one:
 * embed, forward with the row streaming, logits, then the greedy pick),
 * o->reps steps from token 1 at position 0, each framed as in decode-read by
 * plain read passes over the weights a step reads (the layers, the final
 * norm and the head), so that vr compares the two in the same seconds.
 * Returns the best step's rate (GB/s of weights); with a message, -2 for
 * --reps beyond the model's context and -1 for any other failure. */
static double bench_engine(const opts *o, double *mean, double *tok_s, vs_read *vr, int *n_layers)
{
    mdi_shard_info info;
    mdi_err err;
    mdi_stage st = {0};
    if (mdi_shard_probe(o->model, &info, &err)) {
        fprintf(stderr, "mdi-bench: %s\n", err.msg);
        return -1;
    }
    if (!info.has_extras || info.half_first != 0 || info.half_last != 2 * info.cfg.n_layers) {
        fprintf(stderr,
                "mdi-bench: %s holds half-layers [%d, %d) of %d: engine-read needs a "
                "whole model in one file\n",
                o->model, info.half_first, info.half_last, 2 * info.cfg.n_layers);
        return -1;
    }
    if (o->reps > info.cfg.max_seq_len) {
        fprintf(stderr,
                "mdi-bench: engine-read --reps %d: the model's context holds %d positions\n",
                o->reps, info.cfg.max_seq_len);
        return -2;
    }
    const mdi_stage_params sp = {.half_first = 0,
                                 .half_last = 2 * info.cfg.n_layers,
                                 .has_extras = 1,
                                 .n_slots = 1,
                                 .max_pos = (size_t)o->reps,
                                 .max_rows = 1,
                                 .max_logit_rows = 1,
                                 .n_threads = o->threads};
    float *x = NULL, *logits = NULL;
    double *krate = malloc((size_t)o->reps * sizeof *krate);
    double *rrate = malloc((size_t)o->reps * sizeof *rrate);
    const char *msg = NULL;
    if (!krate || !rrate)
        msg = "out of memory";
    else if (mdi_stage_init(&st, &info.cfg, &sp, &err) ||
             mdi_shard_load(o->model, &st, NULL, NULL, &err) || mdi_stage_pack(&st, 1, &err))
        msg = err.msg;
    else if (!(x = mdi_alloc_floats((size_t)info.cfg.dim)) ||
             !(logits = mdi_alloc_floats((size_t)info.cfg.vocab_size)))
        msg = "out of memory";
    if (msg) {
        fprintf(stderr, "mdi-bench: %s\n", msg);
        mdi_free_floats(x), free(krate), free(rrate), mdi_stage_free(&st);
        return -1;
    }
    const size_t vocab = (size_t)info.cfg.vocab_size, step = mdi_stage_step_bytes(&st);
    const size_t head = mdi_config_head_params(&info.cfg), layer = step / sizeof(float) - head;
    const double bytes = (double)step;
    int32_t token = vocab > 1;
    double best = 0, secs = 0;
    volatile float sink = 0;
    for (int p = 0, nk = 0, nr = 0; p < 2 * o->reps; p++) {
        double t0 = now_s();
        if (p % 4 == 1 || p % 4 == 2) {
            sink += read_sum(st.layer_data, layer, o->threads) +
                    read_sum(st.final_norm, (size_t)info.cfg.dim, o->threads) +
                    read_sum(st.output, vocab * (size_t)info.cfg.dim, o->threads);
            rrate[nr++] = bytes / (now_s() - t0);
            continue;
        }
        const mdi_row row = {.slot = 0, .pos = nk};
        mdi_stage_embed(&st, &token, 1, x);
        mdi_stage_forward_mixed(&st, x, &row, 1, 1);
        mdi_stage_logits(&st, x, 1, logits);
        size_t arg = 0;
        for (size_t v = 1; v < vocab; v++)
            arg = logits[v] > logits[arg] ? v : arg;
        token = (int32_t)arg;
        double t = now_s() - t0;
        best = bytes / t > best ? bytes / t : best;
        secs += t;
        krate[nk++] = bytes / t;
    }
    pair_groups(krate, rrate, o->reps, vr);
    *n_layers = info.cfg.n_layers;
    *mean = bytes * o->reps / secs / 1e9;
    *tok_s = o->reps / secs;
    mdi_free_floats(x), mdi_free_floats(logits), free(krate), free(rrate);
    mdi_stage_free(&st);
    return best / 1e9;
}

int main(int argc, char **argv)
{
    opts o = {.mb = 1024,
              .m = 128,
              .n = 5632,
              .k = 2048,
              .rows = 1,
              .layers = 22,
              .pos = 1000,
              .threads = 1,
              .reps = 0, /* 5; 6 for decode-read and engine-read (even) */
              .panel = -1};
    double mean, tok_s;
    const char *what = argc > 1 ? argv[1] : "";
    if (parse(argc, argv, &o))
        return 2;
    /* decode-read and engine-read frame two passes with two reads: even reps */
    const int framed = !strcmp(what, "decode-read") || !strcmp(what, "engine-read");
    if (!o.reps)
        o.reps = framed ? 6 : 5;
    if (framed && o.reps % 2) {
        const char *pass = !strcmp(what, "decode-read") ? "kernel" : "step";
        fprintf(stderr, "mdi-bench: %s --reps %d must be even (passes go %s, read, read, %s)\n",
                what, o.reps, pass, pass);
        return 2;
    }
    mdi_tensor_info info;
    mdi_err err;
    if (mdi_tensor_choose_arch(NULL, &err) || mdi_tensor_init(o.threads, &info, &err)) {
        fprintf(stderr, "mdi-bench: %s\n", err.msg);
        return 1;
    }
    if (!strcmp(what, "read")) {
        double best = bench_read(&o, &mean);
        printf("read_bandwidth %.2f GB/s mean %.2f GB/s threads=%d\n", best, mean, o.threads);
    } else if (!strcmp(what, "triad"))
        printf("triad_bandwidth %.2f GB/s threads=%d\n", bench_triad(&o), o.threads);
    else if (!strcmp(what, "sgemm"))
        printf("sgemm %.2f GFLOP/s m=%zu n=%zu k=%zu threads=%d blis=%s panel=%ld\n",
               bench_sgemm(&o), o.m, o.n, o.k, o.threads, info.blis_arch,
               o.panel < 0 ? 0L : o.panel);
    else if (!strcmp(what, "stream"))
        printf("stream_kernel %.2f GB/s rows=%zu threads=%d panel=%zu\n", bench_stream(&o), o.rows,
               o.threads, panel_of(&o, o.k, o.rows));
    else if (!strcmp(what, "decode") || !strcmp(what, "decode-read")) {
        vs_read vr, *pv = framed ? &vr : NULL;
        double best = bench_decode(&o, &mean, &tok_s, pv);
        printf("decode_kernel %.2f GB/s mean %.2f GB/s tok_s %.3f layers=%zu threads=%d\n", best,
               mean, tok_s, o.layers, o.threads);
        if (pv)
            printf("decode_vs_read median %.4f min %.4f max %.4f read_mean %.2f GB/s groups %d\n",
                   vr.median, vr.min, vr.max, vr.read_mean, vr.groups);
    } else if (!strcmp(what, "engine-read")) {
        vs_read vr;
        int layers;
        if (!o.model) {
            fprintf(stderr, "mdi-bench: engine-read needs --model FILE (a whole model)\n");
            return 2;
        }
        double best = bench_engine(&o, &mean, &tok_s, &vr, &layers);
        if (best < 0)
            return best < -1 ? 2 : 1;
        printf("engine_step %.2f GB/s mean %.2f GB/s tok_s %.3f layers=%d threads=%d\n", best, mean,
               tok_s, layers, o.threads);
        printf("engine_vs_read median %.4f min %.4f max %.4f read_mean %.2f GB/s groups %d\n",
               vr.median, vr.min, vr.max, vr.read_mean, vr.groups);
    } else if (!strcmp(what, "attention"))
        printf("attention %.3f ms per token pos=%zu layers=%zu heads=32 kv_heads=4 head_dim=64\n",
               1e3 * bench_attention(&o), o.pos, o.layers);
    else {
        fprintf(stderr, "usage: mdi-bench read|triad|sgemm|stream|decode|decode-read|engine-read|"
                        "attention\n"
                        "       [--mb N] [--threads T] [--panel P] [--m M --n N --k K] [--rows R]\n"
                        "       [--layers L] [--pos P] [--reps N] [--model F]\n");
        return 2;
    }
    return 0;
}

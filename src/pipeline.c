/* Recurrent pipeline schedule: rank 0 drives groups of samples round the ring. */
#include "mdi/pipeline.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct sample_state {
    int32_t *ids; /* (max_pos + 1) prompt then generated */
    int32_t n_prompt;
    int32_t n_known; /* ids[0 .. n_known) are decided */
    int32_t n_fed;   /* positions already in the KV cache (came back round the ring) */
    int32_t n_sent;  /* positions sent round the ring; n_fed <= n_sent <= n_known */
    int32_t n_generated;
    double last_token_t; /* when its latest token was sampled; 0 before the first */
    mdi_stop_reason done;
    mdi_rng rng;
} sample_state;

struct mdi_pipeline {
    mdi_stage *st;
    mdi_ring *ring;
    mdi_pipeline_params p;
    int32_t n_groups;
    /* rank 0 only */
    sample_state *samples; /* (n_samples) */
    int32_t *ready;        /* (n_groups) FIFO of groups ready to launch */
    int32_t ready_head, ready_count;
    uint8_t *queued;       /* (n_groups) in ready */
    int32_t *in_flight;    /* (n_groups) messages of the group round the ring */
    int32_t n_extra;       /* messages in flight beyond one per group */
    int32_t max_extra;     /* at most n_ranks - 1 (mdi_pipeline_ring_buffers) */
    int32_t *row_tokens;   /* (max_rows) */
    float *logit_rows;     /* (group_size, dim) */
    int32_t *logit_sample; /* (group_size) */
    float *logits;         /* (group_size, vocab) */
    mdi_sampler sampler;
    int sampler_ready;
    mdi_pipeline_stats stats;
    double work_t0, work_t1; /* start of this rank's first work item, end of its last */
    int32_t n_started;       /* samples with a first token (or ended before one) */
    double decode_t0;        /* when n_started reached n_samples; 0 before */
    int64_t decode_tokens0;  /* tokens_generated at that moment */
    double *gaps;            /* (gap_cap) inter-token latencies, in sampling order */
    int64_t n_gaps, gap_cap;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Account one work item of this rank, computed from t0 to t1. */
static void note_work(mdi_pipeline *pl, double t0, double t1)
{
    pl->stats.compute_s += t1 - t0;
    if (pl->work_t0 == 0.0)
        pl->work_t0 = t0;
    pl->work_t1 = t1;
}

const char *mdi_stop_reason_str(mdi_stop_reason r)
{
    switch (r) {
    case MDI_STOP_EOS:
        return "eos";
    case MDI_STOP_MAX_TOKENS:
        return "max-tokens";
    case MDI_STOP_CONTEXT:
        return "context-full";
    default:
        return "running";
    }
}

int32_t mdi_pipeline_auto_group_size(int32_t n_samples, int32_t n_ranks)
{
    int32_t g = n_ranks > 0 ? n_samples / n_ranks : 1;
    return g < 1 ? 1 : g;
}

int mdi_pipeline_ring_buffers(int32_t n_groups, int n_ranks)
{
    return n_groups + 4 + (n_ranks > 1 ? n_ranks - 1 : 0);
}

const mdi_pipeline_stats *mdi_pipeline_get_stats(const mdi_pipeline *pl)
{
    return &pl->stats;
}

const int32_t *mdi_pipeline_sample_ids(const mdi_pipeline *pl, int32_t i, int32_t *n)
{
    *n = pl->samples[i].n_known;
    return pl->samples[i].ids;
}

/* Count of equal prompts before sample i: the sample's random stream, so its
 * text depends on neither the rank count nor the samples beside it. */
static uint64_t prompt_repeat_index(const mdi_pipeline_params *p, int32_t i)
{
    uint64_t k = 0;
    for (int32_t j = 0; j < i; j++)
        if (p->n_prompt[j] == p->n_prompt[i] &&
            !memcmp(p->prompts[j], p->prompts[i], (size_t)p->n_prompt[i] * sizeof(int32_t)))
            k++;
    return k;
}

static mdi_status init_driver(mdi_pipeline *pl, mdi_err *err)
{
    const mdi_run_shape *sh = &pl->p.shape;
    size_t gs = (size_t)sh->group_size, dim = (size_t)pl->st->cfg.dim;
    size_t vocab = (size_t)pl->st->cfg.vocab_size;
    pl->samples = calloc((size_t)sh->n_samples, sizeof *pl->samples);
    pl->ready = calloc((size_t)pl->n_groups, sizeof *pl->ready);
    pl->queued = calloc((size_t)pl->n_groups, sizeof *pl->queued);
    pl->in_flight = calloc((size_t)pl->n_groups, sizeof *pl->in_flight);
    pl->row_tokens = calloc((size_t)sh->max_rows, sizeof *pl->row_tokens);
    pl->logit_rows = mdi_alloc_floats(gs * dim);
    pl->logit_sample = calloc(gs, sizeof *pl->logit_sample);
    pl->logits = mdi_alloc_floats(gs * vocab);
    if (!pl->samples || !pl->ready || !pl->queued || !pl->in_flight || !pl->row_tokens ||
        !pl->logit_rows || !pl->logit_sample || !pl->logits)
        return mdi_errf(err, MDI_ERR_NOMEM, "cannot allocate the sample table");
    mdi_status s = mdi_sampler_init(&pl->sampler, pl->st->cfg.vocab_size, &pl->p.sampler, err);
    if (s)
        return s;
    pl->sampler_ready = 1;
    for (int32_t i = 0; i < sh->n_samples; i++) {
        sample_state *ss = &pl->samples[i];
        int32_t np = pl->p.n_prompt[i];
        if (np < 1 || np > sh->max_pos)
            return mdi_errf(err, MDI_ERR_RANGE, "prompt %d has %d tokens; the limit is %d", i, np,
                            sh->max_pos);
        if (!(ss->ids = calloc((size_t)sh->max_pos + 1, sizeof *ss->ids)))
            return mdi_errf(err, MDI_ERR_NOMEM, "cannot allocate sample %d", i);
        memcpy(ss->ids, pl->p.prompts[i], (size_t)np * sizeof(int32_t));
        ss->n_prompt = ss->n_known = np;
        mdi_rng_seed(&ss->rng, pl->p.seed, prompt_repeat_index(&pl->p, i));
        /* a sample samples at most max_pos + 1 - np tokens (accept_token) */
        int64_t most = (int64_t)sh->max_pos + 1 - np;
        int64_t cap = pl->p.max_tokens < most ? pl->p.max_tokens : most;
        pl->gap_cap += cap > 0 ? cap : 0;
    }
    if (pl->gap_cap > 0 && !(pl->gaps = malloc((size_t)pl->gap_cap * sizeof *pl->gaps)))
        return mdi_errf(err, MDI_ERR_NOMEM, "cannot allocate the token timings");
    for (int32_t g = 0; g < pl->n_groups; g++)
        pl->ready[g] = g;
    pl->ready_count = pl->n_groups;
    return MDI_OK;
}

mdi_status mdi_pipeline_init(mdi_pipeline **out, mdi_stage *st, mdi_ring *ring,
                             const mdi_pipeline_params *p, mdi_err *err)
{
    const mdi_run_shape *sh = &p->shape;
    if (sh->n_samples < 1 || sh->group_size < 1 || sh->max_rows < sh->group_size ||
        sh->max_pos < 1 || (size_t)sh->n_samples > st->p.n_slots ||
        (size_t)sh->max_rows > st->p.max_rows || (size_t)sh->max_pos > st->p.max_pos)
        return mdi_errf(err, MDI_ERR_ARG, "run shape does not fit the stage");
    mdi_pipeline *pl = calloc(1, sizeof *pl);
    if (!pl)
        return mdi_errf(err, MDI_ERR_NOMEM, "cannot allocate the pipeline");
    pl->st = st;
    pl->ring = ring;
    pl->p = *p;
    pl->n_groups = (sh->n_samples + sh->group_size - 1) / sh->group_size;
    pl->max_extra = mdi_ring_size(ring) - 1;
    if (mdi_ring_rank(ring) == 0) {
        mdi_status s;
        if (!p->tok || !p->prompts || !p->n_prompt || !st->p.has_extras)
            s = mdi_errf(err, MDI_ERR_ARG, "rank 0 needs the tokenizer, prompts and extras");
        else
            s = init_driver(pl, err);
        if (s) {
            mdi_pipeline_free(pl);
            return s;
        }
    }
    *out = pl;
    return MDI_OK;
}

void mdi_pipeline_free(mdi_pipeline *pl)
{
    if (!pl)
        return;
    for (int32_t i = 0; pl->samples && i < pl->p.shape.n_samples; i++)
        free(pl->samples[i].ids);
    free(pl->samples);
    free(pl->gaps);
    free(pl->ready);
    free(pl->queued);
    free(pl->in_flight);
    free(pl->row_tokens);
    mdi_free_floats(pl->logit_rows);
    free(pl->logit_sample);
    mdi_free_floats(pl->logits);
    if (pl->sampler_ready)
        mdi_sampler_free(&pl->sampler);
    free(pl);
}

/* Rows [first, last) of the samples of group g. */
static void group_range(const mdi_pipeline *pl, int32_t g, int32_t *first, int32_t *last)
{
    int32_t gs = pl->p.shape.group_size;
    *first = g * gs;
    *last = *first + gs > pl->p.shape.n_samples ? pl->p.shape.n_samples : *first + gs;
}

static int group_active(const mdi_pipeline *pl, int32_t g)
{
    int32_t a, b;
    group_range(pl, g, &a, &b);
    for (int32_t i = a; i < b; i++)
        if (!pl->samples[i].done)
            return 1;
    return 0;
}

static void end_sample(mdi_pipeline *pl, int32_t i, mdi_stop_reason why, const mdi_sink *sink)
{
    pl->n_started += pl->samples[i].n_generated == 0;
    pl->samples[i].done = why;
    if (sink && sink->end)
        sink->end(sink->ctx, i, why, pl->samples[i].n_generated);
}

/* Send the text of ids[from, to) of sample i to the sink. */
static void emit_ids(mdi_pipeline *pl, int32_t i, int32_t from, int32_t to, const mdi_sink *sink)
{
    const sample_state *ss = &pl->samples[i];
    for (int32_t k = from; k < to && sink && sink->text; k++) {
        char buf[8];
        size_t n = 0;
        const char *t =
            mdi_tokenizer_decode(pl->p.tok, k > 0 ? ss->ids[k - 1] : -1, ss->ids[k], buf, &n);
        sink->text(sink->ctx, i, t, n);
    }
}

/* Record token tok, sampled for sample i, and end the sample if it is finished. */
static void accept_token(mdi_pipeline *pl, int32_t i, int32_t tok, const mdi_sink *sink)
{
    sample_state *ss = &pl->samples[i];
    pl->n_started += ss->n_generated == 0;
    ss->n_generated++;
    pl->stats.tokens_generated++;
    if (tok == mdi_tokenizer_eos(pl->p.tok) || tok == mdi_tokenizer_bos(pl->p.tok)) {
        end_sample(pl, i, MDI_STOP_EOS, sink);
        return;
    }
    ss->ids[ss->n_known++] = tok;
    emit_ids(pl, i, ss->n_known - 1, ss->n_known, sink);
    if (ss->n_generated >= pl->p.max_tokens)
        end_sample(pl, i, MDI_STOP_MAX_TOKENS, sink);
    else if (ss->n_known > pl->p.shape.max_pos) /* ids[n_known-1] would need one more position */
        end_sample(pl, i, MDI_STOP_CONTEXT, sink);
}

/* Embed the next rows of every running sample of group g, run this rank's
 * layers on them and send them on. */
static mdi_status launch_group(mdi_pipeline *pl, int32_t g, mdi_err *err)
{
    int32_t a, b, active = 0, total = 0;
    group_range(pl, g, &a, &b);
    for (int32_t i = a; i < b; i++)
        active += !pl->samples[i].done;
    int32_t budget = pl->p.shape.max_rows / (active ? active : 1);
    for (int32_t i = a; i < b; i++) {
        const sample_state *ss = &pl->samples[i];
        int32_t n = ss->n_known - ss->n_sent;
        total += ss->done ? 0 : (n < budget ? n : budget);
    }
    mdi_msg m;
    mdi_status s = mdi_ring_acquire(pl->ring, &m, err);
    if (s)
        return s;
    mdi_ring_msg_layout(pl->ring, &m, total);
    /* generated-token rows first (always streamed), then prompt rows */
    int32_t k = 0;
    for (int pass = 0; pass < 2; pass++) {
        if (pass == 1)
            m.n_stream = k;
        for (int32_t i = a; i < b; i++) {
            const sample_state *ss = &pl->samples[i];
            int32_t n = ss->done ? 0 : ss->n_known - ss->n_sent;
            if ((ss->n_sent >= ss->n_prompt) != (pass == 0))
                continue;
            for (int32_t j = 0; j < n && j < budget; j++, k++) {
                m.rows[k].slot = i;
                m.rows[k].pos = ss->n_sent + j;
                pl->row_tokens[k] = ss->ids[ss->n_sent + j];
            }
        }
    }
    for (int32_t i = a; i < b; i++) {
        sample_state *ss = &pl->samples[i];
        int32_t n = ss->done ? 0 : ss->n_known - ss->n_sent;
        ss->n_sent += n < budget ? n : budget;
    }
    double t0 = now_s();
    mdi_stage_embed(pl->st, pl->row_tokens, (size_t)total, m.x);
    mdi_stage_forward_mixed(pl->st, m.x, m.rows, (size_t)total, (size_t)m.n_stream);
    note_work(pl, t0, now_s());
    m.kind = MDI_MSG_WORK;
    m.group = g;
    return mdi_ring_send(pl->ring, &m, err);
}

/* A group came back round the ring: sample a token for every sample whose
 * known ids are now all in the cache. */
static void finish_group(mdi_pipeline *pl, mdi_msg *m, const mdi_sink *sink)
{
    size_t dim = (size_t)pl->st->cfg.dim, vocab = (size_t)pl->st->cfg.vocab_size;
    int32_t n_logit = 0;
    for (int32_t r = 0; r < m->n_rows; r++) {
        if (r + 1 < m->n_rows && m->rows[r + 1].slot == m->rows[r].slot)
            continue;
        sample_state *ss = &pl->samples[m->rows[r].slot];
        ss->n_fed = m->rows[r].pos + 1;
        if (ss->n_fed < ss->n_known)
            continue;
        memcpy(pl->logit_rows + (size_t)n_logit * dim, m->x + (size_t)r * dim, dim * sizeof(float));
        pl->logit_sample[n_logit++] = m->rows[r].slot;
    }
    mdi_ring_release(pl->ring, m);
    if (!n_logit)
        return;
    double t0 = now_s();
    mdi_stage_logits(pl->st, pl->logit_rows, (size_t)n_logit, pl->logits);
    for (int32_t j = 0; j < n_logit; j++) {
        int32_t i = pl->logit_sample[j];
        int32_t tok =
            mdi_sampler_sample(&pl->sampler, pl->logits + (size_t)j * vocab, &pl->samples[i].rng);
        accept_token(pl, i, tok, sink);
    }
    double t1 = now_s();
    note_work(pl, t0, t1);
    for (int32_t j = 0; j < n_logit; j++) {
        sample_state *ss = &pl->samples[pl->logit_sample[j]];
        if (ss->last_token_t > 0.0 && pl->n_gaps < pl->gap_cap)
            pl->gaps[pl->n_gaps++] = t1 - ss->last_token_t;
        ss->last_token_t = t1;
    }
    if (pl->stats.first_token_s == 0.0)
        pl->stats.first_token_s = t1;
    if (pl->decode_t0 > 0.0) {
        pl->stats.decode_tokens = pl->stats.tokens_generated - pl->decode_tokens0;
        pl->stats.decode_s = t1 - pl->decode_t0;
    } else if (pl->n_started == pl->p.shape.n_samples) {
        pl->decode_t0 = t1;
        pl->decode_tokens0 = pl->stats.tokens_generated;
    }
}

/* Whether group g has rows to send: a running sample with ids not yet sent. */
static int group_has_rows(const mdi_pipeline *pl, int32_t g)
{
    int32_t a, b;
    group_range(pl, g, &a, &b);
    for (int32_t i = a; i < b; i++)
        if (!pl->samples[i].done && pl->samples[i].n_sent < pl->samples[i].n_known)
            return 1;
    return 0;
}

static void enqueue(mdi_pipeline *pl, int32_t g)
{
    if (pl->queued[g])
        return;
    pl->queued[g] = 1;
    pl->ready[(pl->ready_head + pl->ready_count++) % pl->n_groups] = g;
}

/* Queue the groups that may send now: one with no message out, or, while
 * fewer than max_extra extra messages are in flight, one with more prompt
 * rows to send (they need no sampled token), so that the chunks of a long
 * prompt pipeline through the ranks instead of going round one at a time. */
static void queue_sendable(mdi_pipeline *pl)
{
    for (int32_t g = 0; g < pl->n_groups; g++)
        if (!pl->queued[g] && group_has_rows(pl, g) &&
            (pl->in_flight[g] == 0 || pl->n_extra < pl->max_extra))
            enqueue(pl, g);
}

/* Rank 0, giving up (the text cannot be delivered): take back the n_out
 * messages still round the ring, unread, so that the ring can be closed. */
static mdi_status drain(mdi_pipeline *pl, int32_t n_out, mdi_err *err)
{
    for (; n_out > 0; n_out--) {
        mdi_msg m;
        mdi_status s = mdi_ring_recv(pl->ring, &m, err);
        if (s)
            return s;
        if (m.kind != MDI_MSG_WORK)
            return mdi_errf(err, MDI_ERR_COMM, "unexpected message (kind %d) at rank 0", m.kind);
        mdi_ring_release(pl->ring, &m);
    }
    return MDI_OK;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The nearest-rank p-th percentile (0 < p <= 100) of the n > 0 sorted v. */
static double percentile(const double *v, int64_t n, int p)
{
    int64_t k = (n * p + 99) / 100; /* ceil(n p / 100), 1-based */
    return v[(k < 1 ? 1 : k) - 1];
}

/* Rank 0, after the run: the inter-token latency figures of the stats
 * (sorts the gaps). */
static void latency_stats(mdi_pipeline *pl)
{
    int64_t n = pl->n_gaps;
    mdi_pipeline_stats *s = &pl->stats;
    s->itl_count = n;
    if (n == 0)
        return;
    qsort(pl->gaps, (size_t)n, sizeof *pl->gaps, cmp_double);
    s->itl_min_s = pl->gaps[0];
    s->itl_p50_s = percentile(pl->gaps, n, 50);
    s->itl_p90_s = percentile(pl->gaps, n, 90);
    s->itl_p99_s = percentile(pl->gaps, n, 99);
    s->itl_max_s = pl->gaps[n - 1];
}

/* Rank 0: echo prompts, keep every group moving until all samples end. */
static mdi_status run_driver(mdi_pipeline *pl, const mdi_sink *sink, double t_start, mdi_err *err)
{
    int32_t active_groups = 0, n_out = 0; /* groups to finish, messages out */
    mdi_status s;
    for (int32_t i = 0; i < pl->p.shape.n_samples; i++) {
        pl->stats.prompt_tokens += pl->samples[i].n_prompt;
        const sample_state *ss = &pl->samples[i];
        int32_t bos = ss->n_prompt > 0 && ss->ids[0] == mdi_tokenizer_bos(pl->p.tok);
        emit_ids(pl, i, bos, ss->n_prompt, sink); /* the prompt without its BOS */
        if (pl->p.max_tokens <= 0)
            end_sample(pl, i, MDI_STOP_MAX_TOKENS, sink);
    }
    pl->ready_count = 0;
    pl->ready_head = 0;
    for (int32_t g = 0; g < pl->n_groups; g++)
        if (group_active(pl, g)) {
            enqueue(pl, g);
            active_groups++;
        }
    while (active_groups > 0) {
        if (sink && sink->failed && sink->failed(sink->ctx)) {
            if ((s = drain(pl, n_out, err)))
                return s;
            break;
        }
        if (pl->ready_count > 0) {
            int32_t g = pl->ready[pl->ready_head];
            pl->ready_head = (pl->ready_head + 1) % pl->n_groups;
            pl->ready_count--;
            pl->queued[g] = 0;
            if (pl->in_flight[g] > 0 && pl->n_extra >= pl->max_extra)
                continue; /* queued again when a message comes back */
            if ((s = launch_group(pl, g, err)))
                return s;
            pl->n_extra += pl->in_flight[g]++ > 0;
            if (++n_out > pl->stats.max_in_flight)
                pl->stats.max_in_flight = n_out;
            queue_sendable(pl);
            continue;
        }
        mdi_msg m;
        if ((s = mdi_ring_recv(pl->ring, &m, err)))
            return s;
        if (m.kind != MDI_MSG_WORK || m.group < 0 || m.group >= pl->n_groups)
            return mdi_errf(err, MDI_ERR_COMM, "unexpected message (kind %d) at rank 0", m.kind);
        int32_t g = m.group;
        if (pl->in_flight[g] < 1)
            return mdi_errf(err, MDI_ERR_COMM, "group %d came back more often than it was sent", g);
        pl->n_extra -= --pl->in_flight[g] > 0;
        n_out--;
        finish_group(pl, &m, sink);
        if (pl->in_flight[g] == 0 && !group_active(pl, g))
            active_groups--;
        queue_sendable(pl);
    }
    if (pl->stats.first_token_s > 0.0)
        pl->stats.first_token_s -= t_start;
    latency_stats(pl);
    return MDI_OK;
}

/* Every rank but 0: run each message through this rank's layers and pass it on. */
static mdi_status run_worker(mdi_pipeline *pl, mdi_err *err)
{
    mdi_status s;
    for (;;) {
        mdi_msg m;
        if ((s = mdi_ring_recv(pl->ring, &m, err)))
            return s;
        if (m.kind == MDI_MSG_STOP)
            return mdi_ring_send(pl->ring, &m, err);
        for (int32_t r = 0; r < m.n_rows; r++)
            if (m.rows[r].slot < 0 || m.rows[r].slot >= pl->p.shape.n_samples ||
                m.rows[r].pos < 0 || m.rows[r].pos >= pl->p.shape.max_pos)
                return mdi_errf(err, MDI_ERR_COMM,
                                "message row %d has slot %d position %d out "
                                "of range",
                                r, m.rows[r].slot, m.rows[r].pos);
        double t0 = now_s();
        mdi_stage_forward_mixed(pl->st, m.x, m.rows, (size_t)m.n_rows, (size_t)m.n_stream);
        note_work(pl, t0, now_s());
        if ((s = mdi_ring_send(pl->ring, &m, err)))
            return s;
    }
}

/* Rank 0: send the stop message round the ring and wait for it to return. */
static mdi_status close_ring(mdi_pipeline *pl, mdi_err *err)
{
    mdi_msg m;
    mdi_status s = mdi_ring_acquire(pl->ring, &m, err);
    if (s)
        return s;
    mdi_ring_msg_layout(pl->ring, &m, 0);
    m.kind = MDI_MSG_STOP;
    if ((s = mdi_ring_send(pl->ring, &m, err)) || (s = mdi_ring_recv(pl->ring, &m, err)))
        return s;
    if (m.kind != MDI_MSG_STOP)
        return mdi_errf(err, MDI_ERR_COMM, "expected the stop message back, got kind %d", m.kind);
    mdi_ring_release(pl->ring, &m);
    return MDI_OK;
}

mdi_status mdi_pipeline_run(mdi_pipeline *pl, const mdi_sink *sink, mdi_err *err)
{
    double t0 = now_s();
    mdi_status s;
    if (mdi_ring_rank(pl->ring) == 0) {
        s = run_driver(pl, sink, t0, err);
        if (!s)
            s = close_ring(pl, err);
    } else {
        s = run_worker(pl, err);
    }
    pl->stats.wall_s = now_s() - t0;
    pl->stats.active_s = pl->work_t1 - pl->work_t0;
    return s;
}

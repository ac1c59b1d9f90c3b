/* One rank's slice of the model: allocation and the forward pass. */
#include "mdi/stage.h"

#include <omp.h>
#include <stdlib.h>
#include <string.h>

/* Whether local layer l holds its attention / its MLP half. */
static int holds_half(const mdi_stage *st, int32_t l, int half)
{
    int32_t h = 2 * (mdi_stage_first_layer(st) + l) + half;
    return h >= st->p.half_first && h < st->p.half_last;
}

/* Attention halves held: the KV cache has one layer for each. */
static size_t n_attn_layers(const mdi_stage *st)
{
    return (size_t)((st->p.half_last + 1) / 2 - (st->p.half_first + 1) / 2);
}

/* KV cache layer of local layer l (which holds its attention). */
static size_t kv_layer(const mdi_stage *st, size_t l)
{
    return l - (size_t)(st->p.half_first % 2);
}

int32_t mdi_stage_first_layer(const mdi_stage *st)
{
    return st->p.half_first / 2;
}

int32_t mdi_stage_n_layers(const mdi_stage *st)
{
    return (st->p.half_last + 1) / 2 - st->p.half_first / 2;
}

/* Offset of tensor k of local layer l inside layer_data: the tensors held are
 * packed layer by layer in MDI_TENSOR_LIST order. */
static size_t tensor_offset(const mdi_stage *st, mdi_tensor_kind kind, int32_t l)
{
    const mdi_config *c = &st->cfg;
    size_t off = 0, r, cl;
    if (l > 0) /* the first layer may lack its attention, the others are whole */
        off = mdi_config_layer_params(c) * (size_t)l -
              (st->p.half_first % 2 ? mdi_config_half_params(c, MDI_HALF_ATTN) : 0);
    for (int k = 0; k < (int)kind; k++) {
        int half = mdi_tensor_half((mdi_tensor_kind)k);
        if (half < 0 || !holds_half(st, l, half))
            continue;
        mdi_tensor_shape(c, (mdi_tensor_kind)k, &r, &cl);
        off += r * cl;
    }
    return off;
}

float *mdi_stage_tensor(mdi_stage *st, mdi_tensor_kind k, int32_t local_layer)
{
    switch (k) {
    case MDI_T_EMBED:
        return st->embedding;
    case MDI_T_FINAL_NORM:
        return st->final_norm;
    case MDI_T_OUTPUT:
        return st->cfg.tied_head ? NULL : st->output;
    default:
        if (!holds_half(st, local_layer, mdi_tensor_half(k)))
            return NULL;
        return st->layer_data + tensor_offset(st, k, local_layer);
    }
}

/* Parameters of the half-layers held. */
static size_t held_params(const mdi_stage *st)
{
    size_t n = 0;
    for (int32_t h = st->p.half_first; h < st->p.half_last; h++)
        n += mdi_config_half_params(&st->cfg, h % 2 ? MDI_HALF_MLP : MDI_HALF_ATTN);
    return n;
}

size_t mdi_stage_weight_bytes(const mdi_stage *st)
{
    size_t n = held_params(st);
    if (st->p.has_extras)
        n += mdi_config_extra_params(&st->cfg);
    return n * sizeof(float);
}

size_t mdi_stage_step_bytes(const mdi_stage *st)
{
    size_t n = held_params(st);
    if (st->p.has_extras)
        n += mdi_config_head_params(&st->cfg);
    return n * sizeof(float);
}

int mdi_stage_prompt_streams(const mdi_stage *st)
{
    return !st->p.prompt_blis && st->p.max_rows <= mdi_matmul_stream_max_rows();
}

static mdi_attn_shape attn_shape(const mdi_config *c)
{
    return (mdi_attn_shape){(size_t)c->n_heads, (size_t)c->n_kv_heads, (size_t)c->head_dim};
}

static mdi_status alloc_scratch(mdi_stage *st, mdi_err *err)
{
    const mdi_config *c = &st->cfg;
    size_t R = st->p.max_rows, qd = mdi_config_q_dim(c), kvd = mdi_config_kv_dim(c);
    float **bufs[] = {&st->xb, &st->q, &st->k, &st->v, &st->att, &st->hb, &st->hb2};
    size_t widths[] = {(size_t)c->dim,       qd, kvd, kvd, qd, (size_t)c->hidden_dim,
                       (size_t)c->hidden_dim};
    for (size_t i = 0; i < sizeof widths / sizeof widths[0]; i++) {
        if (R > SIZE_MAX / widths[i] / sizeof(float) ||
            !(*bufs[i] = mdi_alloc_floats(R * widths[i])))
            return mdi_errf(err, MDI_ERR_NOMEM, "cannot allocate scratch for %zu rows", R);
    }
    mdi_attn_shape shape = attn_shape(c);
    size_t per_thread = st->p.max_pos * mdi_attn_heads_at_once(&shape, shape.n_heads);
    if (per_thread > SIZE_MAX / sizeof(float) / (size_t)st->p.n_threads ||
        !(st->scores = mdi_alloc_floats((size_t)st->p.n_threads * per_thread)))
        return mdi_errf(err, MDI_ERR_NOMEM, "cannot allocate attention scores");
    if (st->p.has_extras &&
        !(st->logit_x = mdi_alloc_floats(st->p.max_logit_rows * (size_t)c->dim)))
        return mdi_errf(err, MDI_ERR_NOMEM, "cannot allocate logit rows");
    return MDI_OK;
}

static mdi_status alloc_weights(mdi_stage *st, mdi_err *err)
{
    const mdi_config *c = &st->cfg;
    size_t n_local = (size_t)mdi_stage_n_layers(st), n = held_params(st);
    st->layer_data = mdi_alloc_floats(n);
    st->layers = calloc(n_local, sizeof *st->layers);
    if (!st->layer_data || !st->layers)
        return mdi_errf(err, MDI_ERR_NOMEM, "cannot allocate %.1f MiB of layer weights",
                        (double)(n * sizeof(float)) / (1 << 20));
    for (int32_t l = 0; l < (int32_t)n_local; l++) {
        mdi_layer_weights *w = &st->layers[l];
        w->attn_norm = mdi_stage_tensor(st, MDI_T_ATTN_NORM, l);
        w->wq = mdi_stage_tensor(st, MDI_T_WQ, l);
        w->wk = mdi_stage_tensor(st, MDI_T_WK, l);
        w->wv = mdi_stage_tensor(st, MDI_T_WV, l);
        w->wo = mdi_stage_tensor(st, MDI_T_WO, l);
        w->ffn_norm = mdi_stage_tensor(st, MDI_T_FFN_NORM, l);
        w->w1 = mdi_stage_tensor(st, MDI_T_W1, l);
        w->w2 = mdi_stage_tensor(st, MDI_T_W2, l);
        w->w3 = mdi_stage_tensor(st, MDI_T_W3, l);
    }
    if (!st->p.has_extras)
        return MDI_OK;
    size_t vd = (size_t)c->vocab_size * (size_t)c->dim;
    st->embedding = mdi_alloc_floats(vd);
    st->final_norm = mdi_alloc_floats((size_t)c->dim);
    st->output = c->tied_head ? st->embedding : mdi_alloc_floats(vd);
    if (!st->embedding || !st->final_norm || !st->output)
        return mdi_errf(err, MDI_ERR_NOMEM, "cannot allocate embedding and output head");
    return MDI_OK;
}

mdi_status mdi_stage_pack(mdi_stage *st, size_t for_rows, mdi_err *err)
{
    const mdi_config *c = &st->cfg;
    size_t rows, cols, longest = (size_t)c->dim;
    if (st->packed || for_rows == 0 || mdi_weight_panel(longest, for_rows) == 0)
        return MDI_OK;
    for (int k = 0; k < MDI_T_COUNT; k++) {
        mdi_tensor_shape(c, (mdi_tensor_kind)k, &rows, &cols);
        longest = cols > longest ? cols : longest;
    }
    /* prompt rows go to BLIS: room to unpack a block for it */
    if (!st->unpack && !mdi_stage_prompt_streams(st)) {
        size_t ins[] = {(size_t)c->dim, mdi_config_q_dim(c), (size_t)c->hidden_dim}, most = 0;
        for (size_t i = 0; i < sizeof ins / sizeof ins[0]; i++) {
            size_t f = mdi_matmul_scratch(ins[i], mdi_weight_panel(ins[i], for_rows));
            most = f > most ? f : most;
        }
        if (!(st->unpack = mdi_alloc_floats(most)))
            return mdi_errf(err, MDI_ERR_NOMEM, "cannot allocate %.1f MiB to unpack weights",
                            (double)(most * sizeof(float)) / (1 << 20));
    }
    float *scratch = malloc((size_t)MDI_PANEL_ROWS * longest * sizeof *scratch);
    if (!scratch)
        return mdi_errf(err, MDI_ERR_NOMEM, "cannot allocate %.1f MiB to lay out the weights",
                        (double)(MDI_PANEL_ROWS * longest * sizeof *scratch) / (1 << 20));
    for (int32_t l = 0; l < mdi_stage_n_layers(st); l++)
        for (int k = 0; k < MDI_T_COUNT; k++) {
            mdi_tensor_kind kind = (mdi_tensor_kind)k;
            float *t = mdi_tensor_scope_of(kind) == MDI_SCOPE_LAYER && mdi_tensor_is_matrix(kind)
                           ? mdi_stage_tensor(st, kind, l)
                           : NULL;
            if (!t)
                continue;
            mdi_tensor_shape(c, kind, &rows, &cols);
            mdi_weight_to_panels(t, rows, cols, mdi_weight_panel(cols, for_rows), scratch);
        }
    if (st->p.has_extras && !c->tied_head)
        mdi_weight_to_panels(st->output, (size_t)c->vocab_size, (size_t)c->dim,
                             mdi_weight_panel((size_t)c->dim, for_rows), scratch);
    free(scratch);
    st->packed = (int)for_rows;
    return MDI_OK;
}

mdi_status mdi_stage_init(mdi_stage *st, const mdi_config *cfg, const mdi_stage_params *p,
                          mdi_err *err)
{
    memset(st, 0, sizeof *st);
    st->cfg = *cfg;
    st->p = *p;
    mdi_status s;
    if (p->half_first < 0 || p->half_last > 2 * cfg->n_layers || p->half_first >= p->half_last)
        return mdi_errf(err, MDI_ERR_ARG, "half-layer range [%d, %d) is invalid for %d layers",
                        p->half_first, p->half_last, cfg->n_layers);
    if (p->n_slots == 0 || p->max_pos == 0 || p->max_rows == 0 || p->n_threads < 1 ||
        p->max_pos > (size_t)cfg->max_seq_len || (p->has_extras && p->max_logit_rows == 0))
        return mdi_errf(err, MDI_ERR_ARG, "stage sizes out of range");
    if ((s = alloc_weights(st, err)) || (s = alloc_scratch(st, err)) ||
        (n_attn_layers(st) > 0 && (s = mdi_kv_init(&st->kv, p->n_slots, n_attn_layers(st),
                                                   p->max_pos, mdi_config_kv_dim(cfg), err))) ||
        (s = mdi_rope_init(&st->rope, p->max_pos, (size_t)cfg->head_dim, cfg->rope_theta, err))) {
        mdi_stage_free(st);
        return s;
    }
    return MDI_OK;
}

void mdi_stage_free(mdi_stage *st)
{
    float *bufs[] = {st->layer_data, st->embedding, st->final_norm, st->xb, st->q,
                     st->k,          st->v,         st->att,        st->hb, st->hb2,
                     st->scores,     st->logit_x,   st->unpack};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        mdi_free_floats(bufs[i]);
    if (st->output != st->embedding)
        mdi_free_floats(st->output);
    free(st->layers);
    mdi_kv_free(&st->kv);
    mdi_rope_free(&st->rope);
    memset(st, 0, sizeof *st);
}

void mdi_stage_embed(const mdi_stage *st, const int32_t *tokens, size_t n, float *x)
{
    size_t dim = (size_t)st->cfg.dim;
    for (size_t i = 0; i < n; i++)
        memcpy(x + i * dim, st->embedding + (size_t)tokens[i] * dim, dim * sizeof(float));
}

/* Attention of item i = (row i / per_row, heads [hb * (i % per_row), + hb))
 * of KV layer `layer`, with `scores` as the scratch of the calling thread. */
static void attend(mdi_stage *st, size_t layer, const mdi_row *rows, size_t hb, size_t i,
                   float *scores)
{
    mdi_attn_shape shape = attn_shape(&st->cfg);
    size_t qd = mdi_config_q_dim(&st->cfg), per_row = shape.n_heads / hb;
    size_t r = i / per_row, h = i % per_row * hb;
    mdi_attention(st->att + r * qd, st->q + r * qd, &st->kv, (size_t)rows[r].slot, layer,
                  (size_t)rows[r].pos, &shape, h, h + hb, scores);
}

/* Attention for every row of KV layer `layer`, in items of hb query heads
 * spread over the stage's threads: the heads of one KV head, which
 * mdi_attention computes reading each key and value once for all of them,
 * or half as many (and so on) while there are fewer than two items per
 * thread. One thread opens no parallel region: libgomp allocates a team for
 * every region of one thread, even under if (0), and this runs on every
 * token (test/e2e_alloc.sh). */
static void attention_rows(mdi_stage *st, size_t layer, const mdi_row *rows, size_t n)
{
    mdi_attn_shape shape = attn_shape(&st->cfg);
    size_t threads = (size_t)st->p.n_threads, hb = mdi_attn_heads_at_once(&shape, shape.n_heads);
    while (threads > 1 && hb % 2 == 0 && n * (shape.n_heads / hb) < 2 * threads)
        hb /= 2;
    long total = (long)(n * (shape.n_heads / hb));
    if (threads <= 1) {
        for (long i = 0; i < total; i++)
            attend(st, layer, rows, hb, (size_t)i, st->scores);
        return;
    }
    size_t per_thread = st->p.max_pos * hb;
#pragma omp parallel for num_threads(st->p.n_threads) schedule(static)
    for (long i = 0; i < total; i++)
        attend(st, layer, rows, hb, (size_t)i,
               st->scores + (size_t)omp_get_thread_num() * per_thread);
}

/* y (n, d) = beta * y + x (n, in) @ W^T: streamed for rows [0, ns), BLIS for
 * the rest, unless every call of this stage is small enough to stream faster
 * (decided on max_rows, not on n, so that a row's kernel does not depend on
 * the rows beside it). */
static void project(const mdi_stage *st, float *y, const float *x, const float *w, size_t n,
                    size_t ns, size_t in, size_t d, float beta)
{
    size_t panel = st->packed ? mdi_weight_panel(in, (size_t)st->packed) : 0;
    if (mdi_stage_prompt_streams(st))
        ns = n;
    mdi_matmul_stream(y, x, w, ns, in, d, beta, panel, st->p.n_threads);
    if (n > ns)
        mdi_matmul(y + ns * d, x + ns * in, w, n - ns, in, d, beta, panel, st->unpack);
}

/* Attention half of local layer l on x (n, dim) in place; rows [0, ns) are streamed. */
static void attention_forward(mdi_stage *st, size_t l, float *x, const mdi_row *rows, size_t n,
                              size_t ns)
{
    const mdi_config *c = &st->cfg;
    const mdi_layer_weights *w = &st->layers[l];
    size_t dim = (size_t)c->dim, qd = mdi_config_q_dim(c), kvd = mdi_config_kv_dim(c);
    size_t kl = kv_layer(st, l);

    // xb = rmsnorm(x); q, k, v = xb @ (wq, wk, wv)^T
    for (size_t r = 0; r < n; r++)
        mdi_rmsnorm(st->xb + r * dim, x + r * dim, w->attn_norm, dim, c->norm_eps);
    project(st, st->q, st->xb, w->wq, n, ns, dim, qd, 0.0f);
    project(st, st->k, st->xb, w->wk, n, ns, dim, kvd, 0.0f);
    project(st, st->v, st->xb, w->wv, n, ns, dim, kvd, 0.0f);
    // rotate q and k to their positions; append k, v to the sample's cache
    for (size_t r = 0; r < n; r++) {
        size_t slot = (size_t)rows[r].slot, pos = (size_t)rows[r].pos;
        mdi_rope_apply(&st->rope, st->q + r * qd, (size_t)c->n_heads, pos);
        mdi_rope_apply(&st->rope, st->k + r * kvd, (size_t)c->n_kv_heads, pos);
        memcpy(mdi_kv_key(&st->kv, slot, kl, pos), st->k + r * kvd, kvd * sizeof(float));
        memcpy(mdi_kv_value(&st->kv, slot, kl, pos), st->v + r * kvd, kvd * sizeof(float));
    }
    attention_rows(st, kl, rows, n);
    // x += att @ wo^T
    project(st, x, st->att, w->wo, n, ns, qd, dim, 1.0f);
}

/* MLP half of local layer l: x += (silu(xb @ w1^T) * (xb @ w3^T)) @ w2^T with
 * xb = rmsnorm(x). */
static void mlp_forward(mdi_stage *st, size_t l, float *x, size_t n, size_t ns)
{
    const mdi_config *c = &st->cfg;
    const mdi_layer_weights *w = &st->layers[l];
    size_t dim = (size_t)c->dim, hid = (size_t)c->hidden_dim;

    for (size_t r = 0; r < n; r++)
        mdi_rmsnorm(st->xb + r * dim, x + r * dim, w->ffn_norm, dim, c->norm_eps);
    project(st, st->hb, st->xb, w->w1, n, ns, dim, hid, 0.0f);
    project(st, st->hb2, st->xb, w->w3, n, ns, dim, hid, 0.0f);
    mdi_swiglu(st->hb, st->hb2, n * hid);
    project(st, x, st->hb, w->w2, n, ns, hid, dim, 1.0f);
}

void mdi_stage_forward_mixed(mdi_stage *st, float *x, const mdi_row *rows, size_t n_rows,
                             size_t n_stream)
{
    for (size_t l = 0; l < (size_t)mdi_stage_n_layers(st); l++) {
        if (st->layers[l].wq)
            attention_forward(st, l, x, rows, n_rows, n_stream);
        if (st->layers[l].w1)
            mlp_forward(st, l, x, n_rows, n_stream);
    }
}

void mdi_stage_forward(mdi_stage *st, float *x, const mdi_row *rows, size_t n_rows)
{
    mdi_stage_forward_mixed(st, x, rows, n_rows, 0);
}

void mdi_stage_logits(mdi_stage *st, const float *x, size_t n, float *logits)
{
    size_t dim = (size_t)st->cfg.dim;
    for (size_t i = 0; i < n; i++)
        mdi_rmsnorm(st->logit_x + i * dim, x + i * dim, st->final_norm, dim, st->cfg.norm_eps);
    size_t panel = st->packed && !st->cfg.tied_head ? mdi_weight_panel(dim, (size_t)st->packed) : 0;
    mdi_matmul_stream(logits, st->logit_x, st->output, n, dim, (size_t)st->cfg.vocab_size, 0.0f,
                      panel, st->p.n_threads);
}

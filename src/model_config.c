/* Validation and size arithmetic for mdi_config. */
#include "mdi/model_config.h"

#include <math.h>

const char *mdi_tensor_name(mdi_tensor_kind k)
{
    switch (k) {
#define MDI_TENSOR_NAME(e, name, scope, rows, cols) \
    case e:                                         \
        return name;
        MDI_TENSOR_LIST(MDI_TENSOR_NAME)
#undef MDI_TENSOR_NAME
    default:
        return "?";
    }
}

mdi_tensor_scope mdi_tensor_scope_of(mdi_tensor_kind k)
{
    switch (k) {
#define MDI_TENSOR_SCOPE(e, name, scope, rows, cols) \
    case e:                                          \
        return scope;
        MDI_TENSOR_LIST(MDI_TENSOR_SCOPE)
#undef MDI_TENSOR_SCOPE
    default:
        return MDI_SCOPE_EXTRA;
    }
}

void mdi_tensor_shape(const mdi_config *c, mdi_tensor_kind k, size_t *r, size_t *cl)
{
    int64_t rows = 0, cols = 0;
    switch (k) {
#define MDI_TENSOR_SHAPE(e, name, scope, rw, cw) \
    case e:                                      \
        rows = (rw);                             \
        cols = (cw);                             \
        break;
        MDI_TENSOR_LIST(MDI_TENSOR_SHAPE)
#undef MDI_TENSOR_SHAPE
    default:
        break;
    }
    *r = (size_t)rows;
    *cl = (size_t)cols;
}

int mdi_tensor_present(const mdi_config *c, mdi_tensor_kind k)
{
    return !(k == MDI_T_OUTPUT && c->tied_head);
}

int mdi_tensor_is_matrix(mdi_tensor_kind k)
{
    return !(k == MDI_T_ATTN_NORM || k == MDI_T_FFN_NORM || k == MDI_T_FINAL_NORM);
}

static mdi_status check_int(const char *name, int32_t v, int32_t lo, int32_t hi, mdi_err *err)
{
    if (v < lo || v > hi)
        return mdi_errf(err, MDI_ERR_RANGE, "%s = %d is outside [%d, %d]", name, (int)v, (int)lo,
                        (int)hi);
    return MDI_OK;
}

static const mdi_config_names our_names = {"dim",        "hidden_dim", "n_layers",   "n_heads",
                                           "n_kv_heads", "head_dim",   "vocab_size", "max_seq_len",
                                           "tied_head",  "rope_theta", "norm_eps"};

mdi_status mdi_config_validate(const mdi_config *c, mdi_err *err)
{
    return mdi_config_validate_as(c, NULL, err);
}

mdi_status mdi_config_validate_as(const mdi_config *c, const mdi_config_names *names, mdi_err *err)
{
    const mdi_config_names *n = names ? names : &our_names;
    mdi_status s;
    if ((s = check_int(n->dim, c->dim, 1, MDI_MAX_DIM, err)) ||
        (s = check_int(n->hidden_dim, c->hidden_dim, 1, MDI_MAX_HIDDEN, err)) ||
        (s = check_int(n->n_layers, c->n_layers, 1, MDI_MAX_LAYERS, err)) ||
        (s = check_int(n->n_heads, c->n_heads, 1, MDI_MAX_HEADS, err)) ||
        (s = check_int(n->n_kv_heads, c->n_kv_heads, 1, c->n_heads, err)) ||
        (s = check_int(n->head_dim, c->head_dim, 2, MDI_MAX_HEAD_DIM, err)) ||
        (s = check_int(n->vocab_size, c->vocab_size, 1, MDI_MAX_VOCAB, err)) ||
        (s = check_int(n->max_seq_len, c->max_seq_len, 1, MDI_MAX_SEQ, err)) ||
        (s = check_int(n->tied_head, c->tied_head, 0, 1, err)))
        return s;
    if (c->n_heads % c->n_kv_heads != 0)
        return mdi_errf(err, MDI_ERR_RANGE, "%s = %d is not a multiple of %s = %d", n->n_heads,
                        (int)c->n_heads, n->n_kv_heads, (int)c->n_kv_heads);
    if (c->head_dim % 2 != 0)
        return mdi_errf(err, MDI_ERR_RANGE, "%s = %d is odd; RoPE needs pairs", n->head_dim,
                        (int)c->head_dim);
    if ((int64_t)c->n_heads * c->head_dim > MDI_MAX_DIM * 4)
        return mdi_errf(err, MDI_ERR_RANGE, "%s * %s = %lld is too large", n->n_heads, n->head_dim,
                        (long long)c->n_heads * c->head_dim);
    if (!isfinite(c->rope_theta) || c->rope_theta <= 1.0f)
        return mdi_errf(err, MDI_ERR_RANGE, "%s = %g must be finite and > 1", n->rope_theta,
                        (double)c->rope_theta);
    if (!isfinite(c->norm_eps) || c->norm_eps <= 0.0f || c->norm_eps > 1.0f)
        return mdi_errf(err, MDI_ERR_RANGE, "%s = %g must be in (0, 1]", n->norm_eps,
                        (double)c->norm_eps);
    return MDI_OK;
}

int mdi_tensor_half(mdi_tensor_kind k)
{
    if (mdi_tensor_scope_of(k) != MDI_SCOPE_LAYER)
        return -1;
    return k < MDI_T_FFN_NORM ? MDI_HALF_ATTN : MDI_HALF_MLP;
}

size_t mdi_config_half_params(const mdi_config *c, int half)
{
    size_t total = 0, r, cl;
    for (int k = 0; k < MDI_T_COUNT; k++) {
        if (mdi_tensor_half((mdi_tensor_kind)k) != half)
            continue;
        mdi_tensor_shape(c, (mdi_tensor_kind)k, &r, &cl);
        total += r * cl;
    }
    return total;
}

size_t mdi_config_layer_params(const mdi_config *c)
{
    return mdi_config_half_params(c, MDI_HALF_ATTN) + mdi_config_half_params(c, MDI_HALF_MLP);
}

size_t mdi_config_head_params(const mdi_config *c)
{
    return (size_t)c->vocab_size * (size_t)c->dim + (size_t)c->dim;
}

size_t mdi_config_extra_params(const mdi_config *c)
{
    size_t total = 0, r, cl;
    for (int k = 0; k < MDI_T_COUNT; k++) {
        if (mdi_tensor_scope_of((mdi_tensor_kind)k) != MDI_SCOPE_EXTRA ||
            !mdi_tensor_present(c, (mdi_tensor_kind)k))
            continue;
        mdi_tensor_shape(c, (mdi_tensor_kind)k, &r, &cl);
        total += r * cl;
    }
    return total;
}

size_t mdi_config_kv_dim(const mdi_config *c)
{
    return (size_t)c->n_kv_heads * (size_t)c->head_dim;
}

size_t mdi_config_q_dim(const mdi_config *c)
{
    return (size_t)c->n_heads * (size_t)c->head_dim;
}

int mdi_config_equal(const mdi_config *a, const mdi_config *b)
{
    return a->dim == b->dim && a->hidden_dim == b->hidden_dim && a->n_layers == b->n_layers &&
           a->n_heads == b->n_heads && a->n_kv_heads == b->n_kv_heads &&
           a->head_dim == b->head_dim && a->vocab_size == b->vocab_size &&
           a->max_seq_len == b->max_seq_len && a->rope_theta == b->rope_theta &&
           a->norm_eps == b->norm_eps && a->tied_head == b->tied_head;
}

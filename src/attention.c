/* KV cache storage and grouped-query attention for one query row. */
#include "mdi/attention.h"

#include <math.h>
#include <string.h>

#include "mdi/tensor.h"

mdi_status mdi_kv_init(mdi_kv_cache *kv, size_t n_slots, size_t n_layers, size_t max_pos,
                       size_t kv_dim, mdi_err *err)
{
    memset(kv, 0, sizeof *kv);
    size_t n = n_slots;
    if (n_slots == 0 || n_layers == 0 || max_pos == 0 || kv_dim == 0)
        return mdi_errf(err, MDI_ERR_ARG, "KV cache dimensions must be positive");
    if (n > SIZE_MAX / n_layers || (n *= n_layers) > SIZE_MAX / max_pos ||
        (n *= max_pos) > SIZE_MAX / kv_dim / sizeof(float) / 2)
        return mdi_errf(err, MDI_ERR_RANGE,
                        "KV cache of %zu slots x %zu layers x %zu positions "
                        "overflows",
                        n_slots, n_layers, max_pos);
    n *= kv_dim;
    kv->k = mdi_alloc_floats(n);
    kv->v = mdi_alloc_floats(n);
    if (!kv->k || !kv->v) {
        mdi_kv_free(kv);
        return mdi_errf(err, MDI_ERR_NOMEM, "cannot allocate a KV cache of %.1f MiB",
                        2.0 * (double)n * sizeof(float) / (1 << 20));
    }
    memset(kv->k, 0, n * sizeof(float));
    memset(kv->v, 0, n * sizeof(float));
    kv->n_slots = n_slots;
    kv->n_layers = n_layers;
    kv->max_pos = max_pos;
    kv->kv_dim = kv_dim;
    return MDI_OK;
}

void mdi_kv_free(mdi_kv_cache *kv)
{
    mdi_free_floats(kv->k);
    mdi_free_floats(kv->v);
    kv->k = kv->v = NULL;
}

size_t mdi_kv_bytes(const mdi_kv_cache *kv)
{
    return 2 * kv->n_slots * kv->n_layers * kv->max_pos * kv->kv_dim * sizeof(float);
}

static size_t kv_offset(const mdi_kv_cache *kv, size_t slot, size_t layer, size_t pos)
{
    return ((slot * kv->n_layers + layer) * kv->max_pos + pos) * kv->kv_dim;
}

float *mdi_kv_key(const mdi_kv_cache *kv, size_t slot, size_t layer, size_t pos)
{
    return kv->k + kv_offset(kv, slot, layer, pos);
}

float *mdi_kv_value(const mdi_kv_cache *kv, size_t slot, size_t layer, size_t pos)
{
    return kv->v + kv_offset(kv, slot, layer, pos);
}

void mdi_attention(float *out, const float *q, const mdi_kv_cache *kv, size_t slot, size_t layer,
                   size_t pos, const mdi_attn_shape *shape, size_t h0, size_t h1, float *scores)
{
    size_t hd = shape->head_dim, group = shape->n_heads / shape->n_kv_heads;
    float scale = 1.0f / sqrtf((float)hd);
    const float *k0 = mdi_kv_key(kv, slot, layer, 0);
    const float *v0 = mdi_kv_value(kv, slot, layer, 0);
    size_t n = pos + 1;
    for (size_t h = h0, he; h < h1; h = he) { /* the heads of [h0, h1) that share KV head g */
        size_t g = h / group, m;
        he = (g + 1) * group < h1 ? (g + 1) * group : h1;
        m = he - h;
        mdi_dot_rows(scores, n, q + h * hd, m, k0 + g * hd, kv->kv_dim, n, hd, scale);
        for (size_t a = 0; a < m; a++)
            mdi_softmax(scores + a * n, n);
        mdi_weighted_rows(out + h * hd, scores, n, m, v0 + g * hd, kv->kv_dim, n, hd);
    }
}

size_t mdi_attn_heads_at_once(const mdi_attn_shape *shape, size_t heads)
{
    size_t group = shape->n_heads / shape->n_kv_heads;
    return heads < group ? heads : group;
}

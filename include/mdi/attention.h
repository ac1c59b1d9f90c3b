/* KV cache (one slot per sample, n_kv_heads wide) and grouped-query attention. */
#ifndef MDI_ATTENTION_H
#define MDI_ATTENTION_H

#include <stddef.h>
#include <stdint.h>

#include "mdi/status.h"

/* Keys and values of this rank's layers for every sample slot.
 * Layout (slot, layer, pos, kv_dim): one sample's history for one layer is
 * contiguous, so attention streams it front to back. */
typedef struct mdi_kv_cache {
    size_t n_slots;  /* samples */
    size_t n_layers; /* layers held by this rank */
    size_t max_pos;  /* positions per slot */
    size_t kv_dim;   /* n_kv_heads * head_dim */
    float *k;        /* (n_slots, n_layers, max_pos, kv_dim) */
    float *v;        /* same shape */
} mdi_kv_cache;

/* Allocate a zeroed cache; sizes are checked for overflow. */
mdi_status mdi_kv_init(mdi_kv_cache *kv, size_t n_slots, size_t n_layers, size_t max_pos,
                       size_t kv_dim, mdi_err *err);
void mdi_kv_free(mdi_kv_cache *kv);
/* Bytes the cache holds (k and v). */
size_t mdi_kv_bytes(const mdi_kv_cache *kv);

/* Pointer to the key (or value) row of (slot, layer, pos). */
float *mdi_kv_key(const mdi_kv_cache *kv, size_t slot, size_t layer, size_t pos);
float *mdi_kv_value(const mdi_kv_cache *kv, size_t slot, size_t layer, size_t pos);

/* Geometry of one attention call. */
typedef struct mdi_attn_shape {
    size_t n_heads;
    size_t n_kv_heads;
    size_t head_dim;
} mdi_attn_shape;

/* Causal attention of one query row at position pos against positions
 * [0, pos] of (slot, layer), for query heads [h0, h1):
 * q (n_heads*head_dim) -> out (n_heads*head_dim), only those heads written.
 * Query head h reads KV head h / (n_heads / n_kv_heads); the heads of one KV
 * head are computed together, each block of keys and values read once for
 * all of them. scores has room for (pos + 1) * mdi_attn_heads_at_once(shape,
 * h1 - h0) floats. */
void mdi_attention(float *out, const float *q, const mdi_kv_cache *kv, size_t slot, size_t layer,
                   size_t pos, const mdi_attn_shape *shape, size_t h0, size_t h1, float *scores);

/* The most query heads mdi_attention computes at once for a range of
 * `heads` heads: those of one KV head, at most. */
size_t mdi_attn_heads_at_once(const mdi_attn_shape *shape, size_t heads);

#endif /* MDI_ATTENTION_H */

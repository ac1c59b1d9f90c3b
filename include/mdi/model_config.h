/* Model hyper-parameters, the catalogue of tensors, and byte counts.
 *
 * Plain data: no I/O, no MPI. The loader, the planner, the converter and the
 * engine all describe tensors through mdi_tensor_kind so they cannot disagree
 * about names or shapes. */
#ifndef MDI_MODEL_CONFIG_H
#define MDI_MODEL_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "mdi/status.h"

/* Hard limits that keep every size product far from overflow. */
#define MDI_MAX_DIM (1 << 16)
#define MDI_MAX_HIDDEN (1 << 18)
#define MDI_MAX_LAYERS 4096
#define MDI_MAX_HEADS 1024
#define MDI_MAX_HEAD_DIM 1024
#define MDI_MAX_VOCAB (1 << 22)
#define MDI_MAX_SEQ (1 << 20)

typedef struct mdi_config {
    int32_t dim;         /* model width */
    int32_t hidden_dim;  /* SwiGLU inner width */
    int32_t n_layers;    /* transformer blocks */
    int32_t n_heads;     /* query heads */
    int32_t n_kv_heads;  /* key/value heads (GQA); divides n_heads */
    int32_t head_dim;    /* width of one head; n_heads * head_dim may differ from dim */
    int32_t vocab_size;  /* rows of the embedding and of the output head */
    int32_t max_seq_len; /* context length in positions */
    float rope_theta;    /* RoPE base, e.g. 10000 */
    float norm_eps;      /* RMSNorm epsilon, e.g. 1e-5 */
    int32_t tied_head;   /* 1: output head is the token embedding */
} mdi_config;

/* Everything a file says about itself (its root attributes), validated. */
typedef struct mdi_shard_info {
    int32_t format_version;
    char model_id[17];
    mdi_config cfg;
    int32_t layer_first, layer_last; /* layers [first, last) this file holds all or half of */
    int32_t half_first, half_last;   /* half-layers [first, last) held by this file */
    int32_t shard_index, shard_count;
    char dtype[8];
    int has_extras; /* half_first == 0: embedding, norm, head, tokenizer */
} mdi_shard_info;

/* Whether a tensor belongs to a layer or to the extras of the layer-0 shard. */
typedef enum { MDI_SCOPE_LAYER = 0, MDI_SCOPE_EXTRA = 1 } mdi_tensor_scope;

/* X(enum, dataset name, scope, rows, cols); rows/cols are expressions of `c`
 * (a const mdi_config *). Matrices are (out, in) row-major; vectors have cols 1. */
#define MDI_TENSOR_LIST(X)                                                           \
    X(MDI_T_ATTN_NORM, "attn_norm", MDI_SCOPE_LAYER, c->dim, 1)                      \
    X(MDI_T_WQ, "wq", MDI_SCOPE_LAYER, (int64_t)c->n_heads * c->head_dim, c->dim)    \
    X(MDI_T_WK, "wk", MDI_SCOPE_LAYER, (int64_t)c->n_kv_heads * c->head_dim, c->dim) \
    X(MDI_T_WV, "wv", MDI_SCOPE_LAYER, (int64_t)c->n_kv_heads * c->head_dim, c->dim) \
    X(MDI_T_WO, "wo", MDI_SCOPE_LAYER, c->dim, (int64_t)c->n_heads * c->head_dim)    \
    X(MDI_T_FFN_NORM, "ffn_norm", MDI_SCOPE_LAYER, c->dim, 1)                        \
    X(MDI_T_W1, "w1", MDI_SCOPE_LAYER, c->hidden_dim, c->dim)                        \
    X(MDI_T_W2, "w2", MDI_SCOPE_LAYER, c->dim, c->hidden_dim)                        \
    X(MDI_T_W3, "w3", MDI_SCOPE_LAYER, c->hidden_dim, c->dim)                        \
    X(MDI_T_EMBED, "token_embedding", MDI_SCOPE_EXTRA, c->vocab_size, c->dim)        \
    X(MDI_T_FINAL_NORM, "final_norm", MDI_SCOPE_EXTRA, c->dim, 1)                    \
    X(MDI_T_OUTPUT, "output", MDI_SCOPE_EXTRA, c->vocab_size, c->dim)

typedef enum {
#define MDI_TENSOR_ENUM(e, name, scope, rows, cols) e,
    MDI_TENSOR_LIST(MDI_TENSOR_ENUM)
#undef MDI_TENSOR_ENUM
        MDI_T_COUNT
} mdi_tensor_kind;

/* Dataset name of a tensor kind ("wq"). */
const char *mdi_tensor_name(mdi_tensor_kind k);
mdi_tensor_scope mdi_tensor_scope_of(mdi_tensor_kind k);
/* Shape of tensor k for config c: rows and cols (cols == 1 for vectors). */
void mdi_tensor_shape(const mdi_config *c, mdi_tensor_kind k, size_t *rows, size_t *cols);
/* 1 if tensor k is stored for config c (the output head is absent when tied). */
int mdi_tensor_present(const mdi_config *c, mdi_tensor_kind k);
/* Whether a tensor is stored as a matrix (2-D dataset) rather than a vector. */
int mdi_tensor_is_matrix(mdi_tensor_kind k);

/* Half-layers, the unit of placement: half-layer 2l is layer l's attention
 * (attn_norm, wq, wk, wv, wo), half-layer 2l + 1 its MLP (ffn_norm, w1, w2,
 * w3). A model has 2 * n_layers of them. */
#define MDI_HALF_ATTN 0
#define MDI_HALF_MLP 1
#define MDI_MAX_HALVES (2 * MDI_MAX_LAYERS)
/* MDI_HALF_ATTN or MDI_HALF_MLP for a layer tensor; -1 for the extras. */
int mdi_tensor_half(mdi_tensor_kind k);

/* Check every field is in range and consistent (n_kv_heads divides n_heads, ...). */
mdi_status mdi_config_validate(const mdi_config *c, mdi_err *err);

/* The fields' names in a source format (config.json keys, GGUF metadata
 * keys), so that a converter's messages name what its user wrote. */
typedef struct mdi_config_names {
    const char *dim, *hidden_dim, *n_layers, *n_heads, *n_kv_heads, *head_dim, *vocab_size,
        *max_seq_len, *tied_head, *rope_theta, *norm_eps;
} mdi_config_names;
/* mdi_config_validate, with names (NULL: ours) in its messages. */
mdi_status mdi_config_validate_as(const mdi_config *c, const mdi_config_names *names, mdi_err *err);

/* Parameter counts (elements, not bytes). */
size_t mdi_config_layer_params(const mdi_config *c);
size_t mdi_config_extra_params(const mdi_config *c); /* embedding, final norm, head */
/* One half of a layer (MDI_HALF_ATTN or MDI_HALF_MLP); the two sum to a layer. */
size_t mdi_config_half_params(const mdi_config *c, int half);
/* Weights the extras read per generated token: the final norm and the output
 * head (vocab x dim, tied or not); the embedding is only looked up. */
size_t mdi_config_head_params(const mdi_config *c);
size_t mdi_config_kv_dim(const mdi_config *c); /* n_kv_heads * head_dim */
size_t mdi_config_q_dim(const mdi_config *c);  /* n_heads * head_dim */

/* 1 if both configs describe the same geometry, field by field. */
int mdi_config_equal(const mdi_config *a, const mdi_config *b);

#endif /* MDI_MODEL_CONFIG_H */

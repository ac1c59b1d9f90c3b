/* The part of the model one rank holds: a contiguous range of half-layers
 * (model_config.h: it may start with a layer's MLP and end with a layer's
 * attention), and on the rank that owns layer 0 the embedding, final norm and
 * output head; plus the KV cache of the attention it holds and the scratch
 * space of a forward pass.
 *
 * No MPI and no I/O: the loader fills the weights, the pipeline moves rows.
 * Everything is allocated by mdi_stage_init; the forward functions never allocate. */
#ifndef MDI_STAGE_H
#define MDI_STAGE_H

#include <stddef.h>
#include <stdint.h>

#include "mdi/attention.h"
#include "mdi/model_config.h"
#include "mdi/status.h"
#include "mdi/tensor.h"

/* Pointers into one layer's weights (all float32, shapes in MDI_TENSOR_LIST);
 * the pointers of a half the stage does not hold are NULL. */
typedef struct mdi_layer_weights {
    const float *attn_norm; /* (dim) */
    const float *wq;        /* (n_heads*head_dim, dim) */
    const float *wk;        /* (n_kv_heads*head_dim, dim) */
    const float *wv;        /* (n_kv_heads*head_dim, dim) */
    const float *wo;        /* (dim, n_heads*head_dim) */
    const float *ffn_norm;  /* (dim) */
    const float *w1;        /* (hidden_dim, dim) gate */
    const float *w2;        /* (dim, hidden_dim) down */
    const float *w3;        /* (hidden_dim, dim) up */
} mdi_layer_weights;

/* Which sample slot and position a row of activations belongs to. */
typedef struct mdi_row {
    int32_t slot;
    int32_t pos;
} mdi_row;

typedef struct mdi_stage_params {
    int32_t half_first; /* half-layers [half_first, half_last) of the whole model */
    int32_t half_last;
    int has_extras;        /* holds embedding, final norm, output head */
    size_t n_slots;        /* samples in flight (KV cache slots) */
    size_t max_pos;        /* positions per slot (<= max_seq_len) */
    size_t max_rows;       /* largest number of rows in one forward call */
    size_t max_logit_rows; /* rows for which logits are computed at once */
    int n_threads;
    int prompt_blis; /* 1: prompt rows always through BLIS sgemm (tests compare
                        the kernels); 0: as mdi_stage_forward_mixed says */
} mdi_stage_params;

typedef struct mdi_stage {
    mdi_config cfg;
    mdi_stage_params p;
    float *layer_data;         /* the held tensors, layer by layer in MDI_TENSOR_LIST order */
    mdi_layer_weights *layers; /* (n_local_layers) views into layer_data */
    float *embedding;          /* (vocab, dim) or NULL */
    float *final_norm;         /* (dim) or NULL */
    float *output;             /* (vocab, dim): own buffer, or == embedding when tied */
    int packed;                /* 0: row-major; else the activation rows per call the
                                  matrices are laid out for (mdi_stage_pack) */
    mdi_kv_cache kv;
    mdi_rope_table rope;
    /* scratch */
    float *xb;      /* (max_rows, dim) */
    float *q;       /* (max_rows, q_dim) */
    float *k;       /* (max_rows, kv_dim) */
    float *v;       /* (max_rows, kv_dim) */
    float *att;     /* (max_rows, q_dim) */
    float *hb;      /* (max_rows, hidden) */
    float *hb2;     /* (max_rows, hidden) */
    float *scores;  /* (n_threads, max_pos * query heads per KV head) */
    float *logit_x; /* (max_logit_rows, dim) */
    float *unpack;  /* a packed block for BLIS (mdi_matmul_scratch), or NULL */
} mdi_stage;

/* Allocate everything for params p (weights uninitialised). */
mdi_status mdi_stage_init(mdi_stage *st, const mdi_config *cfg, const mdi_stage_params *p,
                          mdi_err *err);
void mdi_stage_free(mdi_stage *st);

/* Layers the stage holds all or half of: [first, first + n). */
int32_t mdi_stage_first_layer(const mdi_stage *st);
int32_t mdi_stage_n_layers(const mdi_stage *st);
/* Where tensor k of local layer l lives inside layer_data (for the loader);
 * NULL for a half the stage does not hold and for a tied output head. A
 * matrix is row-major (rows, cols) until mdi_stage_pack. */
float *mdi_stage_tensor(mdi_stage *st, mdi_tensor_kind k, int32_t local_layer);
/* Once the weights are in: lay every matrix out packed for `rows`
 * activation rows per generated-token call (the group size), as
 * mdi_weight_panel says: column panels, rows in groups; not a tied head,
 * which is also the embedding table. For the streaming product's sake; a
 * no-op where mdi_weight_panel says row-major. The results do not change,
 * bit for bit. Takes MDI_PANEL_ROWS rows of scratch for the time, and keeps
 * a block's worth for BLIS if prompt rows go there
 * (mdi_stage_prompt_streams). */
mdi_status mdi_stage_pack(mdi_stage *st, size_t rows, mdi_err *err);
/* Weight bytes this stage holds. */
size_t mdi_stage_weight_bytes(const mdi_stage *st);
/* Weight bytes this stage reads per generated token: its half-layers, and on
 * rank 0 the final norm and head (the embedding is only looked up). */
size_t mdi_stage_step_bytes(const mdi_stage *st);
/* 1 if prompt rows stream like generated ones (mdi_stage_forward_mixed), 0 if
 * they go through BLIS sgemm. */
int mdi_stage_prompt_streams(const mdi_stage *st);

/* x (n, dim) = embedding rows of tokens (n). Tokens must be in [0, vocab). */
void mdi_stage_embed(const mdi_stage *st, const int32_t *tokens, size_t n, float *x);

/* Run this stage's layers on x (n_rows, dim) in place; rows[i] gives the slot
 * and position of row i (positions < max_pos; rows of one slot in increasing
 * position order). Writes the KV cache of those positions. */
void mdi_stage_forward(mdi_stage *st, float *x, const mdi_row *rows, size_t n_rows);

/* The same, where rows [0, n_stream) are generated tokens, whose matrix
 * products stream the weights (mdi_matmul_stream), and the rest are prompt
 * rows, which stream too when p.max_rows <= mdi_matmul_stream_max_rows()
 * (and p.prompt_blis is 0) and go through BLIS sgemm otherwise. The kernel
 * is thus fixed per stage and per kind of row. Through the streaming kernel a
 * row's result never depends on the other rows in the call; through BLIS it
 * does not with BLIS 0.9 here (test_stage_ref), though BLIS does not promise
 * it. */
void mdi_stage_forward_mixed(mdi_stage *st, float *x, const mdi_row *rows, size_t n_rows,
                             size_t n_stream);

/* logits (n, vocab) = head(final_norm(x rows)): x (n, dim), n <= max_logit_rows. */
void mdi_stage_logits(mdi_stage *st, const float *x, size_t n, float *logits);

#endif /* MDI_STAGE_H */

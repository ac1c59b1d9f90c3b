/* mdi-convert internals: a source of tensors in canonical form, and the
 * HDF5 writer that turns any source into a model file or a set of shards.
 *
 * Every reader (llama2.c, GGUF, Hugging Face, synthetic) fills a cv_source;
 * the writer only ever talks to cv_source, so adding a format never touches
 * the writer. Tensors come out as float32 in the canonical layout of
 * docs/FORMAT.md: (out, in) row-major, RoPE rows in interleaved-pair order. */
#ifndef MDI_CONVERT_H
#define MDI_CONVERT_H

#include <stddef.h>
#include <stdint.h>

#include "mdi/hash.h"
#include "mdi/model_config.h"
#include "mdi/plan.h"
#include "mdi/status.h"
#include "mdi/tokenizer.h"

typedef struct cv_source cv_source;

struct cv_source {
    mdi_config cfg;    /* validated geometry */
    mdi_vocab vocab;   /* owned; freed by cv_source_close */
    char model_id[17]; /* 16 hex digits + NUL, derived from the source content */
    const char *kind;  /* "llama2c", "gguf", "hf", "synthetic" (static string) */
    const char *path;  /* input path for messages (not owned; NULL: kind stands in) */
    void *impl;        /* reader state */
    /* Read tensor `kind` of layer `layer` (ignored for extras) as float32 into
     * out, which holds rows*cols floats of mdi_tensor_shape(). */
    mdi_status (*read)(cv_source *src, mdi_tensor_kind kind, int32_t layer, float *out,
                       mdi_err *err);
    /* Release impl (not vocab). May be NULL. */
    void (*close)(cv_source *src);
};

/* Free everything a source owns; safe on a zeroed struct. */
void cv_source_close(cv_source *src);

/* What the input path is, judged from its content (magic bytes), not its name. */
typedef enum {
    CV_INPUT_UNKNOWN = 0,
    CV_INPUT_LLAMA2C,
    CV_INPUT_GGUF,
    CV_INPUT_HF_DIR,
    CV_INPUT_LLAMA2C_AK42 /* llama2.c's newer export (magic "ak42"): recognised, refused */
} cv_input_kind;
cv_input_kind cv_detect(const char *path);

/* Readers. Each validates every length/offset/shape against the file size
 * before use and fails with a one-line message naming file and field. */
mdi_status cv_open_llama2c(const char *path, const char *tokenizer_path, cv_source *src,
                           mdi_err *err);
mdi_status cv_open_gguf(const char *path, cv_source *src, mdi_err *err);
mdi_status cv_open_hf(const char *dir, const char *tokenizer_path, cv_source *src, mdi_err *err);
/* spec: a preset name ("tinyllama-1.1b", "stories260k-geometry", ...) or a JSON
 * config file path; tokenizer_path optional (tokenizer.model or tokenizer.bin). */
mdi_status cv_open_synthetic(const char *spec, uint64_t seed, const char *tokenizer_path,
                             cv_source *src, mdi_err *err);

/* Tokenizer files into a vocab (vocab must be zeroed; caller frees). */
mdi_status cv_read_llama2c_tokenizer(const char *path, int32_t vocab_size, mdi_vocab *out,
                                     mdi_err *err);
/* Whether a piece is a byte piece, "<0xHH>" with upper-case hex digits. */
int cv_is_byte_piece(const uint8_t *p, size_t len);
mdi_status cv_read_spm_model(const char *path, mdi_vocab *out, mdi_err *err);
/* Any tokenizer file, by content: SentencePiece protobuf or llama2.c tokenizer.bin. */
/* An HF directory's tokenizer_config.json at path (absent: fine): refused
 * when add_bos_token is false or add_eos_token true, which mdi-llm does not do. */
mdi_status cv_check_tokenizer_config(const char *path, mdi_err *err);

mdi_status cv_read_tokenizer_file(const char *path, int32_t vocab_size, mdi_vocab *out,
                                  mdi_err *err);

typedef enum { CV_DTYPE_F32 = 0, CV_DTYPE_F16, CV_DTYPE_BF16 } cv_dtype;

typedef struct cv_write_opts {
    cv_dtype dtype;
    int32_t n_shards;     /* 0 or 1: one file; > 1: a directory of shards */
    const int32_t *split; /* optional explicit half-layers per shard (n_shards entries) */
    int quiet;            /* no progress output */
    mdi_balance balance;  /* without split: what the shards even out (zero: MDI_BALANCE_DEFAULT) */
} cv_write_opts;

/* Write src to out: one file when n_shards <= 1, else a directory of shards
 * named as in docs/FORMAT.md, each holding a half-layer range (plan.h) from
 * split or from mdi_plan_balanced(balance). Writes under a temporary name and
 * renames at the end; on failure nothing is left under `out`. */
mdi_status cv_write(cv_source *src, const char *out, const cv_write_opts *opts, mdi_err *err);

/* float32 -> f16 / bf16 with round-to-nearest-even (NaN stays NaN). */
uint16_t cv_f32_to_f16(float f);
uint16_t cv_f32_to_bf16(float f);
float cv_f16_to_f32(uint16_t h);
float cv_bf16_to_f32(uint16_t h);

/* pread exactly n bytes at off (retrying short reads); a short file is an
 * MDI_ERR_FORMAT naming path and offset. */
mdi_status cv_pread_full(int fd, void *buf, size_t n, uint64_t off, const char *path, mdi_err *err);
/* 1 when x narrows to a float32 without becoming 0 or infinite (NaN, infinities
 * and 0 pass through, for the config check to name); 0 when it overflows or
 * underflows, such as rope_theta 1e-300 or 1e39. */
int cv_fits_float(double x);
/* Little-endian int32 at p. */
int32_t cv_le_i32(const unsigned char *p);
/* Fold bytes [0, size) of fd into the FNV-1a hash *h (1 MiB at a time). */
mdi_status cv_hash_fd(int fd, uint64_t size, const char *path, uint64_t *h, mdi_err *err);
/* If name is prefix, a layer index below n_layers (decimal, no leading zeros)
 * and a dot, set *layer and return the rest of the name; else NULL. */
const char *cv_layer_suffix(const char *name, const char *prefix, int32_t n_layers, int32_t *layer);
/* The bytes [off, off + bytes) of tensor (kind, layer) in file `file`. */
typedef struct cv_extent {
    uint64_t off, bytes;
    size_t file;
    int32_t kind, layer;
} cv_extent;
/* Sort ext (n) by file and offset. Returns 1 with *a before *b if two
 * extents of one file share a byte (each tensor must have bytes of its own:
 * a header that points two tensors at one place would load the same weights
 * twice without a word), else 0. */
int cv_find_overlap(cv_extent *ext, size_t n, const cv_extent **a, const cv_extent **b);
/* What a reader knows of tensor (kind, layer): 1 with e->off, e->bytes and
 * e->file set if the file has it, else 0. */
typedef int (*cv_extent_fn)(const void *ctx, mdi_tensor_kind kind, int32_t layer, cv_extent *e);
/* Collect the extent of every tensor `get` reports (the per-layer kinds for
 * each of cfg's layers, the others once) and check them with
 * cv_find_overlap. Returns 0 if no two overlap, 1 with copies of the first
 * overlapping pair in *a and *b, or -1 if out of memory. */
int cv_check_overlap(const mdi_config *cfg, cv_extent_fn get, const void *ctx, cv_extent *a,
                     cv_extent *b);
/* A model id: h as 16 lower-case hex digits. */
void cv_model_id(uint64_t h, char id[17]);

#endif /* MDI_CONVERT_H */

/* GGUF metadata parsing, private to the GGUF reader (read_gguf.c).
 *
 * Layout (little-endian): "GGUF", u32 version, u64 n_tensors, u64 n_kv; n_kv
 * pairs (string key, u32 value type, value); n_tensors infos (string name,
 * u32 n_dims, u64 ne[n_dims] innermost first, u32 ggml type, u64 offset);
 * tensor data from the next multiple of general.alignment (default 32).
 * A string is u64 length + bytes; an array is u32 element type + u64 count +
 * elements.
 *
 * gguf_meta.c reads the header and key/value pairs through a bounds-checked
 * cursor and builds the model geometry; read_gguf.c reads the tensor infos,
 * the tokenizer arrays and the tensor data. */
#ifndef MDI_GGUF_META_H
#define MDI_GGUF_META_H

#include <stddef.h>
#include <stdint.h>

#include "convert.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the GGUF reader assumes a little-endian host"
#endif

#define GGUF_BUF_BYTES ((size_t)1 << 16)

/* GGUF metadata value types. */
enum { GT_U8, GT_I8, GT_U16, GT_I16, GT_U32, GT_I32, GT_F32, GT_BOOL, GT_STRING, GT_ARRAY };
enum { GT_U64 = 10, GT_I64, GT_F64, GT_COUNT };

/* Buffered sequential reader over the header, with bounds checks against the file size. */
typedef struct gcur {
    int fd;
    const char *path;
    uint64_t size;    /* file size */
    uint64_t pos;     /* logical position */
    uint64_t buf_pos; /* file offset of buf[0] */
    size_t buf_len;
    mdi_err *err;
    unsigned char buf[GGUF_BUF_BYTES];
} gcur;

/* A numeric metadata value, kept with its GGUF type for checks. */
typedef struct gnum {
    int present;
    uint32_t type;
    int64_t i; /* integer and bool types */
    double f;  /* every numeric type */
} gnum;

/* Where a tokenizer array sits in the file (positioned at its first element). */
typedef struct garr {
    int present;
    uint32_t elem;
    uint64_t n, pos, str_bytes;
} garr;

/* Metadata keys read as numbers: X(enum, key). */
#define GGUF_NUM_KEYS(X)                               \
    X(K_DIM, "llama.embedding_length")                 \
    X(K_HIDDEN, "llama.feed_forward_length")           \
    X(K_LAYERS, "llama.block_count")                   \
    X(K_HEADS, "llama.attention.head_count")           \
    X(K_KV_HEADS, "llama.attention.head_count_kv")     \
    X(K_CTX, "llama.context_length")                   \
    X(K_THETA, "llama.rope.freq_base")                 \
    X(K_EPS, "llama.attention.layer_norm_rms_epsilon") \
    X(K_ROPE_DIM, "llama.rope.dimension_count")        \
    X(K_KEY_LEN, "llama.attention.key_length")         \
    X(K_VALUE_LEN, "llama.attention.value_length")     \
    X(K_SCALE_FACTOR, "llama.rope.scaling.factor")     \
    X(K_SCALE_LINEAR, "llama.rope.scale_linear")       \
    X(K_VOCAB, "llama.vocab_size")                     \
    X(K_ALIGN, "general.alignment")                    \
    X(K_BOS, "tokenizer.ggml.bos_token_id")            \
    X(K_EOS, "tokenizer.ggml.eos_token_id")            \
    X(K_UNK, "tokenizer.ggml.unknown_token_id")        \
    X(K_ADD_SPACE, "tokenizer.ggml.add_space_prefix")  \
    X(K_ADD_BOS, "tokenizer.ggml.add_bos_token")       \
    X(K_ADD_EOS, "tokenizer.ggml.add_eos_token")

typedef enum {
#define GGUF_KEY_ENUM(e, key) e,
    GGUF_NUM_KEYS(GGUF_KEY_ENUM)
#undef GGUF_KEY_ENUM
        K_NUM_COUNT
} gnum_key;

/* Metadata keys read as short strings. */
typedef enum { S_ARCH, S_TOK_MODEL, S_ROPE_SCALING, S_COUNT } gstr_key;

typedef struct gmeta {
    gnum num[K_NUM_COUNT];
    char str[S_COUNT][128];
    int has_str[S_COUNT];
    garr tokens, scores, types;
} gmeta;

/* Record an error about the file being parsed: "path: message"; returns s. */
mdi_status cv_gguf_err(const gcur *c, mdi_status s, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* Copy n bytes at the cursor into dst and advance; `what` names them in errors. */
mdi_status cv_gguf_cur_read(gcur *c, void *dst, size_t n, const char *what);

/* Read a string into buf (cap bytes incl. NUL); longer strings are an error. */
mdi_status cv_gguf_cur_str(gcur *c, char *buf, size_t cap, const char *what);

/* Metadata key of k, e.g. "llama.block_count". */
const char *cv_gguf_key_name(gnum_key k);

/* Read magic, version, counts and every key/value pair into m (zeroed by the caller). */
mdi_status cv_gguf_read_header(gcur *c, gmeta *m, uint64_t *n_tensors, uint64_t *align);

/* Build and validate the model geometry from the metadata (tied_head 1 until
 * the tensor infos show an output.weight). */
mdi_status cv_gguf_meta_config(const gcur *c, const gmeta *m, mdi_config *cfg);

#endif /* MDI_GGUF_META_H */

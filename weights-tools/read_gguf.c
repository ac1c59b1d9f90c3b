/* Reader for GGUF v2/v3 files of the "llama" architecture (F32/F16/BF16 tensors).
 *
 * Layout (little-endian): "GGUF", u32 version, u64 n_tensors, u64 n_kv; n_kv
 * pairs (string key, u32 value type, value); n_tensors infos (string name,
 * u32 n_dims, u64 ne[n_dims] innermost first, u32 ggml type, u64 offset);
 * tensor data from the next multiple of general.alignment (default 32).
 * A string is u64 length + bytes; an array is u32 element type + u64 count +
 * elements. A 2-D tensor with ne = [in, out] is exactly our (out, in)
 * row-major matrix, and llama.cpp's converter stores q/k in the interleaved
 * (Meta) RoPE order, so tensors are read as they are. */
#include "convert.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the GGUF reader assumes a little-endian host"
#endif

#define GGUF_BUF_BYTES ((size_t)1 << 16)
#define GGUF_HASH_CHUNK ((size_t)1 << 20)
#define GGUF_MAX_KEY 65536
#define GGUF_MAX_NAME 1024
#define GGUF_MAX_ARRAY_DEPTH 4

/* GGUF metadata value types. */
enum { GT_U8, GT_I8, GT_U16, GT_I16, GT_U32, GT_I32, GT_F32, GT_BOOL, GT_STRING, GT_ARRAY };
enum { GT_U64 = 10, GT_I64, GT_F64, GT_COUNT };
/* ggml tensor types we read. */
enum { GGML_F32 = 0, GGML_F16 = 1, GGML_BF16 = 30 };

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
#define GGUF_NUM_KEYS(X)                                                                           \
    X(K_DIM, "llama.embedding_length")                                                             \
    X(K_HIDDEN, "llama.feed_forward_length")                                                       \
    X(K_LAYERS, "llama.block_count")                                                               \
    X(K_HEADS, "llama.attention.head_count")                                                       \
    X(K_KV_HEADS, "llama.attention.head_count_kv")                                                 \
    X(K_CTX, "llama.context_length")                                                               \
    X(K_THETA, "llama.rope.freq_base")                                                             \
    X(K_EPS, "llama.attention.layer_norm_rms_epsilon")                                             \
    X(K_ROPE_DIM, "llama.rope.dimension_count")                                                    \
    X(K_KEY_LEN, "llama.attention.key_length")                                                     \
    X(K_VOCAB, "llama.vocab_size")                                                                 \
    X(K_ALIGN, "general.alignment")                                                                \
    X(K_BOS, "tokenizer.ggml.bos_token_id")                                                        \
    X(K_EOS, "tokenizer.ggml.eos_token_id")                                                        \
    X(K_UNK, "tokenizer.ggml.unknown_token_id")                                                    \
    X(K_ADD_SPACE, "tokenizer.ggml.add_space_prefix")

typedef enum {
#define GGUF_KEY_ENUM(e, key) e,
    GGUF_NUM_KEYS(GGUF_KEY_ENUM)
#undef GGUF_KEY_ENUM
        K_NUM_COUNT
} gnum_key;

static const char *const gnum_names[K_NUM_COUNT] = {
#define GGUF_KEY_NAME(e, key) key,
    GGUF_NUM_KEYS(GGUF_KEY_NAME)
#undef GGUF_KEY_NAME
};

/* Metadata keys read as short strings. */
typedef enum { S_ARCH, S_TOK_MODEL, S_ROPE_SCALING, S_COUNT } gstr_key;
static const char *const gstr_names[S_COUNT] = {"general.architecture", "tokenizer.ggml.model",
                                                "llama.rope.scaling.type"};

typedef struct gmeta {
    gnum num[K_NUM_COUNT];
    char str[S_COUNT][128];
    int has_str[S_COUNT];
    garr tokens, scores, types;
} gmeta;

/* One tensor of the model: offset from the start of the data section. */
typedef struct gtensor {
    int present;
    uint32_t type;
    uint64_t off, bytes;
} gtensor;

typedef struct gguf_impl {
    int fd;
    char path[4096];
    int32_t n_layers;
    gtensor *t; /* ((n_layers + 1) * MDI_T_COUNT): [layer][kind], extras in row n_layers */
    uint64_t data_off;
} gguf_impl;

/* GGUF tensor names by kind; per-layer ones follow "blk.N.". */
static const char *const gguf_names[MDI_T_COUNT] = {[MDI_T_ATTN_NORM] = "attn_norm.weight",
                                                    [MDI_T_WQ] = "attn_q.weight",
                                                    [MDI_T_WK] = "attn_k.weight",
                                                    [MDI_T_WV] = "attn_v.weight",
                                                    [MDI_T_WO] = "attn_output.weight",
                                                    [MDI_T_FFN_NORM] = "ffn_norm.weight",
                                                    [MDI_T_W1] = "ffn_gate.weight",
                                                    [MDI_T_W2] = "ffn_down.weight",
                                                    [MDI_T_W3] = "ffn_up.weight",
                                                    [MDI_T_EMBED] = "token_embd.weight",
                                                    [MDI_T_FINAL_NORM] = "output_norm.weight",
                                                    [MDI_T_OUTPUT] = "output.weight"};

/* Record an error about the file being parsed: "path: message". */
static mdi_status cerr(const gcur *c, mdi_status s, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
static mdi_status cerr(const gcur *c, mdi_status s, const char *fmt, ...)
{
    char msg[MDI_ERR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return mdi_errf(c->err, s, "%s: %s", c->path, msg);
}

/* pread exactly n bytes at off, retrying short reads. */
static mdi_status pread_full(int fd, void *buf, size_t n, uint64_t off, const char *path,
                             mdi_err *err)
{
    unsigned char *p = buf;
    while (n > 0) {
        size_t want = n < ((size_t)1 << 30) ? n : ((size_t)1 << 30);
        ssize_t got = pread(fd, p, want, (off_t)off);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0)
            return mdi_errf(err, MDI_ERR_IO, "%s: read at offset %llu failed: %s", path,
                            (unsigned long long)off, strerror(errno));
        if (got == 0)
            return mdi_errf(err, MDI_ERR_FORMAT, "%s: unexpected end of file at offset %llu", path,
                            (unsigned long long)off);
        p += got;
        n -= (size_t)got;
        off += (uint64_t)got;
    }
    return MDI_OK;
}

/* Fail unless n more bytes of `what` are available at the cursor. */
static mdi_status cur_need(gcur *c, uint64_t n, const char *what)
{
    if (n > c->size - c->pos)
        return cerr(c, MDI_ERR_FORMAT,
                    "%s at offset %llu + %llu bytes runs past end of file (size %llu)", what,
                    (unsigned long long)c->pos, (unsigned long long)n, (unsigned long long)c->size);
    return MDI_OK;
}

/* Copy n bytes at the cursor into dst and advance. */
static mdi_status cur_read(gcur *c, void *dst, size_t n, const char *what)
{
    mdi_status s = cur_need(c, n, what);
    unsigned char *d = dst;
    while (s == MDI_OK && n > 0) {
        if (c->pos < c->buf_pos || c->pos >= c->buf_pos + c->buf_len) {
            uint64_t left = c->size - c->pos;
            c->buf_pos = c->pos;
            c->buf_len = left < GGUF_BUF_BYTES ? (size_t)left : GGUF_BUF_BYTES;
            s = pread_full(c->fd, c->buf, c->buf_len, c->pos, c->path, c->err);
            if (s != MDI_OK) {
                c->buf_len = 0;
                return s;
            }
        }
        size_t at = (size_t)(c->pos - c->buf_pos), k = c->buf_len - at;
        if (k > n)
            k = n;
        memcpy(d, c->buf + at, k);
        d += k;
        n -= k;
        c->pos += k;
    }
    return s;
}

static mdi_status cur_skip(gcur *c, uint64_t n, const char *what)
{
    mdi_status s = cur_need(c, n, what);
    if (s == MDI_OK)
        c->pos += n;
    return s;
}

/* Read a string into buf (cap bytes incl. NUL); longer strings are an error. */
static mdi_status cur_str(gcur *c, char *buf, size_t cap, const char *what)
{
    uint64_t len;
    mdi_status s = cur_read(c, &len, 8, what);
    if (s == MDI_OK)
        s = cur_need(c, len, what);
    if (s != MDI_OK)
        return s;
    if (len >= cap)
        return cerr(c, MDI_ERR_FORMAT, "%s at offset %llu is %llu bytes long (limit %zu)", what,
                    (unsigned long long)c->pos, (unsigned long long)len, cap - 1);
    buf[len] = '\0';
    return cur_read(c, buf, (size_t)len, what);
}

/* Size in bytes of a fixed-size value type, 0 for string/array/unknown. */
static size_t type_size(uint32_t t)
{
    static const unsigned char sz[GT_COUNT] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
    return t < GT_COUNT ? sz[t] : 0;
}

static mdi_status skip_elems(gcur *c, uint32_t elem, uint64_t n, const char *key, int depth,
                             uint64_t *str_bytes);

/* Skip one value of type t; the key names it in errors. Sums string bytes into *str_bytes. */
static mdi_status skip_value(gcur *c, uint32_t t, const char *key, int depth, uint64_t *str_bytes)
{
    mdi_status s;
    uint64_t len, n;
    uint32_t elem;
    if (type_size(t))
        return cur_skip(c, type_size(t), key);
    if (t == GT_STRING) {
        if ((s = cur_read(c, &len, 8, key)) != MDI_OK || (s = cur_skip(c, len, key)) != MDI_OK)
            return s;
        *str_bytes += len;
        return MDI_OK;
    }
    if (t != GT_ARRAY)
        return cerr(c, MDI_ERR_FORMAT, "metadata '%s' has unknown value type %u", key, (unsigned)t);
    if (depth >= GGUF_MAX_ARRAY_DEPTH)
        return cerr(c, MDI_ERR_FORMAT, "metadata '%s' nests arrays too deeply", key);
    if ((s = cur_read(c, &elem, 4, key)) != MDI_OK || (s = cur_read(c, &n, 8, key)) != MDI_OK)
        return s;
    return skip_elems(c, elem, n, key, depth + 1, str_bytes);
}

/* Skip n array elements of type elem, after bounding n by the bytes left in the file. */
static mdi_status skip_elems(gcur *c, uint32_t elem, uint64_t n, const char *key, int depth,
                             uint64_t *str_bytes)
{
    mdi_status s;
    /* Every element takes at least 1 byte (8 for strings, 12 for arrays). */
    uint64_t min = type_size(elem) ? type_size(elem) : elem == GT_STRING ? 8 : 12;
    if (n > (c->size - c->pos) / min)
        return cerr(c, MDI_ERR_FORMAT,
                    "metadata '%s' claims %llu array elements at offset %llu, which run past "
                    "end of file (size %llu)",
                    key, (unsigned long long)n, (unsigned long long)c->pos,
                    (unsigned long long)c->size);
    if (type_size(elem))
        return cur_skip(c, n * min, key);
    for (uint64_t i = 0; i < n; i++)
        if ((s = skip_value(c, elem, key, depth, str_bytes)) != MDI_OK)
            return s;
    return MDI_OK;
}

/* Read a numeric or bool value of type t into g. */
static mdi_status read_num(gcur *c, uint32_t t, const char *key, gnum *g)
{
    /* 'u' unsigned, 'i' signed, 'f' float, 'b' bool, per value type. */
    static const char cls[GT_COUNT] = "uiuiuifb\0\0uif";
    size_t n = type_size(t);
    uint64_t u = 0;
    if (n == 0)
        return cerr(c, MDI_ERR_FORMAT, "metadata '%s' has value type %u, expected a number", key,
                    (unsigned)t);
    mdi_status s = cur_read(c, &u, n, key); /* little-endian: zero-extended */
    if (s != MDI_OK)
        return s;
    g->present = 1;
    g->type = t;
    if (cls[t] == 'f') {
        float f32;
        double f64;
        memcpy(&f32, &u, sizeof f32);
        memcpy(&f64, &u, sizeof f64);
        g->f = n == 4 ? (double)f32 : f64;
        return MDI_OK;
    }
    if (cls[t] == 'i' && n < 8 && ((u >> (8 * n - 1)) & 1))
        u |= ~0ULL << (8 * n); /* sign-extend */
    if (cls[t] == 'b')
        g->i = u != 0;
    else if (cls[t] == 'u' && u > INT64_MAX)
        g->i = INT64_MAX;
    else
        memcpy(&g->i, &u, sizeof g->i);
    g->f = (double)g->i;
    return MDI_OK;
}

/* Record where a tokenizer array is (elements checked later) and skip it. */
static mdi_status note_array(gcur *c, uint32_t t, const char *key, garr *a)
{
    mdi_status s;
    if (t != GT_ARRAY)
        return cerr(c, MDI_ERR_FORMAT, "metadata '%s' has value type %u, expected an array", key,
                    (unsigned)t);
    if ((s = cur_read(c, &a->elem, 4, key)) != MDI_OK || (s = cur_read(c, &a->n, 8, key)) != MDI_OK)
        return s;
    a->present = 1;
    a->pos = c->pos;
    a->str_bytes = 0;
    return skip_elems(c, a->elem, a->n, key, 1, &a->str_bytes);
}

/* Read one key/value pair, keeping the ones we use. */
static mdi_status read_kv(gcur *c, gmeta *m)
{
    char key[GGUF_MAX_KEY];
    uint32_t t;
    uint64_t ignored = 0;
    mdi_status s = cur_str(c, key, sizeof key, "metadata key");
    if (s == MDI_OK)
        s = cur_read(c, &t, 4, "metadata value type");
    if (s != MDI_OK)
        return s;
    for (int k = 0; k < K_NUM_COUNT; k++)
        if (strcmp(key, gnum_names[k]) == 0)
            return read_num(c, t, key, &m->num[k]);
    for (int k = 0; k < S_COUNT; k++) {
        if (strcmp(key, gstr_names[k]) != 0)
            continue;
        if (t != GT_STRING)
            return cerr(c, MDI_ERR_FORMAT, "metadata '%s' has value type %u, expected a string",
                        key, (unsigned)t);
        m->has_str[k] = 1;
        return cur_str(c, m->str[k], sizeof m->str[k], key);
    }
    garr *a = strcmp(key, "tokenizer.ggml.tokens") == 0       ? &m->tokens
              : strcmp(key, "tokenizer.ggml.scores") == 0     ? &m->scores
              : strcmp(key, "tokenizer.ggml.token_type") == 0 ? &m->types
                                                              : NULL;
    if (a)
        return note_array(c, t, key, a);
    return skip_value(c, t, key, 0, &ignored);
}

/* Integer metadata k as int32 in [lo, hi] (def when absent and not required). */
static mdi_status meta_int(const gcur *c, const gmeta *m, gnum_key k, int required, int64_t def,
                           int64_t lo, int64_t hi, int32_t *out)
{
    const gnum *g = &m->num[k];
    if (!g->present) {
        if (required)
            return cerr(c, MDI_ERR_FORMAT, "metadata key '%s' is missing", gnum_names[k]);
        *out = (int32_t)def;
        return MDI_OK;
    }
    if (g->type == GT_F32 || g->type == GT_F64 || g->type == GT_BOOL)
        return cerr(c, MDI_ERR_FORMAT, "metadata '%s' has value type %u, expected an integer",
                    gnum_names[k], (unsigned)g->type);
    if (g->i < lo || g->i > hi)
        return cerr(c, MDI_ERR_RANGE, "metadata '%s' = %lld is outside [%lld, %lld]", gnum_names[k],
                    (long long)g->i, (long long)lo, (long long)hi);
    *out = (int32_t)g->i;
    return MDI_OK;
}

/* Build and validate the model geometry from the metadata. */
static mdi_status meta_config(const gcur *c, const gmeta *m, mdi_config *cfg)
{
    mdi_status s;
    if (!m->has_str[S_ARCH])
        return cerr(c, MDI_ERR_FORMAT, "metadata key 'general.architecture' is missing");
    if (strcmp(m->str[S_ARCH], "llama") != 0)
        return cerr(c, MDI_ERR_UNSUPPORTED,
                    "general.architecture is '%s'; only 'llama' is supported", m->str[S_ARCH]);
    if (m->has_str[S_ROPE_SCALING] && strcmp(m->str[S_ROPE_SCALING], "none") != 0)
        return cerr(c, MDI_ERR_UNSUPPORTED,
                    "llama.rope.scaling.type '%s': rope scaling is not supported",
                    m->str[S_ROPE_SCALING]);
    if (!m->num[K_VOCAB].present && !m->tokens.present)
        return cerr(c, MDI_ERR_FORMAT,
                    "neither llama.vocab_size nor tokenizer.ggml.tokens is present");
    int32_t rope_dim = 0, key_len = 0;
    memset(cfg, 0, sizeof *cfg);
    if ((s = meta_int(c, m, K_DIM, 1, 0, 1, MDI_MAX_DIM, &cfg->dim)) ||
        (s = meta_int(c, m, K_HIDDEN, 1, 0, 1, MDI_MAX_HIDDEN, &cfg->hidden_dim)) ||
        (s = meta_int(c, m, K_LAYERS, 1, 0, 1, MDI_MAX_LAYERS, &cfg->n_layers)) ||
        (s = meta_int(c, m, K_HEADS, 1, 0, 1, MDI_MAX_HEADS, &cfg->n_heads)) ||
        (s = meta_int(c, m, K_KV_HEADS, 0, cfg->n_heads, 1, MDI_MAX_HEADS, &cfg->n_kv_heads)) ||
        (s = meta_int(c, m, K_CTX, 1, 0, 1, MDI_MAX_SEQ, &cfg->max_seq_len)) ||
        (s = meta_int(c, m, K_KEY_LEN, 0, cfg->dim / cfg->n_heads, 1, MDI_MAX_HEAD_DIM,
                      &key_len)) ||
        (s = meta_int(c, m, K_ROPE_DIM, 0, key_len, 1, MDI_MAX_HEAD_DIM, &rope_dim)) ||
        (s = meta_int(c, m, K_VOCAB, 0, (int64_t)m->tokens.n, 1, MDI_MAX_VOCAB, &cfg->vocab_size)))
        return s;
    if (!m->num[K_KEY_LEN].present && m->num[K_ROPE_DIM].present)
        key_len = rope_dim; /* older files: the rotary width is the head width */
    if (rope_dim != key_len)
        return cerr(c, MDI_ERR_UNSUPPORTED,
                    "llama.rope.dimension_count = %d differs from the head width %d "
                    "(partial rotary embedding is not supported)",
                    (int)rope_dim, (int)key_len);
    cfg->head_dim = key_len;
    if (!m->num[K_EPS].present)
        return cerr(c, MDI_ERR_FORMAT, "metadata key '%s' is missing", gnum_names[K_EPS]);
    cfg->norm_eps = (float)m->num[K_EPS].f;
    cfg->rope_theta = m->num[K_THETA].present ? (float)m->num[K_THETA].f : 10000.0f;
    cfg->tied_head = 1; /* until output.weight shows up */
    if ((s = mdi_config_validate(cfg, c->err)) != MDI_OK)
        return cerr(c, s, "%s", c->err ? c->err->msg : "");
    return MDI_OK;
}

/* Map a tensor name to (kind, layer); returns 0 if it is not a Llama tensor. */
static int map_name(const char *name, int32_t n_layers, mdi_tensor_kind *kind, int32_t *layer)
{
    const char *suffix = name;
    *layer = -1;
    if (strncmp(name, "blk.", 4) == 0) {
        const char *p = name + 4;
        int64_t l = 0;
        if (*p < '0' || *p > '9' || (*p == '0' && p[1] != '.'))
            return 0;
        for (; *p >= '0' && *p <= '9' && l <= MDI_MAX_LAYERS; p++)
            l = l * 10 + (*p - '0');
        if (*p != '.' || l >= n_layers)
            return 0;
        *layer = (int32_t)l;
        suffix = p + 1;
    }
    for (int k = 0; k < MDI_T_COUNT; k++) {
        int per_layer = mdi_tensor_scope_of((mdi_tensor_kind)k) == MDI_SCOPE_LAYER;
        if (per_layer == (*layer >= 0) && strcmp(suffix, gguf_names[k]) == 0) {
            *kind = (mdi_tensor_kind)k;
            return 1;
        }
    }
    return 0;
}

/* The slot of (kind, layer) in g->t. */
static gtensor *slot(gguf_impl *g, mdi_tensor_kind kind, int32_t layer)
{
    int32_t row = mdi_tensor_scope_of(kind) == MDI_SCOPE_LAYER ? layer : g->n_layers;
    return &g->t[(size_t)row * MDI_T_COUNT + (size_t)kind];
}

/* GGUF name of (kind, layer) into buf, for messages. */
static const char *tensor_name(mdi_tensor_kind kind, int32_t layer, char *buf, size_t cap)
{
    if (mdi_tensor_scope_of(kind) == MDI_SCOPE_LAYER)
        snprintf(buf, cap, "blk.%d.%s", (int)layer, gguf_names[kind]);
    else
        snprintf(buf, cap, "%s", gguf_names[kind]);
    return buf;
}

/* Read one tensor info and record it in its slot after checking name, shape and type. */
static mdi_status read_tensor_info(gcur *c, gguf_impl *g, const mdi_config *cfg, uint64_t align)
{
    char name[GGUF_MAX_NAME];
    uint32_t n_dims, type;
    uint64_t ne[4] = {1, 1, 1, 1}, off;
    mdi_status s = cur_str(c, name, sizeof name, "tensor name");
    if (s == MDI_OK)
        s = cur_read(c, &n_dims, 4, name);
    if (s == MDI_OK && (n_dims < 1 || n_dims > 4))
        return cerr(c, MDI_ERR_FORMAT, "tensor '%s' has %u dimensions (1 to 4 allowed)", name,
                    (unsigned)n_dims);
    for (uint32_t d = 0; s == MDI_OK && d < n_dims; d++)
        s = cur_read(c, &ne[d], 8, name);
    if (s == MDI_OK)
        s = cur_read(c, &type, 4, name);
    if (s == MDI_OK)
        s = cur_read(c, &off, 8, name);
    if (s != MDI_OK)
        return s;
    mdi_tensor_kind kind;
    int32_t layer;
    if (!map_name(name, cfg->n_layers, &kind, &layer)) {
        if (strcmp(name, "rope_freqs.weight") == 0)
            return cerr(c, MDI_ERR_UNSUPPORTED,
                        "tensor 'rope_freqs.weight': rope scaling is not supported");
        return cerr(c, MDI_ERR_FORMAT,
                    "unexpected tensor '%s' (not part of a %d-layer Llama model)", name,
                    (int)cfg->n_layers);
    }
    gtensor *t = slot(g, kind, layer);
    if (t->present)
        return cerr(c, MDI_ERR_FORMAT, "tensor '%s' appears twice", name);
    size_t rows, cols, esz = type == GGML_F32 ? 4 : (type == GGML_F16 || type == GGML_BF16) ? 2 : 0;
    mdi_tensor_shape(cfg, kind, &rows, &cols);
    uint64_t want0 = mdi_tensor_is_matrix(kind) ? cols : rows,
             want1 = mdi_tensor_is_matrix(kind) ? rows : 1;
    if (ne[0] != want0 || ne[1] != want1 || ne[2] != 1 || ne[3] != 1)
        return cerr(c, MDI_ERR_MISMATCH,
                    "tensor '%s' has shape [%llu, %llu, %llu, %llu] (ne0 first), expected "
                    "[%llu, %llu]",
                    name, (unsigned long long)ne[0], (unsigned long long)ne[1],
                    (unsigned long long)ne[2], (unsigned long long)ne[3], (unsigned long long)want0,
                    (unsigned long long)want1);
    if (esz == 0)
        return cerr(
            c, MDI_ERR_UNSUPPORTED,
            "tensor '%s' has ggml type %u; only F32 (0), F16 (1) and BF16 (30) are supported", name,
            (unsigned)type);
    if (off % align != 0)
        return cerr(c, MDI_ERR_FORMAT,
                    "tensor '%s' offset %llu is not a multiple of the alignment %llu", name,
                    (unsigned long long)off, (unsigned long long)align);
    *t = (gtensor){1, type, off, (uint64_t)rows * cols * esz};
    return MDI_OK;
}

/* Read all tensor infos, find the data section, and check every tensor is there and in the file. */
static mdi_status read_tensors(gcur *c, gguf_impl *g, mdi_config *cfg, uint64_t n_tensors,
                               uint64_t align)
{
    mdi_status s;
    char name[GGUF_MAX_NAME];
    for (uint64_t i = 0; i < n_tensors; i++)
        if ((s = read_tensor_info(c, g, cfg, align)) != MDI_OK)
            return s;
    g->data_off = (c->pos + align - 1) / align * align;
    if (g->data_off > c->size)
        return cerr(c, MDI_ERR_FORMAT,
                    "tensor data would start at offset %llu, past end of file (size %llu)",
                    (unsigned long long)g->data_off, (unsigned long long)c->size);
    uint64_t room = c->size - g->data_off;
    cfg->tied_head = !slot(g, MDI_T_OUTPUT, 0)->present;
    for (int32_t l = 0; l <= cfg->n_layers; l++) {
        for (int k = 0; k < MDI_T_COUNT; k++) {
            mdi_tensor_kind kind = (mdi_tensor_kind)k;
            int per_layer = mdi_tensor_scope_of(kind) == MDI_SCOPE_LAYER;
            if (per_layer != (l < cfg->n_layers) || !mdi_tensor_present(cfg, kind))
                continue;
            gtensor *t = slot(g, kind, l);
            tensor_name(kind, l, name, sizeof name);
            if (!t->present)
                return cerr(c, MDI_ERR_FORMAT, "tensor '%s' is missing", name);
            if (t->off > room || t->bytes > room - t->off)
                return cerr(c, MDI_ERR_FORMAT,
                            "tensor '%s' offset %llu + %llu bytes runs past end of file "
                            "(size %llu)",
                            name, (unsigned long long)(g->data_off + t->off),
                            (unsigned long long)t->bytes, (unsigned long long)c->size);
        }
    }
    return MDI_OK;
}

/* Check a tokenizer array exists with the element type we read. */
static mdi_status check_array(const gcur *c, const garr *a, const char *key, uint32_t elem,
                              uint64_t n)
{
    if (!a->present)
        return cerr(c, MDI_ERR_FORMAT, "metadata key '%s' is missing", key);
    if (a->elem != elem)
        return cerr(c, MDI_ERR_FORMAT, "metadata '%s' has element type %u, expected %u", key,
                    (unsigned)a->elem, (unsigned)elem);
    if (a->n != n)
        return cerr(c, MDI_ERR_MISMATCH, "metadata '%s' has %llu entries but there are %llu tokens",
                    key, (unsigned long long)a->n, (unsigned long long)n);
    return MDI_OK;
}

/* Token id metadata k: -1 when absent or "none" (0xFFFFFFFF), else in [0, n). */
static mdi_status token_id(const gcur *c, const gmeta *m, gnum_key k, int32_t n, int32_t *out)
{
    const gnum *g = &m->num[k];
    if (!g->present || g->i == -1 || g->i == 0xFFFFFFFFLL)
        return MDI_OK;
    if (g->type == GT_F32 || g->type == GT_F64 || g->i < 0 || g->i >= n)
        return cerr(c, MDI_ERR_RANGE, "metadata '%s' = %g is not a token id below %d",
                    gnum_names[k], g->f, (int)n);
    *out = (int32_t)g->i;
    return MDI_OK;
}

/* Fill the vocabulary's pieces, scores and types from the tokenizer arrays. */
static mdi_status read_pieces(gcur *c, const gmeta *m, mdi_vocab *v)
{
    mdi_status s = MDI_OK;
    c->pos = m->tokens.pos;
    v->offsets[0] = 0;
    for (int32_t i = 0; i < v->n && s == MDI_OK; i++) {
        uint64_t len;
        if ((s = cur_read(c, &len, 8, "tokenizer.ggml.tokens")) != MDI_OK)
            return s;
        if (len > m->tokens.str_bytes - v->offsets[i])
            return cerr(c, MDI_ERR_FORMAT, "token %d changed length while reading", (int)i);
        s = cur_read(c, v->bytes + v->offsets[i], (size_t)len, "tokenizer.ggml.tokens");
        v->offsets[i + 1] = v->offsets[i] + len;
    }
    c->pos = m->scores.pos;
    if (s == MDI_OK)
        s = cur_read(c, v->scores, (size_t)v->n * sizeof(float), "tokenizer.ggml.scores");
    c->pos = m->types.pos;
    if (s == MDI_OK)
        s = cur_read(c, v->types, (size_t)v->n * sizeof(int32_t), "tokenizer.ggml.token_type");
    for (int32_t i = 0; i < v->n && s == MDI_OK; i++)
        if (v->types[i] < MDI_PIECE_NORMAL || v->types[i] > MDI_PIECE_BYTE)
            return cerr(c, MDI_ERR_FORMAT, "token %d has token_type %d (1 to 6 expected)", (int)i,
                        (int)v->types[i]);
    return s;
}

/* Read the SentencePiece vocabulary stored in the metadata. */
static mdi_status read_vocab(gcur *c, const gmeta *m, int32_t vocab_size, mdi_vocab *v)
{
    mdi_status s;
    if (!m->has_str[S_TOK_MODEL])
        return cerr(c, MDI_ERR_FORMAT,
                    "metadata key 'tokenizer.ggml.model' is missing (no tokenizer)");
    if (strcmp(m->str[S_TOK_MODEL], "llama") != 0)
        return cerr(c, MDI_ERR_UNSUPPORTED,
                    "tokenizer.ggml.model is '%s'; only 'llama' (SentencePiece) is supported",
                    m->str[S_TOK_MODEL]);
    uint64_t n = m->tokens.n;
    if ((s = check_array(c, &m->tokens, "tokenizer.ggml.tokens", GT_STRING, n)) ||
        (s = check_array(c, &m->scores, "tokenizer.ggml.scores", GT_F32, n)) ||
        (s = check_array(c, &m->types, "tokenizer.ggml.token_type", GT_I32, n)))
        return s;
    if (n == 0 || n > (uint64_t)vocab_size)
        return cerr(c, MDI_ERR_RANGE, "%llu tokens for a vocab_size of %d", (unsigned long long)n,
                    (int)vocab_size);
    if ((s = mdi_vocab_alloc(v, (int32_t)n, m->tokens.str_bytes, c->err)) != MDI_OK)
        return s;
    if ((s = read_pieces(c, m, v)) || (s = token_id(c, m, K_BOS, v->n, &v->bos_id)) ||
        (s = token_id(c, m, K_EOS, v->n, &v->eos_id)) ||
        (s = token_id(c, m, K_UNK, v->n, &v->unk_id)))
        return s;
    v->add_dummy_prefix = m->num[K_ADD_SPACE].present ? m->num[K_ADD_SPACE].i != 0 : 1;
    if ((s = mdi_vocab_validate(v, c->err)) != MDI_OK)
        return cerr(c, s, "tokenizer: %s", c->err ? c->err->msg : "");
    return MDI_OK;
}

/* Read magic, version, counts and every key/value pair. */
static mdi_status read_header(gcur *c, gmeta *m, uint64_t *n_tensors, uint64_t *align)
{
    char magic[4];
    uint32_t version;
    uint64_t n_kv;
    mdi_status s = cur_read(c, magic, 4, "magic");
    if (s == MDI_OK && memcmp(magic, "GGUF", 4) != 0)
        return cerr(c, MDI_ERR_FORMAT, "not a GGUF file (bad magic)");
    if (s || (s = cur_read(c, &version, 4, "version")))
        return s;
    if (version != 2 && version != 3)
        return cerr(c, MDI_ERR_UNSUPPORTED, "GGUF version %u is not supported (2 and 3 are%s)",
                    (unsigned)version, (version & 0xFFFF) == 0 ? "; big-endian files are not" : "");
    if ((s = cur_read(c, n_tensors, 8, "n_tensors")) || (s = cur_read(c, &n_kv, 8, "n_kv")))
        return s;
    /* A key/value pair takes at least 13 bytes, a tensor info at least 32. */
    if (n_kv > (c->size - c->pos) / 13 || *n_tensors > (c->size - c->pos) / 32)
        return cerr(c, MDI_ERR_FORMAT,
                    "header claims n_kv = %llu and n_tensors = %llu, which run past end of "
                    "file (size %llu)",
                    (unsigned long long)n_kv, (unsigned long long)*n_tensors,
                    (unsigned long long)c->size);
    for (uint64_t i = 0; i < n_kv; i++)
        if ((s = read_kv(c, m)) != MDI_OK)
            return s;
    *align = 32;
    if (m->num[K_ALIGN].present) {
        const gnum *a = &m->num[K_ALIGN];
        if (a->type == GT_F32 || a->type == GT_F64 || a->i < 1 || a->i > (1 << 20) ||
            (a->i & (a->i - 1)))
            return cerr(c, MDI_ERR_FORMAT,
                        "general.alignment = %g is not a power of two up to 2^20", a->f);
        *align = (uint64_t)a->i;
    }
    return MDI_OK;
}

/* FNV-1a 64 over the whole file, as 16 hex digits. */
static mdi_status hash_file(int fd, uint64_t size, const char *path, char id[17], mdi_err *err)
{
    unsigned char *buf = malloc(GGUF_HASH_CHUNK);
    if (!buf)
        return mdi_errf(err, MDI_ERR_NOMEM, "%s: out of memory for hashing", path);
    uint64_t h = CV_FNV_INIT;
    mdi_status s = MDI_OK;
    for (uint64_t off = 0; off < size && s == MDI_OK; off += GGUF_HASH_CHUNK) {
        size_t n = size - off < GGUF_HASH_CHUNK ? (size_t)(size - off) : GGUF_HASH_CHUNK;
        if ((s = pread_full(fd, buf, n, off, path, err)) == MDI_OK)
            h = cv_fnv1a(h, buf, n);
    }
    free(buf);
    snprintf(id, 17, "%016llx", (unsigned long long)h);
    return s;
}

/* Read tensor (kind, layer) as float32 into out (rows * cols floats). */
static mdi_status gguf_read(cv_source *src, mdi_tensor_kind kind, int32_t layer, float *out,
                            mdi_err *err)
{
    gguf_impl *g = src->impl;
    if ((unsigned)kind >= MDI_T_COUNT || !mdi_tensor_present(&src->cfg, kind) ||
        (mdi_tensor_scope_of(kind) == MDI_SCOPE_LAYER && (layer < 0 || layer >= g->n_layers)))
        return mdi_errf(err, MDI_ERR_ARG, "%s: no tensor of kind %d for layer %d", g->path,
                        (int)kind, (int)layer);
    const gtensor *t = slot(g, kind, layer);
    size_t rows, cols;
    mdi_tensor_shape(&src->cfg, kind, &rows, &cols);
    size_t n = rows * cols;
    if (t->type == GGML_F32)
        return pread_full(g->fd, out, n * 4, g->data_off + t->off, g->path, err);
    /* 16-bit values go in the upper half of out and widen in place, front to back:
     * out[i] (bytes 4i..4i+3) never overwrites a half at byte 2n + 2j with j > i. */
    unsigned char *half = (unsigned char *)out + n * 2;
    mdi_status s = pread_full(g->fd, half, n * 2, g->data_off + t->off, g->path, err);
    if (s != MDI_OK)
        return s;
    for (size_t i = 0; i < n; i++) {
        uint16_t h;
        memcpy(&h, half + 2 * i, 2);
        out[i] = t->type == GGML_F16 ? cv_f16_to_f32(h) : cv_bf16_to_f32(h);
    }
    return MDI_OK;
}

static void gguf_close(cv_source *src)
{
    gguf_impl *g = src->impl;
    if (!g)
        return;
    if (g->fd >= 0)
        close(g->fd);
    free(g->t);
    free(g);
    src->impl = NULL;
}

/* Parse everything after the file is open: header, config, tensors, vocabulary, id. */
static mdi_status gguf_parse(gcur *c, gguf_impl *g, cv_source *src)
{
    gmeta *m = calloc(1, sizeof *m);
    if (!m)
        return cerr(c, MDI_ERR_NOMEM, "out of memory");
    uint64_t n_tensors = 0, align = 32;
    mdi_status s = read_header(c, m, &n_tensors, &align);
    if (s == MDI_OK)
        s = meta_config(c, m, &src->cfg);
    if (s == MDI_OK) {
        g->n_layers = src->cfg.n_layers;
        g->t = calloc((size_t)(g->n_layers + 1) * MDI_T_COUNT, sizeof *g->t);
        if (!g->t)
            s = cerr(c, MDI_ERR_NOMEM, "out of memory for the tensor table");
    }
    if (s == MDI_OK)
        s = read_tensors(c, g, &src->cfg, n_tensors, align);
    if (s == MDI_OK)
        s = read_vocab(c, m, src->cfg.vocab_size, &src->vocab);
    if (s == MDI_OK)
        s = hash_file(g->fd, c->size, c->path, src->model_id, c->err);
    free(m);
    return s;
}

mdi_status cv_open_gguf(const char *path, cv_source *src, mdi_err *err)
{
    memset(src, 0, sizeof *src);
    if (!path || strlen(path) >= sizeof((gguf_impl *)0)->path)
        return mdi_errf(err, MDI_ERR_ARG, "GGUF path is missing or too long");
    gguf_impl *g = calloc(1, sizeof *g);
    gcur *c = malloc(sizeof *c);
    if (!g || !c) {
        free(g);
        free(c);
        return mdi_errf(err, MDI_ERR_NOMEM, "%s: out of memory", path);
    }
    snprintf(g->path, sizeof g->path, "%s", path);
    src->impl = g;
    src->close = gguf_close;
    src->read = gguf_read;
    src->kind = "gguf";
    mdi_status s = MDI_OK;
    struct stat st;
    g->fd = open(path, O_RDONLY);
    if (g->fd < 0)
        s = mdi_errf(err, MDI_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    else if (fstat(g->fd, &st) != 0 || !S_ISREG(st.st_mode))
        s = mdi_errf(err, MDI_ERR_IO, "%s: not a regular file", path);
    if (s == MDI_OK) {
        *c = (gcur){.fd = g->fd, .path = g->path, .size = (uint64_t)st.st_size, .err = err};
        s = gguf_parse(c, g, src);
    }
    free(c);
    if (s != MDI_OK) {
        gguf_close(src);
        mdi_vocab_free(&src->vocab);
        memset(src, 0, sizeof *src);
    }
    return s;
}

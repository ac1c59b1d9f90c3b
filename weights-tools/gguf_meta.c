/* GGUF header and key/value parsing (see gguf_meta.h for the layout): a
 * buffered cursor that checks every length against the file size, skipping of
 * values we do not use, and the model geometry built from the llama.* keys. */
#include "gguf_meta.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define GGUF_MAX_KEY 65536
#define GGUF_MAX_ARRAY_DEPTH 4

static const char *const gnum_names[K_NUM_COUNT] = {
#define GGUF_KEY_NAME(e, key) key,
    GGUF_NUM_KEYS(GGUF_KEY_NAME)
#undef GGUF_KEY_NAME
};

static const char *const gstr_names[S_COUNT] = {"general.architecture", "tokenizer.ggml.model",
                                                "llama.rope.scaling.type"};

mdi_status cv_gguf_err(const gcur *c, mdi_status s, const char *fmt, ...)
{
    char msg[MDI_ERR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return mdi_errf(c->err, s, "%s: %s", c->path, msg);
}

/* Fail unless n more bytes of `what` are available at the cursor. */
static mdi_status cur_need(gcur *c, uint64_t n, const char *what)
{
    if (n > c->size - c->pos)
        return cv_gguf_err(
            c, MDI_ERR_FORMAT, "%s at offset %llu + %llu bytes runs past end of file (size %llu)",
            what, (unsigned long long)c->pos, (unsigned long long)n, (unsigned long long)c->size);
    return MDI_OK;
}

/* Copy n bytes at the cursor into dst and advance. */
mdi_status cv_gguf_cur_read(gcur *c, void *dst, size_t n, const char *what)
{
    mdi_status s = cur_need(c, n, what);
    unsigned char *d = dst;
    while (s == MDI_OK && n > 0) {
        if (c->pos < c->buf_pos || c->pos >= c->buf_pos + c->buf_len) {
            uint64_t left = c->size - c->pos;
            c->buf_pos = c->pos;
            c->buf_len = left < GGUF_BUF_BYTES ? (size_t)left : GGUF_BUF_BYTES;
            s = cv_pread_full(c->fd, c->buf, c->buf_len, c->pos, c->path, c->err);
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
mdi_status cv_gguf_cur_str(gcur *c, char *buf, size_t cap, const char *what)
{
    uint64_t len;
    mdi_status s = cv_gguf_cur_read(c, &len, 8, what);
    if (s == MDI_OK)
        s = cur_need(c, len, what);
    if (s != MDI_OK)
        return s;
    if (len >= cap)
        return cv_gguf_err(c, MDI_ERR_FORMAT, "%s at offset %llu is %llu bytes long (limit %zu)",
                           what, (unsigned long long)c->pos, (unsigned long long)len, cap - 1);
    buf[len] = '\0';
    return cv_gguf_cur_read(c, buf, (size_t)len, what);
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
        if ((s = cv_gguf_cur_read(c, &len, 8, key)) != MDI_OK ||
            (s = cur_skip(c, len, key)) != MDI_OK)
            return s;
        *str_bytes += len;
        return MDI_OK;
    }
    if (t != GT_ARRAY)
        return cv_gguf_err(c, MDI_ERR_FORMAT, "metadata '%s' has unknown value type %u", key,
                           (unsigned)t);
    if (depth >= GGUF_MAX_ARRAY_DEPTH)
        return cv_gguf_err(c, MDI_ERR_FORMAT, "metadata '%s' nests arrays too deeply", key);
    if ((s = cv_gguf_cur_read(c, &elem, 4, key)) != MDI_OK ||
        (s = cv_gguf_cur_read(c, &n, 8, key)) != MDI_OK)
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
        return cv_gguf_err(
            c, MDI_ERR_FORMAT,
            "metadata '%s' claims %llu array elements at offset %llu, which run past "
            "end of file (size %llu)",
            key, (unsigned long long)n, (unsigned long long)c->pos, (unsigned long long)c->size);
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
        return cv_gguf_err(c, MDI_ERR_FORMAT, "metadata '%s' has value type %u, expected a number",
                           key, (unsigned)t);
    mdi_status s = cv_gguf_cur_read(c, &u, n, key); /* little-endian: zero-extended */
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
        return cv_gguf_err(c, MDI_ERR_FORMAT, "metadata '%s' has value type %u, expected an array",
                           key, (unsigned)t);
    if ((s = cv_gguf_cur_read(c, &a->elem, 4, key)) != MDI_OK ||
        (s = cv_gguf_cur_read(c, &a->n, 8, key)) != MDI_OK)
        return s;
    a->present = 1;
    a->pos = c->pos;
    a->str_bytes = 0;
    return skip_elems(c, a->elem, a->n, key, 1, &a->str_bytes);
}

static mdi_status twice(const gcur *c, const char *key)
{
    return cv_gguf_err(c, MDI_ERR_FORMAT, "metadata key '%s' appears twice", key);
}

/* Read one key/value pair, keeping the ones we use. */
static mdi_status read_kv(gcur *c, gmeta *m)
{
    char key[GGUF_MAX_KEY];
    uint32_t t;
    uint64_t ignored = 0;
    mdi_status s = cv_gguf_cur_str(c, key, sizeof key, "metadata key");
    if (s == MDI_OK)
        s = cv_gguf_cur_read(c, &t, 4, "metadata value type");
    if (s != MDI_OK)
        return s;
    /* A key read twice would leave the model to whichever copy came last. */
    for (int k = 0; k < K_NUM_COUNT; k++)
        if (strcmp(key, gnum_names[k]) == 0)
            return m->num[k].present ? twice(c, key) : read_num(c, t, key, &m->num[k]);
    for (int k = 0; k < S_COUNT; k++) {
        if (strcmp(key, gstr_names[k]) != 0)
            continue;
        if (m->has_str[k])
            return twice(c, key);
        if (t != GT_STRING)
            return cv_gguf_err(c, MDI_ERR_FORMAT,
                               "metadata '%s' has value type %u, expected a string", key,
                               (unsigned)t);
        m->has_str[k] = 1;
        return cv_gguf_cur_str(c, m->str[k], sizeof m->str[k], key);
    }
    garr *a = strcmp(key, "tokenizer.ggml.tokens") == 0       ? &m->tokens
              : strcmp(key, "tokenizer.ggml.scores") == 0     ? &m->scores
              : strcmp(key, "tokenizer.ggml.token_type") == 0 ? &m->types
                                                              : NULL;
    if (a)
        return a->present ? twice(c, key) : note_array(c, t, key, a);
    return skip_value(c, t, key, 0, &ignored);
}

/* Integer metadata k as int32 in [lo, hi] (def when absent and not required). */
static mdi_status meta_int(const gcur *c, const gmeta *m, gnum_key k, int required, int64_t def,
                           int64_t lo, int64_t hi, int32_t *out)
{
    const gnum *g = &m->num[k];
    if (!g->present) {
        if (required)
            return cv_gguf_err(c, MDI_ERR_FORMAT, "metadata key '%s' is missing", gnum_names[k]);
        *out = (int32_t)def;
        return MDI_OK;
    }
    if (g->type == GT_F32 || g->type == GT_F64 || g->type == GT_BOOL)
        return cv_gguf_err(c, MDI_ERR_FORMAT,
                           "metadata '%s' has value type %u, expected an integer", gnum_names[k],
                           (unsigned)g->type);
    if (g->i < lo || g->i > hi)
        return cv_gguf_err(c, MDI_ERR_RANGE, "metadata '%s' = %lld is outside [%lld, %lld]",
                           gnum_names[k], (long long)g->i, (long long)lo, (long long)hi);
    *out = (int32_t)g->i;
    return MDI_OK;
}

/* Build and validate the model geometry from the metadata. */
mdi_status cv_gguf_meta_config(const gcur *c, const gmeta *m, mdi_config *cfg)
{
    mdi_status s;
    if (!m->has_str[S_ARCH])
        return cv_gguf_err(c, MDI_ERR_FORMAT, "metadata key 'general.architecture' is missing");
    if (strcmp(m->str[S_ARCH], "llama") != 0)
        return cv_gguf_err(c, MDI_ERR_UNSUPPORTED,
                           "general.architecture is '%s'; only 'llama' is supported",
                           m->str[S_ARCH]);
    if (m->has_str[S_ROPE_SCALING] && strcmp(m->str[S_ROPE_SCALING], "none") != 0)
        return cv_gguf_err(c, MDI_ERR_UNSUPPORTED,
                           "llama.rope.scaling.type '%s': rope scaling is not supported",
                           m->str[S_ROPE_SCALING]);
    /* llama.cpp reads a factor without a type as linear scaling. */
    for (gnum_key k = K_SCALE_FACTOR; k <= K_SCALE_LINEAR; k++)
        if (m->num[k].present && m->num[k].f != 0.0 && m->num[k].f != 1.0)
            return cv_gguf_err(c, MDI_ERR_UNSUPPORTED, "%s = %g: rope scaling is not supported",
                               gnum_names[k], m->num[k].f);
    if (!m->num[K_VOCAB].present && !m->tokens.present)
        return cv_gguf_err(c, MDI_ERR_FORMAT,
                           "neither llama.vocab_size nor tokenizer.ggml.tokens is present");
    int32_t rope_dim = 0, key_len = 0, value_len = 0;
    memset(cfg, 0, sizeof *cfg);
    if ((s = meta_int(c, m, K_DIM, 1, 0, 1, MDI_MAX_DIM, &cfg->dim)) ||
        (s = meta_int(c, m, K_HIDDEN, 1, 0, 1, MDI_MAX_HIDDEN, &cfg->hidden_dim)) ||
        (s = meta_int(c, m, K_LAYERS, 1, 0, 1, MDI_MAX_LAYERS, &cfg->n_layers)) ||
        (s = meta_int(c, m, K_HEADS, 1, 0, 1, MDI_MAX_HEADS, &cfg->n_heads)) ||
        (s = meta_int(c, m, K_KV_HEADS, 0, cfg->n_heads, 1, MDI_MAX_HEADS, &cfg->n_kv_heads)) ||
        (s = meta_int(c, m, K_CTX, 1, 0, 1, MDI_MAX_SEQ, &cfg->max_seq_len)) ||
        (s = meta_int(c, m, K_KEY_LEN, 0, cfg->dim / cfg->n_heads, 1, MDI_MAX_HEAD_DIM,
                      &key_len)) ||
        (s = meta_int(c, m, K_VALUE_LEN, 0, key_len, 1, MDI_MAX_HEAD_DIM, &value_len)) ||
        (s = meta_int(c, m, K_ROPE_DIM, 0, key_len, 1, MDI_MAX_HEAD_DIM, &rope_dim)) ||
        (s = meta_int(c, m, K_VOCAB, 0, (int64_t)m->tokens.n, 1, MDI_MAX_VOCAB, &cfg->vocab_size)))
        return s;
    cfg->head_dim = key_len;
    if (!m->num[K_EPS].present)
        return cv_gguf_err(c, MDI_ERR_FORMAT, "metadata key '%s' is missing", gnum_names[K_EPS]);
    /* as llama.cpp, which reads these as float32 and refuses another type */
    for (gnum_key k = K_THETA; k <= K_EPS; k++)
        if (m->num[k].present && m->num[k].type != GT_F32 && m->num[k].type != GT_F64)
            return cv_gguf_err(c, MDI_ERR_FORMAT,
                               "metadata '%s' has value type %u, expected a float", gnum_names[k],
                               (unsigned)m->num[k].type);
        else if (m->num[k].present && !cv_fits_float(m->num[k].f))
            return cv_gguf_err(c, MDI_ERR_RANGE, "%s = %g is outside the float32 range",
                               gnum_names[k], m->num[k].f);
    cfg->norm_eps = (float)m->num[K_EPS].f;
    cfg->rope_theta = m->num[K_THETA].present ? (float)m->num[K_THETA].f : 10000.0f;
    cfg->tied_head = 1; /* until output.weight shows up */
    const mdi_config_names names = {
        gnum_names[K_DIM],      gnum_names[K_HIDDEN],  gnum_names[K_LAYERS], gnum_names[K_HEADS],
        gnum_names[K_KV_HEADS], gnum_names[K_KEY_LEN], "vocab size",         gnum_names[K_CTX],
        "tied output head",     gnum_names[K_THETA],   gnum_names[K_EPS]};
    if ((s = mdi_config_validate_as(cfg, &names, c->err)) != MDI_OK)
        return cv_gguf_err(c, s, "%s", c->err ? c->err->msg : "");
    /* Without llama.attention.key_length the head width is dim / n_heads, as in
     * llama.cpp, and a different rotary width is a partial rotary embedding. */
    if (value_len != key_len)
        return cv_gguf_err(c, MDI_ERR_UNSUPPORTED,
                           "llama.attention.value_length = %d differs from the head width %d "
                           "(values and keys of different widths are not supported)",
                           (int)value_len, (int)key_len);
    if (rope_dim != key_len)
        return cv_gguf_err(c, MDI_ERR_UNSUPPORTED,
                           "llama.rope.dimension_count = %d differs from the head width %d "
                           "(partial rotary embedding is not supported)",
                           (int)rope_dim, (int)key_len);
    return MDI_OK;
}

/* Read magic, version, counts and every key/value pair. */
mdi_status cv_gguf_read_header(gcur *c, gmeta *m, uint64_t *n_tensors, uint64_t *align)
{
    char magic[4];
    uint32_t version;
    uint64_t n_kv;
    mdi_status s = cv_gguf_cur_read(c, magic, 4, "magic");
    if (s == MDI_OK && memcmp(magic, "GGUF", 4) != 0)
        return cv_gguf_err(c, MDI_ERR_FORMAT, "not a GGUF file (bad magic)");
    if (s || (s = cv_gguf_cur_read(c, &version, 4, "version")))
        return s;
    if (version != 2 && version != 3)
        return cv_gguf_err(c, MDI_ERR_UNSUPPORTED,
                           "GGUF version %u is not supported (2 and 3 are%s)", (unsigned)version,
                           (version & 0xFFFF) == 0 ? "; big-endian files are not" : "");
    if ((s = cv_gguf_cur_read(c, n_tensors, 8, "n_tensors")) ||
        (s = cv_gguf_cur_read(c, &n_kv, 8, "n_kv")))
        return s;
    /* A key/value pair takes at least 13 bytes, a tensor info at least 32. */
    if (n_kv > (c->size - c->pos) / 13 || *n_tensors > (c->size - c->pos) / 32)
        return cv_gguf_err(c, MDI_ERR_FORMAT,
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
            return cv_gguf_err(c, MDI_ERR_FORMAT,
                               "general.alignment = %g is not a power of two up to 2^20", a->f);
        *align = (uint64_t)a->i;
    }
    return MDI_OK;
}

const char *cv_gguf_key_name(gnum_key k)
{
    return (unsigned)k < K_NUM_COUNT ? gnum_names[k] : "?";
}

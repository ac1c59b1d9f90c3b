/* Reader for llama2.c checkpoints (legacy format v0, float32).
 *
 * Layout: seven int32 (dim, hidden_dim, n_layers, n_heads, n_kv_heads,
 * vocab_size, seq_len; vocab_size < 0 means a separate classifier), then
 * float32 arrays token_embedding (vocab, dim), rms_att (L, dim), wq (L, dim, dim),
 * wk (L, kv_dim, dim), wv (L, kv_dim, dim), wo (L, dim, dim), rms_ffn (L, dim),
 * w1 (L, hidden, dim), w2 (L, dim, hidden), w3 (L, hidden, dim), rms_final (dim),
 * optional legacy RoPE tables (2 x seq_len x head_size/2), then wcls (vocab, dim)
 * when vocab_size < 0. RoPE is already in interleaved-pair form. */
#include "convert.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define L2C_HEADER_BYTES 28

typedef struct l2c_impl {
    int fd;
    char path[4096];
    uint64_t base[MDI_T_COUNT];   /* byte offset of tensor kind (layer 0 for layer tensors) */
    uint64_t stride[MDI_T_COUNT]; /* bytes between consecutive layers (0 for extras) */
} l2c_impl;

/* Order of the arrays in the file, up to rms_final. */
static const mdi_tensor_kind l2c_order[] = {
    MDI_T_EMBED,    MDI_T_ATTN_NORM, MDI_T_WQ, MDI_T_WK, MDI_T_WV,         MDI_T_WO,
    MDI_T_FFN_NORM, MDI_T_W1,        MDI_T_W2, MDI_T_W3, MDI_T_FINAL_NORM,
};

/* Prefix err's message with "path: " (copying first: source and target overlap). */
static mdi_status prefix_err(mdi_err *err, mdi_status s, const char *path, const char *suffix)
{
    char msg[MDI_ERR_MSG_MAX];
    if (!err)
        return s;
    snprintf(msg, sizeof msg, "%s", err->msg);
    if (path)
        return mdi_errf(err, s, "%s: %s", path, msg);
    return mdi_errf(err, s, "%s%s", msg, suffix);
}

/* Check one header field lies in [lo, hi]. */
static mdi_status check_field(const char *path, const char *name, int32_t v, int32_t lo, int32_t hi,
                              mdi_err *err)
{
    if (v < lo || v > hi)
        return mdi_errf(err, MDI_ERR_FORMAT,
                        "%s: header field %s = %d is outside [%d, %d]; not a llama2.c checkpoint?",
                        path, name, (int)v, (int)lo, (int)hi);
    return MDI_OK;
}

/* Header -> config (head_dim = dim / n_heads, theta 10000, eps 1e-5). */
static mdi_status parse_header(const char *path, const unsigned char *h, mdi_config *c,
                               mdi_err *err)
{
    int32_t f[7];
    static const char *const names[7] = {"dim",        "hidden_dim", "n_layers", "n_heads",
                                         "n_kv_heads", "vocab_size", "seq_len"};
    static const int32_t hi[7] = {MDI_MAX_DIM,   MDI_MAX_HIDDEN, MDI_MAX_LAYERS, MDI_MAX_HEADS,
                                  MDI_MAX_HEADS, MDI_MAX_VOCAB,  MDI_MAX_SEQ};
    mdi_status s;
    for (int i = 0; i < 7; i++) {
        f[i] = cv_le_i32(h + 4 * i);
        int32_t v = f[i];
        if (i == 5 && v < 0 && v >= -MDI_MAX_VOCAB)
            v = -v;
        if ((s = check_field(path, names[i], v, 1, hi[i], err)))
            return s;
    }
    if (f[0] % f[3] != 0)
        return mdi_errf(err, MDI_ERR_FORMAT, "%s: dim = %d is not a multiple of n_heads = %d", path,
                        (int)f[0], (int)f[3]);
    memset(c, 0, sizeof *c);
    c->dim = f[0];
    c->hidden_dim = f[1];
    c->n_layers = f[2];
    c->n_heads = f[3];
    c->n_kv_heads = f[4];
    c->head_dim = f[0] / f[3];
    c->vocab_size = f[5] < 0 ? -f[5] : f[5];
    c->max_seq_len = f[6];
    c->rope_theta = 10000.0f;
    c->norm_eps = 1e-5f;
    c->tied_head = f[5] > 0;
    if ((s = mdi_config_validate(c, err)))
        return prefix_err(err, s, path, NULL);
    return MDI_OK;
}

/* Byte count of tensor kind k (all layers for layer tensors). */
static uint64_t kind_bytes(const mdi_config *c, mdi_tensor_kind k)
{
    size_t rows, cols;
    mdi_tensor_shape(c, k, &rows, &cols);
    uint64_t n = (uint64_t)rows * cols * sizeof(float);
    return mdi_tensor_scope_of(k) == MDI_SCOPE_LAYER ? n * (uint64_t)c->n_layers : n;
}

/* Fill offsets and check the file size matches the header exactly. */
static mdi_status compute_layout(const char *path, const mdi_config *c, uint64_t file_size,
                                 l2c_impl *im, mdi_err *err)
{
    uint64_t off = L2C_HEADER_BYTES;
    for (size_t i = 0; i < sizeof l2c_order / sizeof l2c_order[0]; i++) {
        mdi_tensor_kind k = l2c_order[i];
        size_t rows, cols;
        mdi_tensor_shape(c, k, &rows, &cols);
        im->base[k] = off;
        im->stride[k] =
            mdi_tensor_scope_of(k) == MDI_SCOPE_LAYER ? (uint64_t)rows * cols * sizeof(float) : 0;
        off += kind_bytes(c, k);
    }
    uint64_t rope = (uint64_t)c->max_seq_len * (uint64_t)c->head_dim * sizeof(float);
    uint64_t cls = c->tied_head ? 0 : kind_bytes(c, MDI_T_OUTPUT);
    uint64_t with_rope = off + rope + cls, without = off + cls;
    if (file_size == with_rope)
        im->base[MDI_T_OUTPUT] = c->tied_head ? im->base[MDI_T_EMBED] : off + rope;
    else if (file_size == without)
        im->base[MDI_T_OUTPUT] = c->tied_head ? im->base[MDI_T_EMBED] : off;
    else
        return mdi_errf(err, MDI_ERR_FORMAT,
                        "%s: file is %llu bytes but its header implies %llu (or %llu without "
                        "RoPE tables); truncated or not a llama2.c v0 checkpoint",
                        path, (unsigned long long)file_size, (unsigned long long)with_rope,
                        (unsigned long long)without);
    im->stride[MDI_T_OUTPUT] = 0;
    return MDI_OK;
}

/* cv_source.read: pread one tensor straight into out. */
static mdi_status l2c_read(cv_source *src, mdi_tensor_kind kind, int32_t layer, float *out,
                           mdi_err *err)
{
    l2c_impl *im = src->impl;
    size_t rows, cols;
    if ((int)kind < 0 || kind >= MDI_T_COUNT)
        return mdi_errf(err, MDI_ERR_ARG, "%s: unknown tensor kind %d", im->path, (int)kind);
    int is_layer = mdi_tensor_scope_of(kind) == MDI_SCOPE_LAYER;
    if (is_layer && (layer < 0 || layer >= src->cfg.n_layers))
        return mdi_errf(err, MDI_ERR_ARG, "%s: layer %d is outside [0, %d)", im->path, (int)layer,
                        (int)src->cfg.n_layers);
    mdi_tensor_shape(&src->cfg, kind, &rows, &cols);
    uint64_t off = im->base[kind] + (is_layer ? (uint64_t)layer * im->stride[kind] : 0);
    mdi_status s = cv_pread_full(im->fd, out, rows * cols * sizeof(float), off, im->path, err);
    if (s) {
        char what[64];
        snprintf(what, sizeof what, " (tensor %s)", mdi_tensor_name(kind));
        return prefix_err(err, s, NULL, what);
    }
    return MDI_OK;
}

static void l2c_close(cv_source *src)
{
    l2c_impl *im = src->impl;
    if (!im)
        return;
    if (im->fd >= 0)
        close(im->fd);
    free(im);
    src->impl = NULL;
}

/* Open path, parse and validate the header and size into im and src->cfg. */
static mdi_status open_checkpoint(const char *path, cv_source *src, l2c_impl *im, uint64_t *size,
                                  mdi_err *err)
{
    unsigned char hdr[L2C_HEADER_BYTES];
    struct stat st;
    mdi_status s;
    im->fd = open(path, O_RDONLY | O_NONBLOCK); /* a FIFO is not waited on */
    if (im->fd < 0)
        return mdi_errf(err, MDI_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    if (fstat(im->fd, &st) != 0)
        return mdi_errf(err, MDI_ERR_IO, "%s: cannot stat: %s", path, strerror(errno));
    if (!S_ISREG(st.st_mode))
        return mdi_errf(err, MDI_ERR_FORMAT, "%s: not a regular file", path);
    *size = (uint64_t)st.st_size;
    if (*size < L2C_HEADER_BYTES)
        return mdi_errf(err, MDI_ERR_FORMAT,
                        "%s: %llu bytes is too short for a llama2.c header (28 bytes)", path,
                        (unsigned long long)*size);
    if ((s = cv_pread_full(im->fd, hdr, sizeof hdr, 0, path, err)) ||
        (s = parse_header(path, hdr, &src->cfg, err)))
        return s;
    return compute_layout(path, &src->cfg, *size, im, err);
}

mdi_status cv_open_llama2c(const char *path, const char *tokenizer_path, cv_source *src,
                           mdi_err *err)
{
    mdi_status s;
    uint64_t size = 0;
    if (!path || !src)
        return mdi_errf(err, MDI_ERR_ARG, "cv_open_llama2c: path and src are required");
    memset(src, 0, sizeof *src);
    const uint16_t one = 1;
    if (*(const unsigned char *)&one != 1)
        return mdi_errf(err, MDI_ERR_UNSUPPORTED,
                        "%s: llama2.c files are little-endian; this host is not", path);
    if (!tokenizer_path)
        return mdi_errf(err, MDI_ERR_ARG,
                        "%s: llama2.c checkpoints carry no tokenizer: pass --tokenizer "
                        "tokenizer.bin",
                        path);
    l2c_impl *im = calloc(1, sizeof *im);
    if (!im)
        return mdi_errf(err, MDI_ERR_NOMEM, "%s: out of memory", path);
    im->fd = -1;
    snprintf(im->path, sizeof im->path, "%s", path);
    src->impl = im;
    src->close = l2c_close;
    src->read = l2c_read;
    src->kind = "llama2c";
    if ((s = open_checkpoint(path, src, im, &size, err)))
        goto fail;
    if ((s = cv_read_tokenizer_file(tokenizer_path, src->cfg.vocab_size, &src->vocab, err)))
        goto fail;
    uint64_t h = MDI_FNV_INIT;
    if ((s = cv_hash_fd(im->fd, size, path, &h, err)))
        goto fail;
    cv_model_id(h, src->model_id);
    return MDI_OK;
fail:
    cv_source_close(src);
    memset(src, 0, sizeof *src);
    return s;
}

/* Reader for GGUF v2/v3 files of the "llama" architecture (F32/F16/BF16 tensors).
 *
 * gguf_meta.c parses the header and metadata (layout in gguf_meta.h); this
 * file reads the tensor infos, the SentencePiece vocabulary and the tensor
 * data. A 2-D tensor with ne = [in, out] is exactly our (out, in)
 * row-major matrix, and llama.cpp's converter stores q/k in the interleaved
 * (Meta) RoPE order, so tensors are read as they are. */
#include "gguf_meta.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define GGUF_MAX_NAME 1024

/* ggml tensor types we read. */
enum { GGML_F32 = 0, GGML_F16 = 1, GGML_BF16 = 30 };

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

/* Map a tensor name to (kind, layer); returns 0 if it is not a Llama tensor. */
static int map_name(const char *name, int32_t n_layers, mdi_tensor_kind *kind, int32_t *layer)
{
    const char *suffix = name;
    *layer = -1;
    if (strncmp(name, "blk.", 4) == 0 && !(suffix = cv_layer_suffix(name, "blk.", n_layers, layer)))
        return 0;
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
static gtensor *slot(const gguf_impl *g, mdi_tensor_kind kind, int32_t layer)
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
    mdi_status s = cv_gguf_cur_str(c, name, sizeof name, "tensor name");
    if (s == MDI_OK)
        s = cv_gguf_cur_read(c, &n_dims, 4, name);
    if (s == MDI_OK && (n_dims < 1 || n_dims > 4))
        return cv_gguf_err(c, MDI_ERR_FORMAT, "tensor '%s' has %u dimensions (1 to 4 allowed)",
                           name, (unsigned)n_dims);
    for (uint32_t d = 0; s == MDI_OK && d < n_dims; d++)
        s = cv_gguf_cur_read(c, &ne[d], 8, name);
    if (s == MDI_OK)
        s = cv_gguf_cur_read(c, &type, 4, name);
    if (s == MDI_OK)
        s = cv_gguf_cur_read(c, &off, 8, name);
    if (s != MDI_OK)
        return s;
    mdi_tensor_kind kind;
    int32_t layer;
    if (!map_name(name, cfg->n_layers, &kind, &layer)) {
        if (strcmp(name, "rope_freqs.weight") == 0)
            return cv_gguf_err(c, MDI_ERR_UNSUPPORTED,
                               "tensor 'rope_freqs.weight': rope scaling is not supported");
        return cv_gguf_err(c, MDI_ERR_FORMAT,
                           "unexpected tensor '%s' (not part of a %d-layer Llama model)", name,
                           (int)cfg->n_layers);
    }
    gtensor *t = slot(g, kind, layer);
    if (t->present)
        return cv_gguf_err(c, MDI_ERR_FORMAT, "tensor '%s' appears twice", name);
    size_t rows, cols, esz = type == GGML_F32 ? 4 : (type == GGML_F16 || type == GGML_BF16) ? 2 : 0;
    mdi_tensor_shape(cfg, kind, &rows, &cols);
    uint64_t want0 = mdi_tensor_is_matrix(kind) ? cols : rows,
             want1 = mdi_tensor_is_matrix(kind) ? rows : 1;
    if (ne[0] != want0 || ne[1] != want1 || ne[2] != 1 || ne[3] != 1)
        return cv_gguf_err(c, MDI_ERR_MISMATCH,
                           "tensor '%s' has shape [%llu, %llu, %llu, %llu] (ne0 first), expected "
                           "[%llu, %llu]",
                           name, (unsigned long long)ne[0], (unsigned long long)ne[1],
                           (unsigned long long)ne[2], (unsigned long long)ne[3],
                           (unsigned long long)want0, (unsigned long long)want1);
    if (esz == 0)
        return cv_gguf_err(
            c, MDI_ERR_UNSUPPORTED,
            "tensor '%s' has ggml type %u; only F32 (0), F16 (1) and BF16 (30) are supported", name,
            (unsigned)type);
    if (off % align != 0)
        return cv_gguf_err(c, MDI_ERR_FORMAT,
                           "tensor '%s' offset %llu is not a multiple of the alignment %llu", name,
                           (unsigned long long)off, (unsigned long long)align);
    *t = (gtensor){1, type, off, (uint64_t)rows * cols * esz};
    return MDI_OK;
}

/* cv_extent_fn over a gguf_impl: offsets are from the start of the data section. */
static int gguf_extent(const void *ctx, mdi_tensor_kind kind, int32_t layer, cv_extent *e)
{
    const gtensor *t = slot(ctx, kind, layer);
    e->off = t->off;
    e->bytes = t->bytes;
    return t->present;
}

/* No two tensors share bytes of the data section. */
static mdi_status check_overlap(const gcur *c, const gguf_impl *g, const mdi_config *cfg)
{
    cv_extent a, b;
    char na[GGUF_MAX_NAME], nb[GGUF_MAX_NAME];
    int r = cv_check_overlap(cfg, gguf_extent, g, &a, &b);
    if (r < 0)
        return cv_gguf_err(c, MDI_ERR_NOMEM, "out of memory for the tensor table");
    if (r == 0)
        return MDI_OK;
    return cv_gguf_err(c, MDI_ERR_FORMAT,
                       "tensors '%s' (data bytes [%llu, %llu)) and '%s' ([%llu, %llu)) overlap",
                       tensor_name((mdi_tensor_kind)a.kind, a.layer, na, sizeof na),
                       (unsigned long long)a.off, (unsigned long long)(a.off + a.bytes),
                       tensor_name((mdi_tensor_kind)b.kind, b.layer, nb, sizeof nb),
                       (unsigned long long)b.off, (unsigned long long)(b.off + b.bytes));
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
        return cv_gguf_err(c, MDI_ERR_FORMAT,
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
                return cv_gguf_err(c, MDI_ERR_FORMAT, "tensor '%s' is missing", name);
            if (t->off > room || t->bytes > room - t->off)
                return cv_gguf_err(c, MDI_ERR_FORMAT,
                                   "tensor '%s' offset %llu + %llu bytes runs past end of file "
                                   "(size %llu)",
                                   name, (unsigned long long)(g->data_off + t->off),
                                   (unsigned long long)t->bytes, (unsigned long long)c->size);
        }
    }
    return check_overlap(c, g, cfg);
}

/* Check a tokenizer array exists with the element type we read. */
static mdi_status check_array(const gcur *c, const garr *a, const char *key, uint32_t elem,
                              uint64_t n)
{
    if (!a->present)
        return cv_gguf_err(c, MDI_ERR_FORMAT, "metadata key '%s' is missing", key);
    if (a->elem != elem)
        return cv_gguf_err(c, MDI_ERR_FORMAT, "metadata '%s' has element type %u, expected %u", key,
                           (unsigned)a->elem, (unsigned)elem);
    if (a->n != n)
        return cv_gguf_err(c, MDI_ERR_MISMATCH,
                           "metadata '%s' has %llu entries but there are %llu tokens", key,
                           (unsigned long long)a->n, (unsigned long long)n);
    return MDI_OK;
}

/* Token id metadata k: def when absent (if below n), -1 when "none" (0xFFFFFFFF),
 * else in [0, n). */
static mdi_status token_id(const gcur *c, const gmeta *m, gnum_key k, int32_t def, int32_t n,
                           int32_t *out)
{
    const gnum *g = &m->num[k];
    if (!g->present) {
        *out = def < n ? def : -1;
        return MDI_OK;
    }
    if (g->i == -1 || g->i == 0xFFFFFFFFLL)
        return MDI_OK;
    if (g->type == GT_F32 || g->type == GT_F64 || g->i < 0 || g->i >= n)
        return cv_gguf_err(c, MDI_ERR_RANGE, "metadata '%s' = %g is not a token id below %d",
                           cv_gguf_key_name(k), g->f, (int)n);
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
        if ((s = cv_gguf_cur_read(c, &len, 8, "tokenizer.ggml.tokens")) != MDI_OK)
            return s;
        if (len > m->tokens.str_bytes - v->offsets[i])
            return cv_gguf_err(c, MDI_ERR_FORMAT, "token %d changed length while reading", (int)i);
        s = cv_gguf_cur_read(c, v->bytes + v->offsets[i], (size_t)len, "tokenizer.ggml.tokens");
        v->offsets[i + 1] = v->offsets[i] + len;
    }
    c->pos = m->scores.pos;
    if (s == MDI_OK && m->scores.present)
        s = cv_gguf_cur_read(c, v->scores, (size_t)v->n * sizeof(float), "tokenizer.ggml.scores");
    c->pos = m->types.pos;
    if (s == MDI_OK && m->types.present)
        s = cv_gguf_cur_read(c, v->types, (size_t)v->n * sizeof(int32_t),
                             "tokenizer.ggml.token_type");
    /* Both arrays are optional, as in llama.cpp: scores then default to 0, and
     * types are inferred as for a llama2.c tokenizer.bin (ids are set later). */
    for (int32_t i = 0; i < v->n && s == MDI_OK; i++) {
        if (!m->scores.present)
            v->scores[i] = 0.0f;
        if (!m->types.present)
            v->types[i] = cv_is_byte_piece(v->bytes + v->offsets[i],
                                           (size_t)(v->offsets[i + 1] - v->offsets[i]))
                              ? MDI_PIECE_BYTE
                              : MDI_PIECE_NORMAL;
    }
    for (int32_t i = 0; i < v->n && s == MDI_OK; i++)
        if (v->types[i] < MDI_PIECE_NORMAL || v->types[i] > MDI_PIECE_BYTE)
            return cv_gguf_err(c, MDI_ERR_FORMAT, "token %d has token_type %d (1 to 6 expected)",
                               (int)i, (int)v->types[i]);
    return s;
}

/* Read the SentencePiece vocabulary stored in the metadata. */
static mdi_status read_vocab(gcur *c, const gmeta *m, int32_t vocab_size, mdi_vocab *v)
{
    mdi_status s;
    if (!m->has_str[S_TOK_MODEL])
        return cv_gguf_err(c, MDI_ERR_FORMAT,
                           "metadata key 'tokenizer.ggml.model' is missing (no tokenizer)");
    if (strcmp(m->str[S_TOK_MODEL], "llama") != 0)
        return cv_gguf_err(
            c, MDI_ERR_UNSUPPORTED,
            "tokenizer.ggml.model is '%s'; only 'llama' (SentencePiece) is supported",
            m->str[S_TOK_MODEL]);
    uint64_t n = m->tokens.n;
    if ((s = check_array(c, &m->tokens, "tokenizer.ggml.tokens", GT_STRING, n)) ||
        (m->scores.present &&
         (s = check_array(c, &m->scores, "tokenizer.ggml.scores", GT_F32, n))) ||
        (m->types.present &&
         (s = check_array(c, &m->types, "tokenizer.ggml.token_type", GT_I32, n))))
        return s;
    if (n == 0 || n > (uint64_t)vocab_size)
        return cv_gguf_err(c, MDI_ERR_RANGE, "%llu tokens for a vocab_size of %d",
                           (unsigned long long)n, (int)vocab_size);
    if ((s = mdi_vocab_alloc(v, (int32_t)n, m->tokens.str_bytes, c->err)) != MDI_OK)
        return s;
    /* Absent ids default as in llama.cpp for a SentencePiece vocabulary. */
    if ((s = read_pieces(c, m, v)) || (s = token_id(c, m, K_BOS, 1, v->n, &v->bos_id)) ||
        (s = token_id(c, m, K_EOS, 2, v->n, &v->eos_id)) ||
        (s = token_id(c, m, K_UNK, 0, v->n, &v->unk_id)))
        return s;
    if (!m->types.present) { /* the special ids, now known, are what the types mark */
        if (v->unk_id >= 0)
            v->types[v->unk_id] = MDI_PIECE_UNKNOWN;
        if (v->bos_id >= 0)
            v->types[v->bos_id] = MDI_PIECE_CONTROL;
        if (v->eos_id >= 0)
            v->types[v->eos_id] = MDI_PIECE_CONTROL;
    }
    if (m->num[K_ADD_BOS].present && !m->num[K_ADD_BOS].i)
        return cv_gguf_err(c, MDI_ERR_UNSUPPORTED,
                           "tokenizer.ggml.add_bos_token is false: prompts without BOS are not "
                           "supported");
    if (m->num[K_ADD_EOS].present && m->num[K_ADD_EOS].i)
        return cv_gguf_err(c, MDI_ERR_UNSUPPORTED,
                           "tokenizer.ggml.add_eos_token is true: prompts ending in EOS are not "
                           "supported");
    v->add_dummy_prefix = m->num[K_ADD_SPACE].present ? m->num[K_ADD_SPACE].i != 0 : 1;
    if ((s = mdi_vocab_validate(v, c->err)) != MDI_OK)
        return cv_gguf_err(c, s, "tokenizer: %s", c->err ? c->err->msg : "");
    return MDI_OK;
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
        return cv_pread_full(g->fd, out, n * 4, g->data_off + t->off, g->path, err);
    /* 16-bit values go in the upper half of out and widen in place, front to back:
     * out[i] (bytes 4i..4i+3) never overwrites a half at byte 2n + 2j with j > i. */
    unsigned char *half = (unsigned char *)out + n * 2;
    mdi_status s = cv_pread_full(g->fd, half, n * 2, g->data_off + t->off, g->path, err);
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
        return cv_gguf_err(c, MDI_ERR_NOMEM, "out of memory");
    uint64_t n_tensors = 0, align = 32;
    mdi_status s = cv_gguf_read_header(c, m, &n_tensors, &align);
    if (s == MDI_OK)
        s = cv_gguf_meta_config(c, m, &src->cfg);
    if (s == MDI_OK) {
        g->n_layers = src->cfg.n_layers;
        g->t = calloc((size_t)(g->n_layers + 1) * MDI_T_COUNT, sizeof *g->t);
        if (!g->t)
            s = cv_gguf_err(c, MDI_ERR_NOMEM, "out of memory for the tensor table");
    }
    if (s == MDI_OK)
        s = read_tensors(c, g, &src->cfg, n_tensors, align);
    if (s == MDI_OK)
        s = read_vocab(c, m, src->cfg.vocab_size, &src->vocab);
    uint64_t h = MDI_FNV_INIT;
    if (s == MDI_OK && (s = cv_hash_fd(g->fd, c->size, c->path, &h, c->err)) == MDI_OK)
        cv_model_id(h, src->model_id);
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
    g->fd = open(path, O_RDONLY | O_NONBLOCK); /* a FIFO is not waited on */
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

/* Reader for Hugging Face Llama checkpoint directories (config.json + safetensors).
 *
 * Safetensors file: u64 header length N, N bytes of JSON
 * {name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {...}},
 * then the data section; offsets are relative to byte 8 + N. Sharded
 * checkpoints list their files in model.safetensors.index.json ("weight_map").
 * HF stores q_proj/k_proj rows permuted for rotate-half RoPE; reads undo that
 * per head so tensors come out in the interleaved (Meta) order:
 * HF row h*d + i (i < d/2) is our row h*d + 2i, HF row h*d + d/2 + i is our row h*d + 2i + 1. */
#include "convert.h"
#include "json.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the safetensors reader assumes a little-endian host"
#endif

#define HF_MAX_CONFIG ((size_t)16 << 20)
#define HF_MAX_INDEX ((size_t)64 << 20)
#define HF_MAX_HEADER ((uint64_t)100 << 20) /* the safetensors specification's limit */
#define HF_PATH_MAX 4096

typedef enum { HF_F32 = 0, HF_F16, HF_BF16 } hf_dtype;

/* One safetensors file. */
typedef struct hf_file {
    char path[HF_PATH_MAX];
    int fd;
    uint64_t size, data_off;
} hf_file;

/* Where one tensor of the model lives. */
typedef struct hf_tensor {
    int present;
    hf_dtype dtype;
    size_t file;
    uint64_t off, bytes; /* absolute file offset and length */
} hf_tensor;

typedef struct hf_impl {
    char dir[HF_PATH_MAX];
    hf_file *files;
    size_t n_files;
    int32_t n_layers;
    hf_tensor *t;   /* ((n_layers + 1) * MDI_T_COUNT): [layer][kind], extras in row n_layers */
    float *scratch; /* (head_dim, dim): one head of q/k rows while un-permuting */
} hf_impl;

/* HF tensor names by kind; per-layer ones follow "model.layers.N.". */
static const char *const hf_names[MDI_T_COUNT] = {[MDI_T_ATTN_NORM] = "input_layernorm.weight",
                                                  [MDI_T_WQ] = "self_attn.q_proj.weight",
                                                  [MDI_T_WK] = "self_attn.k_proj.weight",
                                                  [MDI_T_WV] = "self_attn.v_proj.weight",
                                                  [MDI_T_WO] = "self_attn.o_proj.weight",
                                                  [MDI_T_FFN_NORM] =
                                                      "post_attention_layernorm.weight",
                                                  [MDI_T_W1] = "mlp.gate_proj.weight",
                                                  [MDI_T_W2] = "mlp.down_proj.weight",
                                                  [MDI_T_W3] = "mlp.up_proj.weight",
                                                  [MDI_T_EMBED] = "model.embed_tokens.weight",
                                                  [MDI_T_FINAL_NORM] = "model.norm.weight",
                                                  [MDI_T_OUTPUT] = "lm_head.weight"};

/* Prefix the message already in err with "what: " (copying first: it is the source). */
static mdi_status prefix_err(mdi_err *err, mdi_status s, const char *what)
{
    char msg[MDI_ERR_MSG_MAX];
    if (!err)
        return s;
    snprintf(msg, sizeof msg, "%s", err->msg);
    return mdi_errf(err, s, "%s: %s", what, msg);
}

/* Fold the whole content of path into the FNV-1a hash *h. */
static mdi_status hash_path(const char *path, uint64_t *h, mdi_err *err)
{
    struct stat sb;
    int fd = open(path, O_RDONLY | O_NONBLOCK); /* a FIFO is not waited on */
    if (fd < 0)
        return mdi_errf(err, MDI_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    mdi_status s = fstat(fd, &sb) != 0 ? mdi_errf(err, MDI_ERR_IO, "%s: cannot stat", path)
                   : !S_ISREG(sb.st_mode)
                       ? mdi_errf(err, MDI_ERR_IO, "%s: not a regular file", path)
                       : cv_hash_fd(fd, (uint64_t)sb.st_size, path, h, err);
    close(fd);
    return s;
}

/* dir + "/" + name into out (HF_PATH_MAX bytes). */
static mdi_status join(const char *dir, const char *name, char *out, mdi_err *err)
{
    int n = snprintf(out, HF_PATH_MAX, "%s/%s", dir, name);
    if (n < 0 || n >= HF_PATH_MAX)
        return mdi_errf(err, MDI_ERR_ARG, "%s/%s: path too long", dir, name);
    return MDI_OK;
}

/* ---- config.json ------------------------------------------------------------ */

/* Integer field key of config.json as int32 in [lo, hi]; def when absent or null (unless required).
 */
static mdi_status cfg_int(const cv_json *j, const char *path, const char *key, int required,
                          int64_t def, int64_t lo, int64_t hi, int32_t *out, mdi_err *err)
{
    const cv_json *v = cv_json_get(j, key);
    int64_t x = def;
    if (!v || cv_json_is_null(v)) {
        if (required)
            return mdi_errf(err, MDI_ERR_FORMAT, "%s: '%s' is missing", path, key);
    } else if (!cv_json_as_int64(v, &x)) {
        return mdi_errf(err, MDI_ERR_FORMAT, "%s: '%s' is a %s, expected an integer", path, key,
                        cv_json_type_name(cv_json_type_of(v)));
    }
    if (x < lo || x > hi)
        return mdi_errf(err, MDI_ERR_RANGE, "%s: '%s' = %lld is outside [%lld, %lld]", path, key,
                        (long long)x, (long long)lo, (long long)hi);
    *out = (int32_t)x;
    return MDI_OK;
}

/* The number v (present, not null) as a float32; `what` names it in messages. */
static mdi_status json_float(const cv_json *v, const char *path, const char *what, float *out,
                             mdi_err *err)
{
    double x;
    if (!cv_json_as_double(v, &x))
        return mdi_errf(err, MDI_ERR_FORMAT, "%s: '%s' is a %s, expected a number", path, what,
                        cv_json_type_name(cv_json_type_of(v)));
    if (!cv_fits_float(x))
        return mdi_errf(err, MDI_ERR_RANGE, "%s: '%s' = %g is outside the float32 range", path,
                        what, x);
    *out = (float)x;
    return MDI_OK;
}

/* Number field key of config.json; def when absent or null. */
static mdi_status cfg_float(const cv_json *j, const char *path, const char *key, float def,
                            float *out, mdi_err *err)
{
    const cv_json *v = cv_json_get(j, key);
    *out = def;
    return v && !cv_json_is_null(v) ? json_float(v, path, key, out, err) : MDI_OK;
}

/* Token id field: an integer, the first of an array of integers, or absent/null (-1). */
static mdi_status cfg_token(const cv_json *j, const char *path, const char *key, int32_t *out,
                            mdi_err *err)
{
    const cv_json *v = cv_json_get(j, key);
    int64_t x;
    *out = -1;
    if (cv_json_type_of(v) == CV_JSON_ARRAY)
        v = cv_json_at(v, 0); /* several end ids (Llama 3): the first is the main one */
    if (!v || cv_json_is_null(v))
        return MDI_OK;
    if (!cv_json_as_int64(v, &x) || x < 0 || x >= MDI_MAX_VOCAB)
        return mdi_errf(err, MDI_ERR_RANGE, "%s: '%s' is not a token id", path, key);
    *out = (int32_t)x;
    return MDI_OK;
}

/* Boolean field key: 0 when absent or null; a value of another type is an error. */
static mdi_status cfg_bool(const cv_json *j, const char *path, const char *key, int *out,
                           mdi_err *err)
{
    const cv_json *v = cv_json_get(j, key);
    *out = 0;
    if (v && !cv_json_is_null(v) && !cv_json_as_bool(v, out))
        return mdi_errf(err, MDI_ERR_FORMAT, "%s: '%s' is a %s, expected a bool", path, key,
                        cv_json_type_name(cv_json_type_of(v)));
    return MDI_OK;
}

/* RoPE settings: rope_scaling (transformers 4) or rope_parameters (5) must be null,
 * absent, or of rope_type "default"; rope_theta comes from rope_parameters when
 * it has one, else from the top level (default 10000). */
static mdi_status cfg_rope(const cv_json *j, const char *path, float *theta, mdi_err *err)
{
    static const char *const keys[2] = {"rope_scaling", "rope_parameters"};
    mdi_status s = cfg_float(j, path, "rope_theta", 10000.0f, theta, err);
    for (int k = 0; k < 2 && s == MDI_OK; k++) {
        const cv_json *r = cv_json_get(j, keys[k]);
        if (!r || cv_json_is_null(r))
            continue;
        const cv_json *tj = cv_json_get(r, "rope_type");
        const char *type = cv_json_as_string(tj ? tj : cv_json_get(r, "type"), NULL);
        if (cv_json_type_of(r) != CV_JSON_OBJECT || !type || strcmp(type, "default") != 0)
            return mdi_errf(err, MDI_ERR_UNSUPPORTED,
                            "%s: %s of rope_type '%s' is not supported (only null, absent or "
                            "\"default\": no rope scaling)",
                            path, keys[k], type ? type : "?");
        const cv_json *t = cv_json_get(r, "rope_theta");
        if (t && !cv_json_is_null(t)) {
            char what[32];
            snprintf(what, sizeof what, "%s.rope_theta", keys[k]);
            s = json_float(t, path, what, theta, err);
        }
    }
    return s;
}

/* Reject configs that are not a plain Llama: other architectures or model types,
 * rope scaling, sliding-window attention, biases, activations other than silu. */
static mdi_status cfg_check_llama(const cv_json *j, const char *path, mdi_err *err)
{
    const cv_json *arch = cv_json_get(j, "architectures"), *mtj = cv_json_get(j, "model_type");
    const char *mt = cv_json_as_string(mtj, NULL);
    int llama_arch = 0, b = 0;
    mdi_status s;
    for (size_t i = 0; i < cv_json_count(arch); i++) {
        const char *a = cv_json_as_string(cv_json_at(arch, i), NULL);
        llama_arch |= a && strcmp(a, "LlamaForCausalLM") == 0;
    }
    /* Both, when given, must say Llama; at least one must be given. */
    if ((mtj && !cv_json_is_null(mtj) && (!mt || strcmp(mt, "llama") != 0)) ||
        (cv_json_count(arch) > 0 && !llama_arch) || (!mt && !llama_arch)) {
        const char *a0 = cv_json_as_string(cv_json_at(arch, 0), NULL);
        return mdi_errf(err, MDI_ERR_UNSUPPORTED,
                        "%s: architectures ['%s'] / model_type '%s' is not a Llama model "
                        "(LlamaForCausalLM, model_type llama)",
                        path, a0 ? a0 : "", mt ? mt : "");
    }
    const cv_json *sw = cv_json_get(j, "sliding_window");
    if (sw && !cv_json_is_null(sw))
        return mdi_errf(err, MDI_ERR_UNSUPPORTED,
                        "%s: sliding_window attention is not supported (it must be null or "
                        "absent)",
                        path);
    const cv_json *actj = cv_json_get(j, "hidden_act");
    const char *act = cv_json_as_string(actj, NULL);
    if (actj && !act)
        return mdi_errf(err, MDI_ERR_FORMAT, "%s: hidden_act is not a string (\"silu\" expected)",
                        path);
    if (actj && strcmp(act, "silu") != 0)
        return mdi_errf(err, MDI_ERR_UNSUPPORTED,
                        "%s: hidden_act '%s' is not supported (only silu)", path, act);
    static const char *const biases[2] = {"attention_bias", "mlp_bias"};
    for (int k = 0; k < 2; k++) {
        if ((s = cfg_bool(j, path, biases[k], &b, err)) != MDI_OK)
            return s;
        if (b)
            return mdi_errf(err, MDI_ERR_UNSUPPORTED, "%s: %s is not supported", path, biases[k]);
    }
    return MDI_OK;
}

/* Geometry and special token ids from config.json. */
static mdi_status hf_config(const cv_json *j, const char *path, mdi_config *c, int32_t *bos,
                            int32_t *eos, mdi_err *err)
{
    mdi_status s;
    if (cv_json_type_of(j) != CV_JSON_OBJECT)
        return mdi_errf(err, MDI_ERR_FORMAT, "%s: not a JSON object", path);
    if ((s = cfg_check_llama(j, path, err)) != MDI_OK)
        return s;
    memset(c, 0, sizeof *c);
    if ((s = cfg_int(j, path, "hidden_size", 1, 0, 1, MDI_MAX_DIM, &c->dim, err)) ||
        (s = cfg_int(j, path, "intermediate_size", 1, 0, 1, MDI_MAX_HIDDEN, &c->hidden_dim, err)) ||
        (s = cfg_int(j, path, "num_hidden_layers", 1, 0, 1, MDI_MAX_LAYERS, &c->n_layers, err)) ||
        (s = cfg_int(j, path, "num_attention_heads", 1, 0, 1, MDI_MAX_HEADS, &c->n_heads, err)) ||
        (s = cfg_int(j, path, "num_key_value_heads", 0, c->n_heads, 1, MDI_MAX_HEADS,
                     &c->n_kv_heads, err)) ||
        (s = cfg_int(j, path, "head_dim", 0, c->dim / c->n_heads, 1, MDI_MAX_HEAD_DIM, &c->head_dim,
                     err)) ||
        (s = cfg_int(j, path, "vocab_size", 1, 0, 1, MDI_MAX_VOCAB, &c->vocab_size, err)) ||
        (s = cfg_int(j, path, "max_position_embeddings", 1, 0, 1, MDI_MAX_SEQ, &c->max_seq_len,
                     err)) ||
        (s = cfg_float(j, path, "rms_norm_eps", 1e-6f, &c->norm_eps, err)) ||
        (s = cfg_rope(j, path, &c->rope_theta, err)) ||
        (s = cfg_token(j, path, "bos_token_id", bos, err)) ||
        (s = cfg_token(j, path, "eos_token_id", eos, err)))
        return s;
    int tied = 0;
    if ((s = cfg_bool(j, path, "tie_word_embeddings", &tied, err)) != MDI_OK)
        return s;
    c->tied_head = tied;
    static const mdi_config_names hf_cfg_names = {
        "hidden_size",         "intermediate_size", "num_hidden_layers", "num_attention_heads",
        "num_key_value_heads", "head_dim",          "vocab_size",        "max_position_embeddings",
        "tie_word_embeddings", "rope_theta",        "rms_norm_eps"};
    if ((s = mdi_config_validate_as(c, &hf_cfg_names, err)) != MDI_OK)
        return prefix_err(err, s, path);
    return MDI_OK;
}

/* ---- safetensors -------------------------------------------------------------- */

/* The slot of (kind, layer) in h->t. */
static hf_tensor *slot(const hf_impl *h, mdi_tensor_kind kind, int32_t layer)
{
    int32_t row = mdi_tensor_scope_of(kind) == MDI_SCOPE_LAYER ? layer : h->n_layers;
    return &h->t[(size_t)row * MDI_T_COUNT + (size_t)kind];
}

/* HF name of (kind, layer) into buf (for messages). */
static const char *tensor_name(mdi_tensor_kind kind, int32_t layer, char *buf, size_t cap)
{
    if (mdi_tensor_scope_of(kind) == MDI_SCOPE_LAYER)
        snprintf(buf, cap, "model.layers.%d.%s", (int)layer, hf_names[kind]);
    else
        snprintf(buf, cap, "%s", hf_names[kind]);
    return buf;
}

/* Map a tensor name to (kind, layer): 1 found, 0 not a Llama tensor, -1 a buffer to ignore. */
static int map_name(const char *name, int32_t n_layers, mdi_tensor_kind *kind, int32_t *layer)
{
    const char *suffix = name;
    *layer = -1;
    if (strncmp(name, "model.layers.", 13) == 0) {
        if (!(suffix = cv_layer_suffix(name, "model.layers.", n_layers, layer)))
            return 0;
        if (strcmp(suffix, "self_attn.rotary_emb.inv_freq") == 0)
            return -1; /* a precomputed RoPE table some old checkpoints carry */
    }
    for (int k = 0; k < MDI_T_COUNT; k++) {
        int per_layer = mdi_tensor_scope_of((mdi_tensor_kind)k) == MDI_SCOPE_LAYER;
        if (per_layer == (*layer >= 0) && strcmp(suffix, hf_names[k]) == 0) {
            *kind = (mdi_tensor_kind)k;
            return 1;
        }
    }
    return 0;
}

/* "[a, b, ...]" of a JSON shape array into buf, for messages. */
static const char *shape_str(const cv_json *shape, char *buf, size_t cap)
{
    size_t k = (size_t)snprintf(buf, cap, "[");
    for (size_t i = 0; i < cv_json_count(shape) && k < cap; i++) {
        int64_t d = -1;
        cv_json_as_int64(cv_json_at(shape, i), &d);
        k += (size_t)snprintf(buf + k, cap - k, "%s%lld", i ? ", " : "", (long long)d);
    }
    if (k < cap)
        snprintf(buf + k, cap - k, "]");
    return buf;
}

/* Whether a JSON shape is exactly [rows, cols] (matrix) or [rows] (vector). */
static int shape_matches(const cv_json *shape, int matrix, size_t rows, size_t cols)
{
    int64_t d0 = -1, d1 = -1;
    size_t nd = cv_json_count(shape);
    if (cv_json_type_of(shape) != CV_JSON_ARRAY || nd != (matrix ? 2u : 1u) ||
        !cv_json_as_int64(cv_json_at(shape, 0), &d0) ||
        (matrix && !cv_json_as_int64(cv_json_at(shape, 1), &d1)))
        return 0;
    return (uint64_t)d0 == rows && (!matrix || (uint64_t)d1 == cols);
}

/* Check one header entry of file fi against the config and the file size, and record it. */
static mdi_status st_entry(hf_impl *h, size_t fi, const mdi_config *cfg, const char *name,
                           const cv_json *val, mdi_err *err)
{
    const hf_file *f = &h->files[fi];
    mdi_tensor_kind kind;
    int32_t layer;
    int m = map_name(name, cfg->n_layers, &kind, &layer);
    if (m < 0)
        return MDI_OK;
    if (m == 0)
        return mdi_errf(err, MDI_ERR_FORMAT,
                        "%s: unexpected tensor '%s' (not part of a %d-layer Llama model)", f->path,
                        name, (int)cfg->n_layers);
    const char *dt = cv_json_as_string(cv_json_get(val, "dtype"), NULL);
    const cv_json *shape = cv_json_get(val, "shape"), *offs = cv_json_get(val, "data_offsets");
    int64_t b = -1, e = -1;
    if (!dt || cv_json_type_of(offs) != CV_JSON_ARRAY || cv_json_count(offs) != 2 ||
        !cv_json_as_int64(cv_json_at(offs, 0), &b) || !cv_json_as_int64(cv_json_at(offs, 1), &e))
        return mdi_errf(err, MDI_ERR_FORMAT,
                        "%s: tensor '%s' needs a dtype string and two integer data_offsets",
                        f->path, name);
    hf_dtype d = HF_F32;
    if (strcmp(dt, "F16") == 0)
        d = HF_F16;
    else if (strcmp(dt, "BF16") == 0)
        d = HF_BF16;
    else if (strcmp(dt, "F32") != 0)
        return mdi_errf(err, MDI_ERR_UNSUPPORTED,
                        "%s: tensor '%s' has dtype %s; only F32, F16 and BF16 are supported",
                        f->path, name, dt);
    uint64_t room = f->size - f->data_off;
    if (b < 0 || e < b)
        return mdi_errf(err, MDI_ERR_FORMAT,
                        "%s: tensor '%s' data_offsets [%lld, %lld] are not a range (begin must be "
                        "at least 0 and at most end)",
                        f->path, name, (long long)b, (long long)e);
    if ((uint64_t)e > room)
        return mdi_errf(err, MDI_ERR_FORMAT,
                        "%s: tensor '%s' data_offsets [%lld, %lld] run past end of file (data "
                        "section of %llu bytes at offset %llu, file size %llu)",
                        f->path, name, (long long)b, (long long)e, (unsigned long long)room,
                        (unsigned long long)f->data_off, (unsigned long long)f->size);
    size_t rows, cols;
    char sbuf[96];
    mdi_tensor_shape(cfg, kind, &rows, &cols);
    if (!shape_matches(shape, mdi_tensor_is_matrix(kind), rows, cols)) {
        char want[64];
        if (mdi_tensor_is_matrix(kind))
            snprintf(want, sizeof want, "[%zu, %zu]", rows, cols);
        else
            snprintf(want, sizeof want, "[%zu]", rows);
        return mdi_errf(err, MDI_ERR_MISMATCH,
                        "%s: tensor '%s' has shape %s, expected %s from config.json", f->path, name,
                        shape_str(shape, sbuf, sizeof sbuf), want);
    }
    uint64_t bytes = (uint64_t)rows * cols * (d == HF_F32 ? 4 : 2);
    if ((uint64_t)(e - b) != bytes)
        return mdi_errf(err, MDI_ERR_FORMAT,
                        "%s: tensor '%s' data_offsets [%lld, %lld] hold %lld bytes, but shape %s "
                        "of %s needs %llu",
                        f->path, name, (long long)b, (long long)e, (long long)(e - b),
                        shape_str(shape, sbuf, sizeof sbuf), dt, (unsigned long long)bytes);
    hf_tensor *t = slot(h, kind, layer);
    if (t->present)
        return mdi_errf(err, MDI_ERR_FORMAT, "%s: tensor '%s' appears twice (also in %s)", f->path,
                        name, h->files[t->file].path);
    *t = (hf_tensor){1, d, fi, f->data_off + (uint64_t)b, bytes};
    return MDI_OK;
}

/* Open safetensors file fi, check its header and record its tensors. */
static mdi_status st_open(hf_impl *h, size_t fi, const mdi_config *cfg, mdi_err *err)
{
    hf_file *f = &h->files[fi];
    struct stat st;
    uint64_t n = 0;
    f->fd = open(f->path, O_RDONLY | O_NONBLOCK); /* a FIFO is not waited on */
    if (f->fd < 0)
        return mdi_errf(err, MDI_ERR_IO, "%s: cannot open: %s", f->path, strerror(errno));
    if (fstat(f->fd, &st) != 0 || !S_ISREG(st.st_mode))
        return mdi_errf(err, MDI_ERR_IO, "%s: not a regular file", f->path);
    f->size = (uint64_t)st.st_size;
    if (f->size < 8)
        return mdi_errf(err, MDI_ERR_FORMAT,
                        "%s: header length at offset 0 + 8 bytes runs past end of file (size %llu)",
                        f->path, (unsigned long long)f->size);
    mdi_status s = cv_pread_full(f->fd, &n, 8, 0, f->path, err);
    if (s == MDI_OK && n > f->size - 8)
        s = mdi_errf(err, MDI_ERR_FORMAT,
                     "%s: header length %llu at offset 8 runs past end of file (size %llu)",
                     f->path, (unsigned long long)n, (unsigned long long)f->size);
    if (s == MDI_OK && n > HF_MAX_HEADER)
        s = mdi_errf(err, MDI_ERR_FORMAT, "%s: header length %llu exceeds the limit of %llu",
                     f->path, (unsigned long long)n, (unsigned long long)HF_MAX_HEADER);
    if (s != MDI_OK)
        return s;
    f->data_off = 8 + n;
    char *buf = malloc(n ? (size_t)n : 1);
    cv_json *hdr = NULL;
    if (!buf)
        return mdi_errf(err, MDI_ERR_NOMEM, "%s: out of memory for a %llu-byte header", f->path,
                        (unsigned long long)n);
    s = cv_pread_full(f->fd, buf, (size_t)n, 8, f->path, err);
    if (s == MDI_OK)
        s = cv_json_parse(buf, (size_t)n, f->path, &hdr, err);
    free(buf);
    if (s == MDI_OK && cv_json_type_of(hdr) != CV_JSON_OBJECT)
        s = mdi_errf(err, MDI_ERR_FORMAT, "%s: header is not a JSON object", f->path);
    for (size_t i = 0; s == MDI_OK && i < cv_json_count(hdr); i++) {
        const char *key = cv_json_key_at(hdr, i);
        if (strcmp(key, "__metadata__") != 0)
            s = st_entry(h, fi, cfg, key, cv_json_at(hdr, i), err);
    }
    cv_json_free(hdr);
    return s;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Allocate h->files for n file names inside h->dir (not yet opened). */
static mdi_status alloc_files(hf_impl *h, const char *const *names, size_t n, mdi_err *err)
{
    mdi_status s = MDI_OK;
    h->files = calloc(n, sizeof *h->files);
    if (!h->files)
        return mdi_errf(err, MDI_ERR_NOMEM, "%s: out of memory", h->dir);
    h->n_files = n;
    for (size_t i = 0; i < n; i++)
        h->files[i].fd = -1;
    for (size_t i = 0; i < n && s == MDI_OK; i++)
        s = join(h->dir, names[i], h->files[i].path, err);
    return s;
}

/* The weight files: model.safetensors, or the sorted distinct files of the index's weight_map. */
static mdi_status list_files(hf_impl *h, cv_json **index, mdi_err *err)
{
    char path[HF_PATH_MAX];
    struct stat st;
    mdi_status s = join(h->dir, "model.safetensors.index.json", path, err);
    if (s == MDI_OK && stat(path, &st) != 0) {
        const char *single = "model.safetensors";
        if ((s = alloc_files(h, &single, 1, err)) == MDI_OK && stat(h->files[0].path, &st) != 0)
            s = mdi_errf(err, MDI_ERR_IO,
                         "%s has neither model.safetensors nor model.safetensors.index.json",
                         h->dir);
        return s;
    }
    if (s == MDI_OK)
        s = cv_json_parse_file(path, HF_MAX_INDEX, index, err);
    const cv_json *wm = cv_json_get(*index, "weight_map");
    size_t n = cv_json_count(wm), u = 0;
    if (s == MDI_OK && (cv_json_type_of(wm) != CV_JSON_OBJECT || n == 0))
        s = mdi_errf(err, MDI_ERR_FORMAT, "%s: 'weight_map' is missing or empty", path);
    const char **names = s == MDI_OK ? malloc(n * sizeof *names) : NULL;
    if (s == MDI_OK && !names)
        s = mdi_errf(err, MDI_ERR_NOMEM, "%s: out of memory", path);
    for (size_t i = 0; s == MDI_OK && i < n; i++) {
        names[i] = cv_json_as_string(cv_json_at(wm, i), NULL);
        if (!names[i] || !names[i][0] || names[i][0] == '.' || strchr(names[i], '/'))
            s = mdi_errf(err, MDI_ERR_FORMAT,
                         "%s: weight_map entry '%s' does not name a file in the directory", path,
                         cv_json_key_at(wm, i));
    }
    if (s == MDI_OK) {
        qsort(names, n, sizeof *names, cmp_str);
        for (size_t i = 0; i < n; i++)
            if (u == 0 || strcmp(names[u - 1], names[i]) != 0)
                names[u++] = names[i];
        s = alloc_files(h, names, u, err);
    }
    free(names);
    return s;
}

/* Each weight_map entry we use must be in the file the index names. */
static mdi_status check_index(const hf_impl *h, const cv_json *index, mdi_err *err)
{
    const cv_json *wm = cv_json_get(index, "weight_map");
    for (size_t i = 0; i < cv_json_count(wm); i++) {
        const char *name = cv_json_key_at(wm, i),
                   *file = cv_json_as_string(cv_json_at(wm, i), NULL);
        mdi_tensor_kind kind;
        int32_t layer;
        if (map_name(name, h->n_layers, &kind, &layer) != 1)
            continue;
        const hf_tensor *t = slot(h, kind, layer);
        const char *p = t->present ? h->files[t->file].path : "";
        size_t lp = strlen(p), lf = strlen(file);
        if (!t->present || lp <= lf || p[lp - lf - 1] != '/' || strcmp(p + lp - lf, file) != 0)
            return mdi_errf(err, MDI_ERR_MISMATCH,
                            "%s/model.safetensors.index.json: weight_map puts '%s' in %s, but %s",
                            h->dir, name, file,
                            t->present ? "it is in another file" : "no file holds it");
    }
    return MDI_OK;
}

/* Every tensor the config needs must be present. */
static mdi_status check_complete(const hf_impl *h, const mdi_config *cfg, mdi_err *err)
{
    char name[128];
    for (int32_t l = 0; l <= cfg->n_layers; l++) {
        for (int k = 0; k < MDI_T_COUNT; k++) {
            mdi_tensor_kind kind = (mdi_tensor_kind)k;
            int per_layer = mdi_tensor_scope_of(kind) == MDI_SCOPE_LAYER;
            if (per_layer != (l < cfg->n_layers) || !mdi_tensor_present(cfg, kind) ||
                slot(h, kind, l)->present)
                continue;
            return mdi_errf(err, MDI_ERR_FORMAT, "%s: tensor '%s' is missing%s", h->dir,
                            tensor_name(kind, l, name, sizeof name),
                            kind == MDI_T_OUTPUT ? " and tie_word_embeddings is false" : "");
        }
    }
    return MDI_OK;
}

/* cv_extent_fn over an hf_impl: absolute offsets in file t->file. */
static int hf_extent(const void *ctx, mdi_tensor_kind kind, int32_t layer, cv_extent *e)
{
    const hf_tensor *t = slot(ctx, kind, layer);
    e->off = t->off;
    e->bytes = t->bytes;
    e->file = t->file;
    return t->present;
}

/* No two tensors share bytes of a file. */
static mdi_status check_overlap(const hf_impl *h, const mdi_config *cfg, mdi_err *err)
{
    cv_extent a, b;
    char na[128], nb[128];
    int r = cv_check_overlap(cfg, hf_extent, h, &a, &b);
    if (r < 0)
        return mdi_errf(err, MDI_ERR_NOMEM, "%s: out of memory for the tensor table", h->dir);
    if (r == 0)
        return MDI_OK;
    const hf_file *f = &h->files[a.file];
    return mdi_errf(err, MDI_ERR_FORMAT,
                    "%s: tensors '%s' (data_offsets [%llu, %llu]) and '%s' ([%llu, %llu]) overlap",
                    f->path, tensor_name((mdi_tensor_kind)a.kind, a.layer, na, sizeof na),
                    (unsigned long long)(a.off - f->data_off),
                    (unsigned long long)(a.off - f->data_off + a.bytes),
                    tensor_name((mdi_tensor_kind)b.kind, b.layer, nb, sizeof nb),
                    (unsigned long long)(b.off - f->data_off),
                    (unsigned long long)(b.off - f->data_off + b.bytes));
}

/* ---- tokenizer, reads, open ----------------------------------------------------- */

/* The vocabulary: tok_path if given, else DIR/tokenizer.model; config bos/eos override. */
static mdi_status hf_tokenizer(const char *dir, const char *tok_path, const mdi_config *cfg,
                               int32_t bos, int32_t eos, mdi_vocab *v, mdi_err *err)
{
    char path[HF_PATH_MAX];
    struct stat st;
    mdi_status s = MDI_OK;
    if (tok_path) {
        s = cv_read_tokenizer_file(tok_path, 0, v, err);
    } else if ((s = join(dir, "tokenizer.model", path, err)) == MDI_OK) {
        if (stat(path, &st) != 0)
            return mdi_errf(err, MDI_ERR_IO,
                            "%s has no tokenizer.model (tokenizer.json-only checkpoints are not "
                            "supported); pass --tokenizer FILE",
                            dir);
        s = cv_read_spm_model(path, v, err);
    }
    if (s != MDI_OK)
        return s;
    const char *what = tok_path ? tok_path : path;
    if (v->n > cfg->vocab_size)
        return mdi_errf(err, MDI_ERR_MISMATCH,
                        "%s: %d pieces, more than vocab_size = %d in config.json", what, (int)v->n,
                        (int)cfg->vocab_size);
    if (bos >= v->n || eos >= v->n)
        return mdi_errf(err, MDI_ERR_RANGE,
                        "%s/config.json: bos_token_id %d / eos_token_id %d are not below the %d "
                        "pieces of %s",
                        dir, (int)bos, (int)eos, (int)v->n, what);
    if (bos >= 0)
        v->bos_id = bos;
    if (eos >= 0)
        v->eos_id = eos;
    return MDI_OK;
}

/* Undo HF's rotate-half permutation in place: w is (n_heads * d, cols); scratch holds d * cols. */
static void unpermute(float *w, size_t n_heads, size_t d, size_t cols, float *scratch)
{
    size_t half = d / 2, row = cols * sizeof(float);
    for (size_t h = 0; h < n_heads; h++) {
        float *head = w + h * d * cols;
        memcpy(scratch, head, d * row);
        for (size_t i = 0; i < half; i++) {
            memcpy(head + 2 * i * cols, scratch + i * cols, row);
            memcpy(head + (2 * i + 1) * cols, scratch + (half + i) * cols, row);
        }
    }
}

/* Read tensor (kind, layer) as float32 into out (rows * cols floats), canonical layout. */
static mdi_status hf_read(cv_source *src, mdi_tensor_kind kind, int32_t layer, float *out,
                          mdi_err *err)
{
    hf_impl *h = src->impl;
    if ((unsigned)kind >= MDI_T_COUNT || !mdi_tensor_present(&src->cfg, kind) ||
        (mdi_tensor_scope_of(kind) == MDI_SCOPE_LAYER && (layer < 0 || layer >= h->n_layers)))
        return mdi_errf(err, MDI_ERR_ARG, "%s: no tensor of kind %d for layer %d", h->dir,
                        (int)kind, (int)layer);
    const hf_tensor *t = slot(h, kind, layer);
    const hf_file *f = &h->files[t->file];
    size_t rows, cols;
    mdi_tensor_shape(&src->cfg, kind, &rows, &cols);
    size_t n = rows * cols;
    mdi_status s;
    if (t->dtype == HF_F32) {
        s = cv_pread_full(f->fd, out, n * 4, t->off, f->path, err);
    } else {
        /* 16-bit values go in the upper half of out and widen in place, front to back:
         * out[i] (bytes 4i..4i+3) never overwrites a half at byte 2n + 2j with j > i. */
        unsigned char *half = (unsigned char *)out + n * 2;
        s = cv_pread_full(f->fd, half, n * 2, t->off, f->path, err);
        for (size_t i = 0; s == MDI_OK && i < n; i++) {
            uint16_t v;
            memcpy(&v, half + 2 * i, 2);
            out[i] = t->dtype == HF_F16 ? cv_f16_to_f32(v) : cv_bf16_to_f32(v);
        }
    }
    if (s == MDI_OK && (kind == MDI_T_WQ || kind == MDI_T_WK))
        unpermute(out, rows / (size_t)src->cfg.head_dim, (size_t)src->cfg.head_dim, cols,
                  h->scratch);
    return s;
}

static void hf_close(cv_source *src)
{
    hf_impl *h = src->impl;
    if (!h)
        return;
    for (size_t i = 0; i < h->n_files; i++)
        if (h->files[i].fd >= 0)
            close(h->files[i].fd);
    free(h->files);
    free(h->t);
    free(h->scratch);
    free(h);
    src->impl = NULL;
}

/* model_id: FNV-1a over config.json then every safetensors file (sorted by name). */
static mdi_status hf_model_id(const hf_impl *h, char id[17], mdi_err *err)
{
    char path[HF_PATH_MAX];
    uint64_t fnv = MDI_FNV_INIT;
    mdi_status s = join(h->dir, "config.json", path, err);
    if (s == MDI_OK)
        s = hash_path(path, &fnv, err);
    for (size_t i = 0; s == MDI_OK && i < h->n_files; i++)
        s = hash_path(h->files[i].path, &fnv, err);
    cv_model_id(fnv, id);
    return s;
}

/* Everything after the impl exists: config, weight files, tokenizer, id. */
static mdi_status hf_open_all(hf_impl *h, cv_source *src, const char *tok_path, mdi_err *err)
{
    char path[HF_PATH_MAX];
    cv_json *cfg_json = NULL, *index = NULL;
    int32_t bos = -1, eos = -1;
    mdi_config *cfg = &src->cfg;
    mdi_status s = join(h->dir, "config.json", path, err);
    if (s == MDI_OK)
        s = cv_json_parse_file(path, HF_MAX_CONFIG, &cfg_json, err);
    if (s == MDI_OK)
        s = hf_config(cfg_json, path, cfg, &bos, &eos, err);
    cv_json_free(cfg_json);
    if (s == MDI_OK)
        s = list_files(h, &index, err);
    if (s == MDI_OK) {
        h->n_layers = cfg->n_layers;
        h->t = calloc((size_t)(cfg->n_layers + 1) * MDI_T_COUNT, sizeof *h->t);
        if (!h->t)
            s = mdi_errf(err, MDI_ERR_NOMEM, "%s: out of memory for the tensor table", h->dir);
    }
    for (size_t i = 0; s == MDI_OK && i < h->n_files; i++)
        s = st_open(h, i, cfg, err);
    if (s == MDI_OK && index)
        s = check_index(h, index, err);
    cv_json_free(index);
    if (s == MDI_OK)
        s = check_complete(h, cfg, err);
    if (s == MDI_OK)
        s = check_overlap(h, cfg, err);
    /* only once the files have been found to hold every tensor the config
     * describes: a config claiming huge dimensions allocates nothing first */
    if (s == MDI_OK &&
        !(h->scratch = malloc((size_t)cfg->head_dim * (size_t)cfg->dim * sizeof(float))))
        s = mdi_errf(err, MDI_ERR_NOMEM, "%s: out of memory for un-permuting q and k", h->dir);
    if (s == MDI_OK)
        s = join(h->dir, "tokenizer_config.json", path, err);
    if (s == MDI_OK)
        s = cv_check_tokenizer_config(path, err);
    if (s == MDI_OK)
        s = hf_tokenizer(h->dir, tok_path, cfg, bos, eos, &src->vocab, err);
    if (s == MDI_OK)
        s = hf_model_id(h, src->model_id, err);
    return s;
}

mdi_status cv_open_hf(const char *dir, const char *tokenizer_path, cv_source *src, mdi_err *err)
{
    memset(src, 0, sizeof *src);
    if (!dir || strlen(dir) + 64 >= HF_PATH_MAX)
        return mdi_errf(err, MDI_ERR_ARG, "checkpoint directory path is missing or too long");
    hf_impl *h = calloc(1, sizeof *h);
    if (!h)
        return mdi_errf(err, MDI_ERR_NOMEM, "%s: out of memory", dir);
    snprintf(h->dir, sizeof h->dir, "%s", dir);
    src->impl = h;
    src->read = hf_read;
    src->close = hf_close;
    src->kind = "hf";
    mdi_status s = hf_open_all(h, src, tokenizer_path, err);
    if (s != MDI_OK) {
        hf_close(src);
        mdi_vocab_free(&src->vocab);
        memset(src, 0, sizeof *src);
    }
    return s;
}

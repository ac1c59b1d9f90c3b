/* Synthetic models: any geometry, deterministic random weights, for tests and benchmarks.
 *
 * Weights are never stored: read() computes every value from (seed, tensor
 * kind, layer, element index) with a counter-based generator (splitmix64
 * finaliser), so any tensor comes out the same whatever the order of reads.
 * Matrices are uniform in [-1/sqrt(in), 1/sqrt(in)] (each output of W x has
 * variance 1/3 for a unit-RMS x, so the pre-norm residual stream grows only
 * slowly with depth and attention, a convex mix of values, keeps it bounded
 * over long generations); the token embedding is uniform in [-0.1, 0.1]; norm
 * weights are 1.
 *
 * spec is a preset name or the path of a JSON config file. The file may use
 * our attribute names (docs/FORMAT.md: dim, hidden_dim, n_layers, n_heads,
 * n_kv_heads, head_dim, vocab_size, max_seq_len, rope_theta, norm_eps,
 * tied_head) or Hugging Face config.json names (hidden_size,
 * intermediate_size, num_hidden_layers, num_attention_heads,
 * num_key_value_heads, head_dim, vocab_size, max_position_embeddings,
 * rope_theta, rms_norm_eps, tie_word_embeddings); other keys are ignored.
 * Required: dim, hidden_dim, n_layers, n_heads, vocab_size, max_seq_len.
 * Defaults: n_kv_heads = n_heads, head_dim = dim / n_heads, rope_theta 10000,
 * norm_eps 1e-5, tied_head 0. */
#include "convert.h"
#include "json.h"

#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SYN_MAX_CONFIG ((size_t)16 << 20)
#define SYN_GOLDEN 0x9E3779B97F4A7C15ULL
#define SYN_EMBED_SCALE 0.1f
#define SYN_BYTE_VOCAB 259 /* <unk>, <s>, </s> and 256 byte pieces */

typedef struct syn_impl {
    uint64_t seed;
} syn_impl;

static const struct {
    const char *name;
    mdi_config cfg;
} syn_presets[] = {
    {"tinyllama-1.1b", {2048, 5632, 22, 32, 4, 64, 32000, 2048, 10000.0f, 1e-5f, 0}},
    {"stories260k", {64, 172, 5, 8, 4, 8, 512, 512, 10000.0f, 1e-5f, 1}},
    {"stories260k-geometry", {64, 172, 5, 8, 4, 8, 512, 512, 10000.0f, 1e-5f, 1}},
    {"tiny", {64, 128, 4, 4, 2, 16, 512, 512, 10000.0f, 1e-5f, 0}},
};

/* A config field: our name, the Hugging Face name, where it goes, and its default. */
typedef enum { SYN_INT, SYN_FLOAT, SYN_FLAG } syn_field_type;
static const struct {
    const char *ours, *hf;
    size_t off;
    syn_field_type type;
    int required;
} syn_fields[] = {
    {"dim", "hidden_size", offsetof(mdi_config, dim), SYN_INT, 1},
    {"hidden_dim", "intermediate_size", offsetof(mdi_config, hidden_dim), SYN_INT, 1},
    {"n_layers", "num_hidden_layers", offsetof(mdi_config, n_layers), SYN_INT, 1},
    {"n_heads", "num_attention_heads", offsetof(mdi_config, n_heads), SYN_INT, 1},
    {"n_kv_heads", "num_key_value_heads", offsetof(mdi_config, n_kv_heads), SYN_INT, 0},
    {"head_dim", "head_dim", offsetof(mdi_config, head_dim), SYN_INT, 0},
    {"vocab_size", "vocab_size", offsetof(mdi_config, vocab_size), SYN_INT, 1},
    {"max_seq_len", "max_position_embeddings", offsetof(mdi_config, max_seq_len), SYN_INT, 1},
    {"rope_theta", "rope_theta", offsetof(mdi_config, rope_theta), SYN_FLOAT, 0},
    {"norm_eps", "rms_norm_eps", offsetof(mdi_config, norm_eps), SYN_FLOAT, 0},
    {"tied_head", "tie_word_embeddings", offsetof(mdi_config, tied_head), SYN_FLAG, 0},
};
#define SYN_N_FIELDS (sizeof syn_fields / sizeof syn_fields[0])

/* splitmix64 finaliser: a bijective 64-bit mix. */
static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

/* Store one field's value v into cfg. */
static void set_field(mdi_config *cfg, size_t f, double v)
{
    char *p = (char *)cfg + syn_fields[f].off;
    if (syn_fields[f].type == SYN_FLOAT) {
        float x = (float)v;
        memcpy(p, &x, sizeof x);
    } else {
        int32_t x = (int32_t)v;
        memcpy(p, &x, sizeof x);
    }
}

/* Value of field f from j into *v; *found 0 when neither name is present (or null). */
static mdi_status get_field(const cv_json *j, const char *path, size_t f, double *v, int *found,
                            mdi_err *err)
{
    const cv_json *a = cv_json_get(j, syn_fields[f].ours), *b = cv_json_get(j, syn_fields[f].hf);
    if (a && cv_json_is_null(a))
        a = NULL;
    if (b && cv_json_is_null(b))
        b = NULL;
    if (a && b && a != b)
        return mdi_errf(err, MDI_ERR_ARG, "%s: both '%s' and '%s' are given; use one", path,
                        syn_fields[f].ours, syn_fields[f].hf);
    const cv_json *x = a ? a : b;
    const char *name = a ? syn_fields[f].ours : syn_fields[f].hf;
    int64_t i;
    int flag;
    *found = x != NULL;
    if (!x)
        return MDI_OK;
    if (syn_fields[f].type == SYN_FLAG && cv_json_as_bool(x, &flag)) {
        *v = flag;
        return MDI_OK;
    }
    if (syn_fields[f].type == SYN_FLOAT ? !cv_json_as_double(x, v) : !cv_json_as_int64(x, &i))
        return mdi_errf(err, MDI_ERR_FORMAT, "%s: '%s' is a %s, expected %s", path, name,
                        cv_json_type_name(cv_json_type_of(x)),
                        syn_fields[f].type == SYN_FLOAT ? "a number" : "an integer");
    if (syn_fields[f].type != SYN_FLOAT) {
        if (i < INT32_MIN || i > INT32_MAX)
            return mdi_errf(err, MDI_ERR_RANGE, "%s: '%s' = %lld is out of range", path, name,
                            (long long)i);
        *v = (double)i;
    } else if (!cv_fits_float(*v)) {
        return mdi_errf(err, MDI_ERR_RANGE, "%s: '%s' = %g is outside the float32 range", path,
                        name, *v);
    }
    return MDI_OK;
}

/* Geometry from a JSON config file (either naming scheme, see the top of this file). */
static mdi_status config_from_file(const char *path, mdi_config *cfg, mdi_err *err)
{
    cv_json *j = NULL;
    mdi_status s = cv_json_parse_file(path, SYN_MAX_CONFIG, &j, err);
    if (s != MDI_OK)
        return s;
    const cv_json *rs = cv_json_get(j, "rope_scaling"), *rp = cv_json_get(j, "rope_parameters");
    if (cv_json_type_of(j) != CV_JSON_OBJECT)
        s = mdi_errf(err, MDI_ERR_FORMAT, "%s: not a JSON object", path);
    else if ((rs && !cv_json_is_null(rs)) || (rp && !cv_json_is_null(rp)))
        s = mdi_errf(err, MDI_ERR_UNSUPPORTED,
                     "%s: %s is not supported (give rope_theta at the top level)", path,
                     rs && !cv_json_is_null(rs) ? "rope_scaling" : "rope_parameters");
    memset(cfg, 0, sizeof *cfg);
    cfg->rope_theta = 10000.0f;
    cfg->norm_eps = 1e-5f;
    int has_kv = 0, has_hd = 0;
    for (size_t f = 0; s == MDI_OK && f < SYN_N_FIELDS; f++) {
        double v = 0;
        int found = 0;
        s = get_field(j, path, f, &v, &found, err);
        if (s == MDI_OK && !found && syn_fields[f].required)
            s = mdi_errf(err, MDI_ERR_FORMAT, "%s: '%s' (or '%s') is missing", path,
                         syn_fields[f].ours, syn_fields[f].hf);
        if (s == MDI_OK && found)
            set_field(cfg, f, v);
        has_kv |= found && syn_fields[f].off == offsetof(mdi_config, n_kv_heads);
        has_hd |= found && syn_fields[f].off == offsetof(mdi_config, head_dim);
    }
    cv_json_free(j);
    if (s != MDI_OK)
        return s;
    if (!has_kv)
        cfg->n_kv_heads = cfg->n_heads;
    if (!has_hd && cfg->n_heads > 0)
        cfg->head_dim = cfg->dim / cfg->n_heads;
    if ((s = mdi_config_validate(cfg, err)) != MDI_OK) {
        char msg[MDI_ERR_MSG_MAX];
        snprintf(msg, sizeof msg, "%s", err ? err->msg : "");
        return mdi_errf(err, s, "%s: %s", path, msg);
    }
    return MDI_OK;
}

/* Preset by name, else the JSON file at spec. */
static mdi_status synthetic_config(const char *spec, mdi_config *cfg, mdi_err *err)
{
    for (size_t i = 0; i < sizeof syn_presets / sizeof syn_presets[0]; i++) {
        if (strcmp(spec, syn_presets[i].name) == 0) {
            *cfg = syn_presets[i].cfg;
            return MDI_OK;
        }
    }
    FILE *fp = fopen(spec, "rb");
    if (!fp)
        return mdi_errf(err, MDI_ERR_ARG,
                        "'%s' is neither a preset (tinyllama-1.1b, stories260k, tiny) nor a "
                        "readable JSON config file",
                        spec);
    fclose(fp);
    return config_from_file(spec, cfg, err);
}

/* The byte-level vocabulary: <unk>, <s>, </s>, <0x00>..<0xFF>, then (when
 * there is room) U+2581 so that spaces encode to one piece and decode to a
 * space, then <unused_N> up to n. */
static mdi_status byte_vocab(int32_t n, mdi_vocab *v, mdi_err *err)
{
    static const char *const special[3] = {"<unk>", "<s>", "</s>"};
    static const int32_t special_type[3] = {MDI_PIECE_UNKNOWN, MDI_PIECE_CONTROL,
                                            MDI_PIECE_CONTROL};
    static const char space[] = "\xe2\x96\x81";
    char piece[32];
    uint64_t total = 5 + 3 + 4 + 256 * 6;
    for (int32_t i = SYN_BYTE_VOCAB; i < n; i++)
        total += i == SYN_BYTE_VOCAB ? 3
                                     : (uint64_t)snprintf(piece, sizeof piece, "<unused_%d>",
                                                          (int)(i - SYN_BYTE_VOCAB - 1));
    mdi_status s = mdi_vocab_alloc(v, n, total, err);
    if (s != MDI_OK)
        return s;
    uint64_t off = 0;
    for (int32_t i = 0; i < n; i++) {
        int len;
        if (i < 3)
            len = snprintf(piece, sizeof piece, "%s", special[i]);
        else if (i < SYN_BYTE_VOCAB)
            len = snprintf(piece, sizeof piece, "<0x%02X>", (unsigned)(i - 3));
        else if (i == SYN_BYTE_VOCAB)
            len = snprintf(piece, sizeof piece, "%s", space);
        else
            len = snprintf(piece, sizeof piece, "<unused_%d>", (int)(i - SYN_BYTE_VOCAB - 1));
        memcpy(v->bytes + off, piece, (size_t)len);
        off += (uint64_t)len;
        v->offsets[i + 1] = off;
        v->scores[i] = 0.0f;
        v->types[i] = i < 3                 ? special_type[i]
                      : i < SYN_BYTE_VOCAB  ? MDI_PIECE_BYTE
                      : i == SYN_BYTE_VOCAB ? MDI_PIECE_NORMAL
                                            : MDI_PIECE_UNUSED;
    }
    v->unk_id = 0;
    v->bos_id = 1;
    v->eos_id = 2;
    v->add_dummy_prefix = 0; /* text is encoded as given, without a leading space */
    return mdi_vocab_validate(v, err);
}

/* The tokenizer: the file at path (at most vocab_size pieces), else the byte-level one. */
static mdi_status synthetic_vocab(const char *path, int32_t vocab_size, mdi_vocab *v, mdi_err *err)
{
    if (!path) {
        if (vocab_size < SYN_BYTE_VOCAB)
            return mdi_errf(err, MDI_ERR_RANGE,
                            "vocab_size = %d is too small for the byte-level tokenizer (needs >= "
                            "%d); pass a tokenizer file",
                            (int)vocab_size, SYN_BYTE_VOCAB);
        return byte_vocab(vocab_size, v, err);
    }
    mdi_status s = cv_read_tokenizer_file(path, 0, v, err);
    if (s == MDI_OK && v->n > vocab_size)
        s = mdi_errf(err, MDI_ERR_MISMATCH, "%s: %d pieces, more than vocab_size = %d", path,
                     (int)v->n, (int)vocab_size);
    return s;
}

/* model_id: FNV-1a over the config fields (little-endian 32-bit), the seed and "synthetic". */
static void synthetic_id(const mdi_config *c, uint64_t seed, char id[17])
{
    uint32_t words[11];
    unsigned char bytes[sizeof words + 8];
    memcpy(&words[8], &c->rope_theta, 4);
    memcpy(&words[9], &c->norm_eps, 4);
    words[0] = (uint32_t)c->dim, words[1] = (uint32_t)c->hidden_dim;
    words[2] = (uint32_t)c->n_layers, words[3] = (uint32_t)c->n_heads;
    words[4] = (uint32_t)c->n_kv_heads, words[5] = (uint32_t)c->head_dim;
    words[6] = (uint32_t)c->vocab_size, words[7] = (uint32_t)c->max_seq_len;
    words[10] = (uint32_t)c->tied_head;
    for (size_t i = 0; i < 11; i++)
        for (size_t b = 0; b < 4; b++)
            bytes[4 * i + b] = (unsigned char)(words[i] >> (8 * b));
    for (size_t b = 0; b < 8; b++)
        bytes[sizeof words + b] = (unsigned char)(seed >> (8 * b));
    uint64_t h = mdi_fnv1a(MDI_FNV_INIT, bytes, sizeof bytes);
    h = mdi_fnv1a(h, "synthetic", 9);
    snprintf(id, 17, "%016llx", (unsigned long long)h);
}

/* Fill out with tensor (kind, layer): rows * cols values from the counter-based generator. */
static mdi_status synthetic_read(cv_source *src, mdi_tensor_kind kind, int32_t layer, float *out,
                                 mdi_err *err)
{
    const syn_impl *impl = src->impl;
    const mdi_config *c = &src->cfg;
    int per_layer = (unsigned)kind < MDI_T_COUNT && mdi_tensor_scope_of(kind) == MDI_SCOPE_LAYER;
    if ((unsigned)kind >= MDI_T_COUNT || !mdi_tensor_present(c, kind) ||
        (per_layer && (layer < 0 || layer >= c->n_layers)))
        return mdi_errf(err, MDI_ERR_ARG, "synthetic: no tensor of kind %d for layer %d", (int)kind,
                        (int)layer);
    size_t rows, cols;
    mdi_tensor_shape(c, kind, &rows, &cols);
    size_t n = rows * cols;
    if (!mdi_tensor_is_matrix(kind)) {
        for (size_t i = 0; i < n; i++)
            out[i] = 1.0f;
        return MDI_OK;
    }
    float a = kind == MDI_T_EMBED ? SYN_EMBED_SCALE : 1.0f / sqrtf((float)cols);
    uint32_t l = per_layer ? (uint32_t)layer : 0xFFFFFFFFu;
    uint64_t key = mix64(impl->seed ^ mix64(((uint64_t)kind << 32 | l) + SYN_GOLDEN));
    for (size_t i = 0; i < n; i++) {
        uint64_t x = mix64(key + (uint64_t)(i + 1) * SYN_GOLDEN);
        /* top 24 bits -> odd multiples of 2^-24 in (-1, 1), symmetric about 0 */
        float u = (float)((int64_t)(2 * (x >> 40) + 1) - ((int64_t)1 << 24)) * (1.0f / 16777216.0f);
        out[i] = u * a;
    }
    return MDI_OK;
}

static void synthetic_close(cv_source *src)
{
    free(src->impl);
    src->impl = NULL;
}

mdi_status cv_open_synthetic(const char *spec, uint64_t seed, const char *tokenizer_path,
                             cv_source *src, mdi_err *err)
{
    memset(src, 0, sizeof *src);
    if (!spec)
        return mdi_errf(err, MDI_ERR_ARG, "synthetic: no preset or config file given");
    mdi_status s = synthetic_config(spec, &src->cfg, err);
    if (s == MDI_OK)
        s = synthetic_vocab(tokenizer_path, src->cfg.vocab_size, &src->vocab, err);
    syn_impl *impl = s == MDI_OK ? malloc(sizeof *impl) : NULL;
    if (s == MDI_OK && !impl)
        s = mdi_errf(err, MDI_ERR_NOMEM, "synthetic: out of memory");
    if (s != MDI_OK) {
        mdi_vocab_free(&src->vocab);
        memset(src, 0, sizeof *src);
        return s;
    }
    impl->seed = seed;
    src->impl = impl;
    src->read = synthetic_read;
    src->close = synthetic_close;
    src->kind = "synthetic";
    synthetic_id(&src->cfg, seed, src->model_id);
    return MDI_OK;
}

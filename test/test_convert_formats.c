/* Converter readers against each other (label model): llama2.c .bin, GGUF and
 * Hugging Face forms of stories260K must give the same tensors and
 * vocabulary; malformed files built in a temporary directory fail with the
 * expected message instead of crashing. The synthetic source's own tests are
 * in test_convert_synthetic.c (no model files needed). */
#define _XOPEN_SOURCE 700
#include "convert_test_util.h"

#include "json.h"

typedef struct blob {
    unsigned char *p;
    size_t n;
} blob;

/* ---- small file helpers --------------------------------------------------------- */

static blob slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    long n = ftell(f);
    assert_true(n >= 0);
    rewind(f);
    blob b = {malloc((size_t)n + 1), (size_t)n};
    assert_non_null(b.p);
    assert_int_equal(fread(b.p, 1, b.n, f), b.n);
    b.p[b.n] = 0;
    fclose(f);
    return b;
}

/* dir/name into buf (PATH_CAP bytes). */
static const char *pjoin(char *buf, const char *dir, const char *name)
{
    int n = snprintf(buf, PATH_CAP, "%s/%s", dir, name);
    assert_true(n > 0 && n < PATH_CAP);
    return buf;
}

/* A fresh directory tmp/name. */
static const char *tmp_dir(const fx *x, const char *name, char *buf)
{
    tmp_path(x, name, buf);
    assert_int_equal(mkdir(buf, 0700), 0);
    return buf;
}

/* Copy of s with the first occurrence of find replaced by repl (caller frees). */
static char *replace(const char *s, const char *find, const char *repl)
{
    const char *at = strstr(s, find);
    if (!at)
        fail_msg("'%s' not found", find);
    size_t a = (size_t)(at - s), lf = strlen(find), lr = strlen(repl), n = strlen(s);
    char *out = malloc(n - lf + lr + 1);
    assert_non_null(out);
    memcpy(out, s, a);
    memcpy(out + a, repl, lr);
    memcpy(out + a + lr, at + lf, n - a - lf + 1);
    return out;
}

/* ---- comparing sources ---------------------------------------------------------- */

static void expect_same_vocab(const mdi_vocab *a, const mdi_vocab *b)
{
    assert_int_equal(a->n, b->n);
    for (int32_t i = 0; i < a->n; i++) {
        uint64_t la = a->offsets[i + 1] - a->offsets[i], lb = b->offsets[i + 1] - b->offsets[i];
        if (la != lb || memcmp(a->bytes + a->offsets[i], b->bytes + b->offsets[i], la) != 0 ||
            a->scores[i] != b->scores[i] || a->types[i] != b->types[i])
            fail_msg("piece %d differs", (int)i);
    }
    assert_int_equal(a->bos_id, b->bos_id);
    assert_int_equal(a->eos_id, b->eos_id);
    assert_int_equal(a->unk_id, b->unk_id);
    assert_int_equal(a->add_dummy_prefix, b->add_dummy_prefix);
}

/* The stories260K reference: llama2.c checkpoint with tok512.bin. */
static int open_reference(cv_source *ref)
{
    char bin[PATH_CAP], tok[PATH_CAP];
    mdi_err err = {0};
    if (!mdi_test_model_path("stories260K/stories260K.bin", bin, sizeof bin) ||
        !mdi_test_model_path("stories260K/tok512.bin", tok, sizeof tok))
        return 0;
    if (cv_open_llama2c(bin, tok, ref, &err) != MDI_OK)
        fail_msg("llama2c: %s", err.msg);
    return 1;
}

/* ---- GGUF and HF against llama2.c ---------------------------------------------- */

static void test_gguf_matches_llama2c(void **state)
{
    (void)state;
    cv_source ref, g;
    char path[PATH_CAP];
    mdi_err err = {0};
    if (!open_reference(&ref) ||
        !mdi_test_model_path("stories260K/stories260K.gguf", path, sizeof path))
        return;
    if (cv_open_gguf(path, &g, &err) != MDI_OK)
        fail_msg("gguf: %s", err.msg);
    assert_string_equal(g.kind, "gguf");
    /* Two documented differences: the GGUF stores output.weight (a copy of the
     * embedding), so it is untied, and its llama.context_length is 2048. */
    assert_int_equal(ref.cfg.tied_head, 1);
    assert_int_equal(g.cfg.tied_head, 0);
    assert_int_equal(ref.cfg.max_seq_len, 512);
    assert_int_equal(g.cfg.max_seq_len, 2048);
    mdi_config c = g.cfg;
    c.tied_head = ref.cfg.tied_head;
    c.max_seq_len = ref.cfg.max_seq_len;
    assert_true(mdi_config_equal(&c, &ref.cfg));
    expect_same_tensors(&ref, &g, 0.0); /* bit-identical, head included */
    expect_same_vocab(&ref.vocab, &g.vocab);
    expect_model_id(&g);
    assert_string_not_equal(g.model_id, ref.model_id);
    cv_source_close(&g);
    cv_source_close(&ref);
}

static void test_hf_matches_llama2c(void **state)
{
    (void)state;
    cv_source ref, h, h2;
    char dir[PATH_CAP], tok[PATH_CAP];
    mdi_err err = {0};
    if (!open_reference(&ref) || !mdi_test_model_path("stories260K-hf", dir, sizeof dir) ||
        !mdi_test_model_path("stories260K/tok512.bin", tok, sizeof tok))
        return;
    if (cv_open_hf(dir, NULL, &h, &err) != MDI_OK)
        fail_msg("hf: %s", err.msg);
    assert_string_equal(h.kind, "hf");
    assert_true(mdi_config_equal(&h.cfg, &ref.cfg));
    expect_same_tensors(&ref, &h, 1e-6);                              /* after un-permuting q/k */
    assert_true(max_diff(&ref, MDI_T_WQ, 3, &h, MDI_T_WQ, 3) == 0.0); /* F32: exact */
    expect_same_vocab(&ref.vocab, &h.vocab);
    expect_model_id(&h);
    /* An explicit tokenizer file (llama2.c format) replaces tokenizer.model. */
    if (cv_open_hf(dir, tok, &h2, &err) != MDI_OK)
        fail_msg("hf --tokenizer: %s", err.msg);
    expect_same_vocab(&ref.vocab, &h2.vocab);
    assert_string_equal(h.model_id, h2.model_id);
    cv_source_close(&h2);
    cv_source_close(&h);
    cv_source_close(&ref);
}

/* ---- safetensors built in the test --------------------------------------------- */

typedef struct st_tensor {
    char name[128];
    int64_t shape[2];
    size_t nd, n;
    float *data;
} st_tensor;

typedef struct st_set {
    st_tensor *t;
    size_t n;
} st_set;

/* The F32 tensors of a safetensors file, in header order. */
static st_set st_load(const char *path)
{
    blob b = slurp(path);
    uint64_t hl;
    cv_json *j = NULL;
    mdi_err err = {0};
    memcpy(&hl, b.p, 8);
    assert_int_equal(cv_json_parse((const char *)b.p + 8, hl, path, &j, &err), MDI_OK);
    st_set s = {calloc(cv_json_count(j), sizeof(st_tensor)), 0};
    assert_non_null(s.t);
    for (size_t i = 0; i < cv_json_count(j); i++) {
        const cv_json *v = cv_json_at(j, i), *shape = cv_json_get(v, "shape");
        const cv_json *offs = cv_json_get(v, "data_offsets");
        if (strcmp(cv_json_key_at(j, i), "__metadata__") == 0)
            continue;
        st_tensor *t = &s.t[s.n++];
        int64_t lo, hi;
        snprintf(t->name, sizeof t->name, "%s", cv_json_key_at(j, i));
        assert_string_equal(cv_json_as_string(cv_json_get(v, "dtype"), NULL), "F32");
        t->nd = cv_json_count(shape);
        for (size_t d = 0; d < t->nd; d++)
            assert_true(cv_json_as_int64(cv_json_at(shape, d), &t->shape[d]));
        assert_true(cv_json_as_int64(cv_json_at(offs, 0), &lo));
        assert_true(cv_json_as_int64(cv_json_at(offs, 1), &hi));
        t->n = (size_t)(hi - lo) / 4;
        t->data = malloc((size_t)(hi - lo));
        assert_non_null(t->data);
        memcpy(t->data, b.p + 8 + hl + lo, (size_t)(hi - lo));
    }
    cv_json_free(j);
    free(b.p);
    return s;
}

static void st_free(st_set *s)
{
    for (size_t i = 0; i < s->n; i++)
        free(s->t[i].data);
    free(s->t);
}

static const char *st_dtype(const char *const *dtypes, size_t i)
{
    return dtypes ? dtypes[i] : "F32";
}

/* Write tensors [lo, hi) of s as a safetensors file. dtypes[i] is "F32", "F16" or "BF16"
 * (anything else is laid out as 2 bytes); the header text is edited (find -> repl) if find. */
static void st_write(const char *path, const st_set *s, size_t lo, size_t hi,
                     const char *const *dtypes, const char *find, const char *repl)
{
    size_t cap = (size_t)1 << 16, k = 0, off = 0;
    char *hdr = malloc(cap);
    assert_non_null(hdr);
    k += (size_t)snprintf(hdr, cap, "{\"__metadata__\":{\"format\":\"pt\"}");
    for (size_t i = lo; i < hi; i++) {
        const st_tensor *t = &s->t[i];
        size_t bytes = t->n * (strcmp(st_dtype(dtypes, i), "F32") == 0 ? 4 : 2);
        char shape[64];
        if (t->nd == 2)
            snprintf(shape, sizeof shape, "%lld,%lld", (long long)t->shape[0],
                     (long long)t->shape[1]);
        else
            snprintf(shape, sizeof shape, "%lld", (long long)t->shape[0]);
        k +=
            (size_t)snprintf(hdr + k, cap - k,
                             ",\"%s\":{\"dtype\":\"%s\",\"shape\":[%s],\"data_offsets\":[%zu,%zu]}",
                             t->name, st_dtype(dtypes, i), shape, off, off + bytes);
        off += bytes;
    }
    snprintf(hdr + k, cap - k, "}");
    if (find) {
        char *edited = replace(hdr, find, repl);
        free(hdr);
        hdr = edited;
    }
    uint64_t hl = strlen(hdr);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fwrite(&hl, 8, 1, f);
    fwrite(hdr, 1, hl, f);
    for (size_t i = lo; i < hi; i++) {
        const st_tensor *t = &s->t[i];
        const char *dt = st_dtype(dtypes, i);
        for (size_t e = 0; e < t->n; e++) {
            uint16_t h =
                strcmp(dt, "BF16") == 0 ? cv_f32_to_bf16(t->data[e]) : cv_f32_to_f16(t->data[e]);
            if (strcmp(dt, "F32") == 0)
                fwrite(&t->data[e], 4, 1, f);
            else
                fwrite(&h, 2, 1, f);
        }
    }
    assert_int_equal(fclose(f), 0);
    free(hdr);
}

/* A checkpoint directory tmp/name with config_text as config.json and, if with_tok, a
 * copy of the real tokenizer.model; weights are written separately. */
static const char *hf_dir(const fx *x, const char *name, const char *config_text, int with_tok,
                          char *dir)
{
    char p[PATH_CAP], real[PATH_CAP];
    tmp_dir(x, name, dir);
    pjoin(p, dir, "config.json");
    spit(p, config_text, strlen(config_text));
    if (with_tok) {
        blob t = slurp(mdi_test_model_path("stories260K-hf/tokenizer.model", real, sizeof real));
        pjoin(p, dir, "tokenizer.model");
        spit(p, t.p, t.n);
        free(t.p);
    }
    return dir;
}

/* dir/model.safetensors into buf. */
static const char *st_path(const char *dir, char *buf)
{
    pjoin(buf, dir, "model.safetensors");
    return buf;
}

/* Index of the tensor named like HF's (kind, layer) in s. */
static size_t st_find(const st_set *s, mdi_tensor_kind kind, int32_t layer)
{
    static const char *const names[MDI_T_COUNT] = {
        "input_layernorm",  "self_attn.q_proj",         "self_attn.k_proj", "self_attn.v_proj",
        "self_attn.o_proj", "post_attention_layernorm", "mlp.gate_proj",    "mlp.down_proj",
        "mlp.up_proj",      "model.embed_tokens",       "model.norm",       "lm_head"};
    char name[128];
    if (mdi_tensor_scope_of(kind) == MDI_SCOPE_LAYER)
        snprintf(name, sizeof name, "model.layers.%d.%s.weight", (int)layer, names[kind]);
    else
        snprintf(name, sizeof name, "%s.weight", names[kind]);
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->t[i].name, name) == 0)
            return i;
    fail_msg("no tensor %s", name);
    return 0;
}

/* Every value of (kind, layer) read from h equals the reference rounded to dtype. */
static void expect_rounded(cv_source *ref, cv_source *h, mdi_tensor_kind kind, int32_t layer,
                           const char *dt)
{
    size_t n, m;
    float *r = read_tensor(ref, kind, layer, &n), *v = read_tensor(h, kind, layer, &m);
    assert_int_equal(n, m);
    double rel = strcmp(dt, "F16") == 0 ? 1.0 / 2048 : strcmp(dt, "BF16") == 0 ? 1.0 / 256 : 0;
    for (size_t i = 0; i < n; i++) {
        float want = strcmp(dt, "F16") == 0    ? cv_f16_to_f32(cv_f32_to_f16(r[i]))
                     : strcmp(dt, "BF16") == 0 ? cv_bf16_to_f32(cv_f32_to_bf16(r[i]))
                                               : r[i];
        if (v[i] != want || fabs((double)v[i] - r[i]) > rel * fabs((double)r[i]) + 6e-8)
            fail_msg("%s %s layer %d [%zu]: %g, reference %g", dt, mdi_tensor_name(kind),
                     (int)layer, i, (double)v[i], (double)r[i]);
    }
    free(r);
    free(v);
}

static void test_hf_f16_bf16_and_shards(void **state)
{
    fx *x = *state;
    cv_source ref, h;
    char src_dir[PATH_CAP], dir[PATH_CAP], p[PATH_CAP];
    mdi_err err = {0};
    if (!open_reference(&ref) || !mdi_test_model_path("stories260K-hf", src_dir, sizeof src_dir))
        return;
    pjoin(p, src_dir, "config.json");
    blob cfg = slurp(p);
    st_set s = st_load(st_path(src_dir, p));
    const char **dt = malloc(s.n * sizeof *dt);
    assert_non_null(dt);
    for (size_t i = 0; i < s.n; i++)
        dt[i] = i % 3 == 0 ? "F16" : i % 3 == 1 ? "BF16" : "F32";

    /* Mixed 16-bit dtypes read back as the reference rounded to each dtype. */
    st_write(st_path(hf_dir(x, "half", (const char *)cfg.p, 1, dir), p), &s, 0, s.n, dt, NULL,
             NULL);
    if (cv_open_hf(dir, NULL, &h, &err) != MDI_OK)
        fail_msg("half: %s", err.msg);
    for (int32_t l = 0; l < ref.cfg.n_layers; l++)
        for (int k = 0; k < MDI_T_COUNT; k++)
            if (mdi_tensor_scope_of((mdi_tensor_kind)k) == MDI_SCOPE_LAYER)
                expect_rounded(&ref, &h, (mdi_tensor_kind)k, l,
                               dt[st_find(&s, (mdi_tensor_kind)k, l)]);
    expect_rounded(&ref, &h, MDI_T_EMBED, 0, dt[st_find(&s, MDI_T_EMBED, 0)]);
    expect_rounded(&ref, &h, MDI_T_FINAL_NORM, 0, dt[st_find(&s, MDI_T_FINAL_NORM, 0)]);
    cv_source_close(&h);

    /* Two shards listed by model.safetensors.index.json. */
    hf_dir(x, "sharded", (const char *)cfg.p, 1, dir);
    pjoin(p, dir, "model-00001-of-00002.safetensors");
    st_write(p, &s, 0, s.n / 2, NULL, NULL, NULL);
    pjoin(p, dir, "model-00002-of-00002.safetensors");
    st_write(p, &s, s.n / 2, s.n, NULL, NULL, NULL);
    size_t cap = 1 << 16, k = 0;
    char *index = malloc(cap);
    assert_non_null(index);
    k += (size_t)snprintf(index, cap, "{\"metadata\": {\"total_size\": 0}, \"weight_map\": {");
    for (size_t i = 0; i < s.n; i++)
        k += (size_t)snprintf(index + k, cap - k, "%s\"%s\": \"model-0000%d-of-00002.safetensors\"",
                              i ? ", " : "", s.t[i].name, i < s.n / 2 ? 1 : 2);
    snprintf(index + k, cap - k, "}}");
    pjoin(p, dir, "model.safetensors.index.json");
    spit(p, index, strlen(index));
    if (cv_open_hf(dir, NULL, &h, &err) != MDI_OK)
        fail_msg("sharded: %s", err.msg);
    expect_same_tensors(&ref, &h, 0.0);
    cv_source_close(&h);

    /* The index must agree with the files. */
    char *wrong =
        replace(index, "model-00001-of-00002.safetensors\"", "model-00002-of-00002.safetensors\"");
    spit(p, wrong, strlen(wrong));
    expect_fail(cv_open_hf(dir, NULL, &h, &err), &h, &err, "weight_map puts", s.t[0].name);
    free(wrong);
    wrong = replace(index, "model-00001-of-00002.safetensors\"", "../x.safetensors\"");
    spit(p, wrong, strlen(wrong));
    expect_fail(cv_open_hf(dir, NULL, &h, &err), &h, &err, "does not name a file", NULL);
    free(wrong);
    spit(p, "{\"weight_map\": {}}", 18);
    expect_fail(cv_open_hf(dir, NULL, &h, &err), &h, &err, "'weight_map' is missing or empty",
                NULL);
    free(index);
    free(dt);
    st_free(&s);
    free(cfg.p);
    cv_source_close(&ref);
}

/* Build tmp/name from the real checkpoint with the config edited (cfind -> crepl) and the
 * safetensors header edited (hfind -> hrepl), then expect cv_open_hf to fail with n1/n2. */
static void hf_case(const fx *x, const st_set *s, const char *cfg, const char *name,
                    const char *cfind, const char *crepl, const char *hfind, const char *hrepl,
                    const char *n1, const char *n2)
{
    char dir[PATH_CAP], p[PATH_CAP];
    cv_source h;
    mdi_err err = {0};
    char *c = cfind ? replace(cfg, cfind, crepl) : NULL;
    hf_dir(x, name, c ? c : cfg, 1, dir);
    st_write(st_path(dir, p), s, 0, s->n, NULL, hfind, hrepl);
    expect_fail(cv_open_hf(dir, NULL, &h, &err), &h, &err, n1, n2);
    free(c);
}

static void test_hf_errors(void **state)
{
    fx *x = *state;
    char src_dir[PATH_CAP], dir[PATH_CAP], p[PATH_CAP];
    cv_source h;
    mdi_err err = {0};
    if (!mdi_test_model_path("stories260K-hf", src_dir, sizeof src_dir))
        return;
    pjoin(p, src_dir, "config.json");
    blob cb = slurp(p);
    const char *cfg = (const char *)cb.p;
    st_set s = st_load(st_path(src_dir, p));

    /* config.json */
    hf_case(x, &s, cfg, "c1", "\"num_attention_heads\": 8", "\"num_attention_heads\": 3", NULL,
            NULL, "config.json", "num_key_value_heads = 4 is outside [1, 3]");
    /* the checks across fields name config.json's keys too */
    hf_case(
        x, &s, cfg, "c1b", "\"num_attention_heads\": 8", "\"num_attention_heads\": 6", NULL, NULL,
        "config.json: num_attention_heads = 6 is not a multiple of num_key_value_heads = 4", NULL);
    hf_case(x, &s, cfg, "c1c", "\"rms_norm_eps\": 1e-05", "\"rms_norm_eps\": 2", NULL, NULL,
            "config.json: rms_norm_eps = 2 must be in (0, 1]", NULL);
    /* values float32 cannot hold are named as written, not as the 0 or inf they become */
    hf_case(x, &s, cfg, "c1e", "\"rms_norm_eps\": 1e-05", "\"rms_norm_eps\": 1e-300", NULL, NULL,
            "config.json: 'rms_norm_eps' = 1e-300 is outside the float32 range", NULL);
    hf_case(x, &s, cfg, "c1f", "\"rope_scaling\": null",
            "\"rope_parameters\": {\"rope_type\": \"default\", \"rope_theta\": 1e39}", NULL, NULL,
            "config.json: 'rope_parameters.rope_theta' = 1e+39 is outside the float32 range", NULL);
    hf_case(x, &s, cfg, "c1g", "\"rope_scaling\": null",
            "\"rope_scaling\": {\"type\": \"default\", \"rope_theta\": \"5e5\"}", NULL, NULL,
            "config.json: 'rope_scaling.rope_theta' is a string, expected a number", NULL);
    hf_case(x, &s, cfg, "c1d", "\"head_dim\": 8", "\"head_dim\": 7", NULL, NULL,
            "config.json: head_dim = 7 is odd", NULL);
    hf_case(x, &s, cfg, "c2", "\"hidden_size\": 64", "\"hidden_size\": \"64\"", NULL, NULL,
            "'hidden_size' is a string, expected an integer", NULL);
    hf_case(x, &s, cfg, "c3", "\"rope_scaling\": null",
            "\"rope_scaling\": {\"type\": \"linear\", \"factor\": 2.0}", NULL, NULL,
            "rope_scaling of rope_type 'linear' is not supported", NULL);
    hf_case(x, &s, cfg, "c3b", "\"rope_scaling\": null",
            "\"rope_parameters\": {\"rope_type\": \"llama3\", \"factor\": 8.0, \"rope_theta\": "
            "5e5}",
            NULL, NULL, "rope_parameters of rope_type 'llama3' is not supported", NULL);
    hf_case(x, &s, cfg, "c3c", "\"rope_scaling\": null",
            "\"rope_scaling\": null, \"sliding_window\": 16", NULL, NULL,
            "sliding_window attention is not supported", NULL);
    hf_case(x, &s, cfg, "c3d", "\"attention_bias\": false", "\"attention_bias\": \"true\"", NULL,
            NULL, "'attention_bias' is a string, expected a bool", NULL);
    hf_case(x, &s, cfg, "c3e", "\"mlp_bias\": false", "\"mlp_bias\": true", NULL, NULL,
            "mlp_bias is not supported", NULL);
    hf_case(x, &s, cfg, "c3f", "\"model_type\": \"llama\"", "\"model_type\": \"mistral\"", NULL,
            NULL, "model_type 'mistral' is not a Llama model", NULL);
    char *mistral = replace(cfg, "LlamaForCausalLM", "MistralForCausalLM");
    hf_case(x, &s, mistral, "c4", "\"model_type\": \"llama\"", "\"model_type\": \"mistral\"", NULL,
            NULL, "MistralForCausalLM", "not a Llama model");
    free(mistral);
    hf_case(x, &s, cfg, "c5", "\"vocab_size\"", "\"vocab_sizes\"", NULL, NULL,
            "'vocab_size' is missing", NULL);
    hf_case(x, &s, cfg, "c6", "\"rms_norm_eps\": 1e-05", "\"rms_norm_eps\": -1", NULL, NULL,
            "norm_eps", NULL);
    hf_case(x, &s, cfg, "c7", "\"use_cache\": true", "\"use_cache\": tru", NULL, NULL,
            "config.json: line", NULL);
    hf_case(x, &s, cfg, "c8", "\"hidden_act\": \"silu\"", "\"hidden_act\": \"gelu\"", NULL, NULL,
            "hidden_act 'gelu'", NULL);
    hf_case(x, &s, cfg, "c8b", "\"hidden_act\": \"silu\"", "\"hidden_act\": null", NULL, NULL,
            "hidden_act is not a string (\"silu\" expected)", NULL);
    hf_case(x, &s, cfg, "c9", "\"vocab_size\": 512", "\"vocab_size\": 600", NULL, NULL,
            "model.embed_tokens.weight' has shape [512, 64], expected [600, 64]", NULL);
    hf_case(x, &s, cfg, "c10", "\"tie_word_embeddings\": true", "\"tie_word_embeddings\": false",
            NULL, NULL, "'lm_head.weight' is missing and tie_word_embeddings is false", NULL);
    hf_case(x, &s, cfg, "c11", "\"num_hidden_layers\": 5", "\"num_hidden_layers\": 4", NULL, NULL,
            "unexpected tensor 'model.layers.4.", NULL);

    /* tokenizer_config.json: what transformers does with a prompt must be
     * what mdi-llm does (BOS first, no EOS), or the model is refused */
    static const struct {
        const char *text, *n1, *n2;
    } tc[] = {
        {"{\"add_bos_token\": true, \"add_eos_token\": false}", NULL, NULL},
        {"{\"add_bos_token\": null, \"legacy\": false}", NULL, NULL},
        {"{\"add_bos_token\": false}", "tokenizer_config.json: add_bos_token is false",
         "prompts without BOS are not supported"},
        {"{\"add_eos_token\": true}", "tokenizer_config.json: add_eos_token is true",
         "prompts ending in EOS are not supported"},
        {"{\"add_bos_token\": \"yes\"}", "'add_bos_token' is a string, expected a bool", NULL},
        {"[true]", "tokenizer_config.json: the top level is a", "expected an object"},
        {"{\"add_bos_token\": tru}", "tokenizer_config.json: line", NULL},
    };
    for (size_t i = 0; i < sizeof tc / sizeof tc[0]; i++) {
        char name[16];
        snprintf(name, sizeof name, "tc%zu", i);
        hf_dir(x, name, cfg, 1, dir);
        st_write(st_path(dir, p), &s, 0, s.n, NULL, NULL, NULL);
        pjoin(p, dir, "tokenizer_config.json");
        spit(p, tc[i].text, strlen(tc[i].text));
        mdi_status got = cv_open_hf(dir, NULL, &h, &err);
        if (!tc[i].n1) {
            if (got != MDI_OK)
                fail_msg("tokenizer_config.json %s: %s", tc[i].text, err.msg);
            cv_source_close(&h);
        } else {
            expect_fail(got, &h, &err, tc[i].n1, tc[i].n2);
        }
    }

    /* safetensors header */
    hf_case(x, &s, cfg, "s1", NULL, NULL, "\"dtype\":\"F32\"", "\"dtype\":\"I64\"",
            "tensor 'model.embed_tokens.weight' has dtype I64", NULL);
    hf_case(x, &s, cfg, "s2", NULL, NULL, "[0,131072]", "[0,99999999]",
            "'model.embed_tokens.weight' data_offsets [0, 99999999] run past end of file", NULL);
    hf_case(x, &s, cfg, "s2b", NULL, NULL, "[0,131072]", "[131072,0]",
            "'model.embed_tokens.weight' data_offsets [131072, 0] are not a range", NULL);
    hf_case(x, &s, cfg, "s3", NULL, NULL, "[512,64]", "[64,512]",
            "has shape [64, 512], expected [512, 64]", NULL);
    hf_case(x, &s, cfg, "s3b", NULL, NULL, "\"shape\":[64]", "\"shape\":[65]",
            "has shape [65], expected [64] from config.json", NULL);
    hf_case(x, &s, cfg, "s4", NULL, NULL, "model.layers.2.mlp.up_proj.weight",
            "model.layers.2.self_attn.rotary_emb.inv_freq",
            "tensor 'model.layers.2.mlp.up_proj.weight' is missing", NULL);
    hf_case(x, &s, cfg, "s5", NULL, NULL, "model.layers.2.mlp.up_proj.weight",
            "model.layers.2.mlp.up_proj.bias",
            "unexpected tensor 'model.layers.2.mlp.up_proj.bias'", NULL);
    hf_case(x, &s, cfg, "s6", NULL, NULL, "[0,131072]", "[0,131068]",
            "hold 131068 bytes, but shape [512, 64] of F32 needs 131072", NULL);
    hf_case(x, &s, cfg, "s7", NULL, NULL, "\"data_offsets\":[0,131072]", "\"data_offsets\":[0]",
            "needs a dtype string and two integer data_offsets", NULL);
    hf_case(x, &s, cfg, "s8", NULL, NULL, "{\"__metadata__\"", "[{\"__metadata__\"",
            "model.safetensors: line 1 column", NULL);
    /* two tensors sharing bytes (the model would load one for the other) */
    hf_case(x, &s, cfg, "ov1", NULL, NULL, "[219392,263424]", "[175360,219392]",
            "data_offsets [175360, 219392]) and 'model.layers.0.mlp.",
            "([175360, 219392]) overlap");
    hf_case(x, &s, cfg, "ov2", NULL, NULL, "[219392,263424]", "[219388,263420]",
            "tensors 'model.layers.0.mlp.gate_proj.weight' (data_offsets [175360, 219392]) and "
            "'model.layers.0.mlp.up_proj.weight' ([219388, 263420]) overlap",
            NULL);

    /* rope_theta from transformers 5's rope_parameters (over the top level's), and
     * the "default" rope_type in either key, mean no scaling: accepted. */
    static const char *const rope_ok[3] = {
        "\"rope_parameters\": {\"rope_type\": \"default\", \"rope_theta\": 500000.0}",
        "\"rope_scaling\": {\"type\": \"default\"}, \"rope_parameters\": {\"rope_type\": "
        "\"default\", \"rope_theta\": 500000}",
        "\"rope_scaling\": {\"rope_type\": \"default\"}"};
    for (int r = 0; r < 3; r++) {
        char *c = replace(cfg, "\"rope_scaling\": null", rope_ok[r]);
        char name[16];
        snprintf(name, sizeof name, "rope%d", r);
        hf_dir(x, name, c, 1, dir);
        st_write(st_path(dir, p), &s, 0, s.n, NULL, NULL, NULL);
        if (cv_open_hf(dir, NULL, &h, &err) != MDI_OK)
            fail_msg("%s: %s", rope_ok[r], err.msg);
        assert_true(h.cfg.rope_theta == (r < 2 ? 500000.0f : 10000.0f));
        cv_source_close(&h);
        free(c);
    }

    /* header length past the end, and a file too short for it */
    hf_dir(x, "s9", cfg, 1, dir);
    st_write(st_path(dir, p), &s, 0, s.n, NULL, NULL, NULL);
    blob w = slurp(p);
    uint64_t huge = (uint64_t)w.n;
    memcpy(w.p, &huge, 8);
    spit(p, w.p, w.n);
    expect_fail(cv_open_hf(dir, NULL, &h, &err), &h, &err, "header length",
                "runs past end of file");
    spit(p, w.p, 5);
    expect_fail(cv_open_hf(dir, NULL, &h, &err), &h, &err, "runs past end of file (size 5)", NULL);
    free(w.p);

    /* directory contents */
    hf_dir(x, "d1", cfg, 0, dir);
    st_write(st_path(dir, p), &s, 0, s.n, NULL, NULL, NULL);
    expect_fail(cv_open_hf(dir, NULL, &h, &err), &h, &err,
                "has no tokenizer.model (tokenizer.json-only checkpoints are not supported); pass "
                "--tokenizer FILE",
                dir);
    hf_dir(x, "d2", cfg, 1, dir);
    expect_fail(cv_open_hf(dir, NULL, &h, &err), &h, &err,
                "has neither model.safetensors nor model.safetensors.index.json", NULL);
    tmp_path(x, "nowhere", dir);
    expect_fail(cv_open_hf(dir, NULL, &h, &err), &h, &err, "config.json: cannot open", NULL);
    st_free(&s);
    free(cb.p);
}

/* ---- GGUF edited in the test ----------------------------------------------------- */

typedef struct tg_info {
    size_t pos, len; /* byte range of the tensor info */
    char name[64];
    uint32_t nd, type;
    uint64_t ne[4], off;
} tg_info;

typedef struct tg_file {
    blob b;
    size_t kv_end, data;
    uint64_t nt;
    tg_info t[64];
} tg_file;

static uint64_t rd64(const unsigned char *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

static uint32_t rd32(const unsigned char *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* Position after a metadata value of type t at p (trusted input). */
static size_t tg_skip(const unsigned char *b, size_t p, uint32_t t)
{
    static const size_t sz[13] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
    if (t == 8)
        return p + 8 + rd64(b + p);
    if (t != 9)
        return p + sz[t];
    uint32_t e = rd32(b + p);
    uint64_t n = rd64(b + p + 4);
    p += 12;
    for (uint64_t i = 0; i < n; i++)
        p = tg_skip(b, p, e);
    return p;
}

/* Locate the metadata end, every tensor info and the data section of a valid GGUF. */
static tg_file tg_load(const char *path)
{
    tg_file g = {slurp(path), 0, 0, 0, {{0}}};
    const unsigned char *b = g.b.p;
    size_t p = 24;
    for (uint64_t i = 0; i < rd64(b + 16); i++) {
        p += 8 + rd64(b + p);
        uint32_t t = rd32(b + p);
        p = tg_skip(b, p + 4, t);
    }
    g.kv_end = p;
    g.nt = rd64(b + 8);
    assert_true(g.nt <= 64);
    for (uint64_t i = 0; i < g.nt; i++) {
        tg_info *t = &g.t[i];
        uint64_t len = rd64(b + p);
        t->pos = p;
        memcpy(t->name, b + p + 8, len);
        p += 8 + len;
        t->nd = rd32(b + p);
        for (uint32_t d = 0; d < 4; d++)
            t->ne[d] = d < t->nd ? rd64(b + p + 4 + 8 * d) : 1;
        p += 4 + 8 * t->nd;
        t->type = rd32(b + p);
        t->off = rd64(b + p + 4);
        p += 12;
        t->len = p - t->pos;
    }
    g.data = (p + 31) / 32 * 32;
    return g;
}

static const tg_info *tg_find(const tg_file *g, const char *name)
{
    for (uint64_t i = 0; i < g->nt; i++)
        if (strcmp(g->t[i].name, name) == 0)
            return &g->t[i];
    fail_msg("no tensor %s", name);
    return NULL;
}

/* Rewrite g to path with tensor i stored as types[i] (0 F32, 1 F16, 30 BF16), dropping
 * tensor `drop` (-1 keeps all); metadata is copied unchanged. */
static void tg_write(const tg_file *g, const char *path, const uint32_t *types, int drop)
{
    FILE *f = fopen(path, "wb");
    static const unsigned char zeros[32] = {0};
    uint64_t nt = g->nt - (drop >= 0), off = 0;
    assert_non_null(f);
    fwrite(g->b.p, 1, 8, f);
    fwrite(&nt, 8, 1, f);
    fwrite(g->b.p + 16, 1, g->kv_end - 16, f);
    size_t pos = g->kv_end;
    for (int pass = 0; pass < 2; pass++) {
        for (uint64_t i = 0; i < g->nt; i++) {
            const tg_info *t = &g->t[i];
            uint64_t n = t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3], esz = types[i] ? 2 : 4;
            if ((int)i == drop)
                continue;
            if (pass == 0) { /* info: name, dims as they are, new type and offset */
                fwrite(g->b.p + t->pos, 1, t->len - 12, f);
                fwrite(&types[i], 4, 1, f);
                fwrite(&off, 8, 1, f);
                off += (n * esz + 31) / 32 * 32;
                pos += t->len;
                continue;
            }
            const float *src = (const float *)(g->b.p + g->data + t->off);
            for (uint64_t e = 0; e < n; e++) {
                uint16_t h = types[i] == 1 ? cv_f32_to_f16(src[e]) : cv_f32_to_bf16(src[e]);
                fwrite(types[i] ? (const void *)&h : (const void *)&src[e], esz, 1, f);
            }
            fwrite(zeros, 1, (32 - (n * esz) % 32) % 32, f);
        }
        if (pass == 0)
            fwrite(zeros, 1, (32 - pos % 32) % 32, f);
    }
    assert_int_equal(fclose(f), 0);
}

/* Write g's bytes with `len` bytes at `at` replaced by patch (or truncated to `at` if
 * patch is NULL) to tmp/name, open it and expect failure with n1 / n2. */
static void gguf_case(const fx *x, const tg_file *g, const char *name, size_t at, const void *patch,
                      size_t len, const char *n1, const char *n2)
{
    char p[PATH_CAP];
    cv_source src;
    mdi_err err = {0};
    unsigned char *b = malloc(g->b.n);
    assert_non_null(b);
    memcpy(b, g->b.p, g->b.n);
    if (patch)
        memcpy(b + at, patch, len);
    spit(tmp_path(x, name, p), b, patch ? g->b.n : at);
    free(b);
    expect_fail(cv_open_gguf(p, &src, &err), &src, &err, n1, n2);
    assert_non_null(strstr(err.msg, p));
    unlink(p);
}

/* Write g to path with one more metadata pair, key = the val_len bytes of val
 * of value type t, after the others (the data section moves, its offsets do not). */
static void tg_add_kv(const tg_file *g, const char *path, const char *key, uint32_t t,
                      const void *val, size_t val_len)
{
    FILE *f = fopen(path, "wb");
    static const unsigned char zeros[32] = {0};
    uint64_t n_kv = rd64(g->b.p + 16) + 1, klen = strlen(key);
    size_t infos_end = g->t[g->nt - 1].pos + g->t[g->nt - 1].len;
    size_t end = infos_end + 8 + klen + 4 + val_len + (g->kv_end - 24) + 24 - g->kv_end;
    assert_non_null(f);
    fwrite(g->b.p, 1, 16, f);
    fwrite(&n_kv, 8, 1, f);
    fwrite(g->b.p + 24, 1, g->kv_end - 24, f);
    fwrite(&klen, 8, 1, f);
    fwrite(key, 1, klen, f);
    fwrite(&t, 4, 1, f);
    fwrite(val, 1, val_len, f);
    fwrite(g->b.p + g->kv_end, 1, infos_end - g->kv_end, f);
    fwrite(zeros, 1, (32 - end % 32) % 32, f);
    fwrite(g->b.p + g->data, 1, g->b.n - g->data, f);
    assert_int_equal(fclose(f), 0);
}

/* g with one more metadata pair opens (expect_ok) or fails naming n1. */
static void gguf_kv_case(const fx *x, const tg_file *g, const char *key, uint32_t t,
                         const void *val, size_t val_len, const char *n1)
{
    char p[PATH_CAP];
    cv_source src;
    mdi_err err = {0};
    tg_add_kv(g, tmp_path(x, "kv.gguf", p), key, t, val, val_len);
    if (!n1) {
        if (cv_open_gguf(p, &src, &err) != MDI_OK)
            fail_msg("%s: %s", key, err.msg);
        cv_source_close(&src);
    } else {
        expect_fail(cv_open_gguf(p, &src, &err), &src, &err, n1, p);
    }
    unlink(p);
}

/* Offset just after the first occurrence of the string s in g. */
static size_t tg_after(const tg_file *g, const char *s)
{
    size_t n = strlen(s);
    for (size_t i = 0; i + n <= g->b.n; i++)
        if (memcmp(g->b.p + i, s, n) == 0)
            return i + n;
    fail_msg("'%s' not in the file", s);
    return 0;
}

/* GGUF name of (kind, layer). */
static const char *gguf_name(mdi_tensor_kind kind, int32_t layer, char *buf, size_t cap)
{
    static const char *const names[MDI_T_COUNT] = {
        "attn_norm", "attn_q",   "attn_k", "attn_v",     "attn_output", "ffn_norm",
        "ffn_gate",  "ffn_down", "ffn_up", "token_embd", "output_norm", "output"};
    if (mdi_tensor_scope_of(kind) == MDI_SCOPE_LAYER)
        snprintf(buf, cap, "blk.%d.%s.weight", (int)layer, names[kind]);
    else
        snprintf(buf, cap, "%s.weight", names[kind]);
    return buf;
}

static void test_gguf_f16_bf16(void **state)
{
    fx *x = *state;
    cv_source ref, g;
    char path[PATH_CAP], out[PATH_CAP], name[64];
    mdi_err err = {0};
    if (!open_reference(&ref) ||
        !mdi_test_model_path("stories260K/stories260K.gguf", path, sizeof path))
        return;
    tg_file tg = tg_load(path);
    uint32_t types[64];
    static const char *const dt[3] = {"F16", "BF16", "F32"};
    static const uint32_t code[3] = {1, 30, 0};
    for (uint64_t i = 0; i < tg.nt; i++)
        types[i] = code[i % 3];
    tg_write(&tg, tmp_path(x, "half.gguf", out), types, -1);
    if (cv_open_gguf(out, &g, &err) != MDI_OK)
        fail_msg("half gguf: %s", err.msg);
    for (int32_t l = 0; l < ref.cfg.n_layers; l++)
        for (int k = 0; k < MDI_T_COUNT; k++)
            if (mdi_tensor_scope_of((mdi_tensor_kind)k) == MDI_SCOPE_LAYER) {
                size_t i =
                    (size_t)(tg_find(&tg, gguf_name((mdi_tensor_kind)k, l, name, 64)) - tg.t);
                expect_rounded(&ref, &g, (mdi_tensor_kind)k, l, dt[i % 3]);
            }
    size_t ie = (size_t)(tg_find(&tg, "token_embd.weight") - tg.t);
    expect_rounded(&ref, &g, MDI_T_EMBED, 0, dt[ie % 3]);
    cv_source_close(&g);

    /* Without output.weight the head is tied; without a layer tensor the file is refused. */
    for (uint64_t i = 0; i < tg.nt; i++)
        types[i] = 0;
    tg_write(&tg, out, types, (int)(tg_find(&tg, "output.weight") - tg.t));
    if (cv_open_gguf(out, &g, &err) != MDI_OK)
        fail_msg("gguf without output.weight: %s", err.msg);
    assert_int_equal(g.cfg.tied_head, 1);
    expect_same_tensors(&ref, &g, 0.0);
    cv_source_close(&g);
    tg_write(&tg, out, types, (int)(tg_find(&tg, "blk.4.ffn_up.weight") - tg.t));
    expect_fail(cv_open_gguf(out, &g, &err), &g, &err, "tensor 'blk.4.ffn_up.weight' is missing",
                out);
    free(tg.b.p);
    cv_source_close(&ref);
}

static void test_gguf_errors(void **state)
{
    fx *x = *state;
    char path[PATH_CAP];
    if (!mdi_test_model_path("stories260K/stories260K.gguf", path, sizeof path))
        return;
    tg_file g = tg_load(path);
    const uint64_t huge = (uint64_t)1 << 62, big_off = (uint64_t)1 << 40;
    const uint32_t one = 1, be3 = 0x03000000u, q4 = 2, t99 = 99, six = 6, three = 3;

    /* Truncated anywhere: inside the header, at the data start, inside the data. */
    for (size_t at = 0; at < g.data + 64; at += at < 64 ? 1 : 61)
        gguf_case(x, &g, "trunc.gguf", at, NULL, 0, "past end of file", NULL);
    gguf_case(x, &g, "trunc.gguf", g.b.n - 1, NULL, 0, "tensor '", "runs past end of file");

    /* Counts and lengths that lie. */
    gguf_case(x, &g, "e1.gguf", 8, &huge, 8, "n_tensors = 4611686018427387904",
              "run past end of file");
    gguf_case(x, &g, "e2.gguf", 16, &huge, 8, "n_kv = 4611686018427387904", NULL);
    gguf_case(x, &g, "e3.gguf", 24, &huge, 8,
              "metadata key at offset 32 + 4611686018427387904 bytes", "runs past end of file");
    gguf_case(x, &g, "e4.gguf", tg_after(&g, "tokenizer.ggml.tokens") + 8, &huge, 8,
              "'tokenizer.ggml.tokens' claims 4611686018427387904 array elements", NULL);
    gguf_case(x, &g, "e5.gguf", tg_after(&g, "general.name"), &t99, 4,
              "metadata 'general.name' has unknown value type 99", NULL);

    /* Header fields. */
    gguf_case(x, &g, "e6.gguf", 0, "GGUX", 4, "not a GGUF file", NULL);
    gguf_case(x, &g, "e7.gguf", 4, &one, 4, "GGUF version 1 is not supported", NULL);
    gguf_case(x, &g, "e8.gguf", 4, &be3, 4, "big-endian", NULL);
    gguf_case(x, &g, "e9.gguf", tg_after(&g, "general.architecture") + 12, "gpt2x", 5,
              "general.architecture is 'gpt2x'; only 'llama' is supported", NULL);
    /* a file's control bytes reach the terminal escaped, on one line */
    gguf_case(x, &g, "e9b.gguf", tg_after(&g, "general.architecture") + 12, "\033[2J\n", 5,
              "general.architecture is '\\x1b[2J\\x0a'; only 'llama' is supported", NULL);
    gguf_case(x, &g, "e10.gguf", tg_after(&g, "tokenizer.ggml.model") + 12, "gpt2x", 5,
              "tokenizer.ggml.model is 'gpt2x'", NULL);
    gguf_case(x, &g, "e11.gguf", tg_after(&g, "llama.block_c") - 1, "X", 1,
              "metadata key 'llama.block_count' is missing", NULL);
    gguf_case(x, &g, "e12.gguf", tg_after(&g, "llama.block_count") + 4, &six, 4,
              "tensor 'blk.5.attn_norm.weight' is missing", NULL);
    gguf_case(x, &g, "e13.gguf", tg_after(&g, "llama.attention.head_count") + 4, &three, 4,
              "llama.attention.head_count_kv = 4 is outside [1, 3]", NULL);
    const uint32_t t_u32 =
        4; /* the epsilon's value type: f32 (6) -> u32 (4), as llama.cpp refuses */
    gguf_case(
        x, &g, "e13b.gguf", tg_after(&g, "llama.attention.layer_norm_rms_epsilon"), &t_u32, 4,
        "metadata 'llama.attention.layer_norm_rms_epsilon' has value type 4, expected a float",
        NULL);
    const uint32_t four = 4; /* head width 64 / 8 = 8; no llama.attention.key_length */
    gguf_case(x, &g, "e14.gguf", tg_after(&g, "llama.rope.dimension_count") + 4, &four, 4,
              "llama.rope.dimension_count = 4 differs from the head width 8", "partial rotary");
    gguf_case(x, &g, "e15.gguf", tg_after(&g, "llama.rope.dimension_count") - 26,
              "llama.attention.head_count", 26,
              "metadata key 'llama.attention.head_count' appears twice", NULL);

    /* Metadata that would change the model's arithmetic or its prompts is refused
     * unless it says what the engine does; 6 is f32, 4 u32, 7 bool. */
    const float f4 = 4.0f, f1 = 1.0f;
    const uint32_t u4 = 4, u8 = 8;
    const uint8_t no = 0, yes = 1;
    gguf_kv_case(x, &g, "llama.rope.scaling.factor", 6, &f4, 4,
                 "llama.rope.scaling.factor = 4: rope scaling is not supported");
    gguf_kv_case(x, &g, "llama.rope.scale_linear", 6, &f4, 4,
                 "llama.rope.scale_linear = 4: rope scaling is not supported");
    gguf_kv_case(x, &g, "llama.rope.scaling.factor", 6, &f1, 4, NULL);
    gguf_kv_case(x, &g, "llama.attention.value_length", 4, &u4, 4,
                 "llama.attention.value_length = 4 differs from the head width 8");
    gguf_kv_case(x, &g, "llama.attention.value_length", 4, &u8, 4, NULL);
    gguf_kv_case(x, &g, "tokenizer.ggml.add_bos_token", 7, &no, 1,
                 "tokenizer.ggml.add_bos_token is false");
    gguf_kv_case(x, &g, "tokenizer.ggml.add_bos_token", 7, &yes, 1, NULL);
    gguf_kv_case(x, &g, "tokenizer.ggml.add_eos_token", 7, &yes, 1,
                 "tokenizer.ggml.add_eos_token is true");
    /* an f64 (type 12) that float32 cannot hold is named as written, not as 0 */
    const double tiny = 1e-300;
    gguf_kv_case(x, &g, "llama.rope.freq_base", 12, &tiny, 8,
                 "llama.rope.freq_base = 1e-300 is outside the float32 range");

    /* Without bos/eos/unk ids the SentencePiece defaults apply, as in llama.cpp;
     * "none" (0xFFFFFFFF) still means none. */
    char p[PATH_CAP];
    cv_source src;
    mdi_err err = {0};
    unsigned char *b = malloc(g.b.n);
    assert_non_null(b);
    memcpy(b, g.b.p, g.b.n);
    for (const char *const *k =
             (const char *const[]){"bos_token_id", "eos_token_id", "unknown_token_id", NULL};
         *k; k++)
        b[tg_after(&g, *k) - 1] = 'x'; /* ..._token_ix: a key nobody reads */
    spit(tmp_path(x, "noids.gguf", p), b, g.b.n);
    if (cv_open_gguf(p, &src, &err) != MDI_OK)
        fail_msg("gguf without token ids: %s", err.msg);
    assert_int_equal(src.vocab.bos_id, 1);
    assert_int_equal(src.vocab.eos_id, 2);
    assert_int_equal(src.vocab.unk_id, 0);
    cv_source_close(&src);
    const uint32_t none = 0xFFFFFFFFu;
    size_t at = tg_after(&g, "bos_token_id");
    assert_true(at > 0);
    b[at - 1] = 'd';
    memcpy(b + at + 4, &none, 4);
    spit(p, b, g.b.n);
    if (cv_open_gguf(p, &src, &err) != MDI_OK)
        fail_msg("gguf with bos none: %s", err.msg);
    assert_int_equal(src.vocab.bos_id, -1);
    cv_source_close(&src);

    /* Without scores and token types (optional in llama.cpp): scores are 0, and
     * the types inferred from the pieces and ids are the file's own. */
    cv_source full;
    memcpy(b, g.b.p, g.b.n);
    spit(p, b, g.b.n);
    if (cv_open_gguf(p, &full, &err) != MDI_OK)
        fail_msg("gguf: %s", err.msg);
    b[tg_after(&g, "tokenizer.ggml.scores") - 1] = 'x';
    b[tg_after(&g, "tokenizer.ggml.token_type") - 1] = 'x';
    spit(p, b, g.b.n);
    if (cv_open_gguf(p, &src, &err) != MDI_OK)
        fail_msg("gguf without scores and types: %s", err.msg);
    assert_int_equal(src.vocab.n, full.vocab.n);
    for (int32_t i = 0; i < src.vocab.n; i++) {
        assert_int_equal(src.vocab.types[i], full.vocab.types[i]);
        assert_true(src.vocab.scores[i] == 0.0f);
    }
    assert_int_equal(full.vocab.types[0], MDI_PIECE_UNKNOWN);
    assert_int_equal(full.vocab.types[2], MDI_PIECE_CONTROL);
    assert_int_equal(full.vocab.types[3], MDI_PIECE_BYTE);
    assert_int_equal(full.vocab.types[300], MDI_PIECE_NORMAL);
    cv_source_close(&full);
    cv_source_close(&src);
    unlink(p);
    free(b);

    /* Tensor infos. */
    const tg_info *q = tg_find(&g, "blk.0.attn_q.weight"), *k = tg_find(&g, "blk.0.attn_k.weight");
    const tg_info *v = tg_find(&g, "blk.1.attn_v.weight"), *o = tg_find(&g, "output.weight");
    const tg_info *up = tg_find(&g, "blk.4.ffn_up.weight");
    uint64_t misaligned = v->off + 4, k33 = 33;
    gguf_case(x, &g, "t1.gguf", q->pos + q->len - 12, &q4, 4,
              "tensor 'blk.0.attn_q.weight' has ggml type 2", "only F32 (0), F16 (1)");
    gguf_case(
        x, &g, "t2.gguf", k->pos + 8 + strlen(k->name) + 4 + 8, &k33, 8,
        "tensor 'blk.0.attn_k.weight' has shape [64, 33, 1, 1] (ne0 first), expected [64, 32]",
        NULL);
    gguf_case(x, &g, "t3.gguf", v->pos + v->len - 8, &misaligned, 8,
              "is not a multiple of the alignment 32", NULL);
    gguf_case(x, &g, "t4.gguf", o->pos + o->len - 8, &big_off, 8, "tensor 'output.weight' offset",
              "runs past end of file");
    gguf_case(x, &g, "t5.gguf", up->pos + 8, "blk.4.ffn_up.weighx", 19,
              "unexpected tensor 'blk.4.ffn_up.weighx'", NULL);
    gguf_case(x, &g, "t6.gguf", up->pos + 8, "blk.3.ffn_up.weight", 19,
              "tensor 'blk.3.ffn_up.weight' appears twice", NULL);
    /* two tensors at one place: each must have bytes of its own (the model
     * would otherwise load layer 0's q for layer 1's and generate wrong text) */
    const tg_info *q1 = tg_find(&g, "blk.1.attn_q.weight");
    gguf_case(x, &g, "t7.gguf", q1->pos + q1->len - 8, &q->off, 8, "tensors 'blk.", "overlap");
    free(g.b.p);
}

/* ---- synthetic source with a real tokenizer file ------------------------------- */

static void test_synthetic_tokenizer(void **state)
{
    fx *x = *state;
    cv_source ref, s;
    char tok[PATH_CAP];
    if (!open_reference(&ref) || !mdi_test_model_path("stories260K/tok512.bin", tok, sizeof tok))
        return;
    open_syn("stories260k", 1, tok, &s);
    expect_same_vocab(&ref.vocab, &s.vocab);
    cv_source_close(&s);
    syn_case(x,
             "{\"dim\": 64, \"hidden_dim\": 128, \"n_layers\": 2, \"n_heads\": 4,"
             " \"vocab_size\": 300, \"max_seq_len\": 64}",
             tok, "512 pieces, more than vocab_size = 300");
    cv_source_close(&ref);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gguf_matches_llama2c),   cmocka_unit_test(test_hf_matches_llama2c),
        cmocka_unit_test(test_hf_f16_bf16_and_shards), cmocka_unit_test(test_hf_errors),
        cmocka_unit_test(test_gguf_f16_bf16),          cmocka_unit_test(test_gguf_errors),
        cmocka_unit_test(test_synthetic_tokenizer),
    };
    return cmocka_run_group_tests(tests, fx_setup, fx_teardown);
}

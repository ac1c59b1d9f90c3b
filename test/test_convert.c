/* Converter: 16-bit float rounding, input detection and the llama2.c reader.
 * The writer and --inspect are in test_convert_write.c. */
#include "convert_util.h"

static void test_f16_rounding(void **state)
{
    (void)state;
    const struct {
        float in;
        uint16_t out;
    } cases[] = {
        {1.0f, 0x3c00},
        {-2.0f, 0xc000},
        {0.0f, 0x0000},
        {-0.0f, 0x8000},
        {65504.0f, 0x7bff},
        {65519.0f, 0x7bff}, /* below the tie: stays max finite */
        {65520.0f, 0x7c00}, /* tie between 65504 (odd) and 65536: to even = inf */
        {1e10f, 0x7c00},    /* overflow */
        {-1e10f, 0xfc00},
        {1.0f + 0x1p-11f, 0x3c00},            /* tie, 0x3c00 even: down */
        {1.0f + 0x3p-11f, 0x3c02},            /* tie, 0x3c01 odd: up */
        {1.0f + 0x1p-11f + 0x1p-20f, 0x3c01}, /* just above the tie: up */
        {0x1p-14f, 0x0400},                   /* smallest normal */
        {0x1p-24f, 0x0001},                   /* smallest subnormal */
        {0x1p-25f, 0x0000},                   /* tie between 0 and 1: even = 0 */
        {0x1p-25f + 0x1p-40f, 0x0001},        /* just above the tie */
        {0x3p-25f, 0x0002},                   /* tie between 1 and 2: even = 2 */
        {0x1p-14f - 0x1p-24f, 0x03ff},        /* largest subnormal */
        {0x3ffp-24f + 0x1p-25f, 0x0400},      /* tie rounds up into the normals */
        {-0x1p-24f, 0x8001},
        {1e-40f, 0x0000}, /* float32 subnormal underflows */
        {0.333333333f, 0x3555},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint16_t got = cv_f32_to_f16(cases[i].in);
        if (got != cases[i].out)
            fail_msg("f16(%a) = 0x%04x, expected 0x%04x", (double)cases[i].in, got, cases[i].out);
    }
    assert_int_equal(cv_f32_to_f16(INFINITY), 0x7c00);
    assert_int_equal(cv_f32_to_f16(-INFINITY), 0xfc00);
    uint16_t n = cv_f32_to_f16(NAN);
    assert_true((n & 0x7c00) == 0x7c00 && (n & 0x3ff) != 0);
    n = cv_f32_to_f16(from_bits(0xff800001u)); /* signalling NaN, payload in the low bits */
    assert_true((n & 0x7c00) == 0x7c00 && (n & 0x3ff) != 0 && (n & 0x8000));
    assert_true(cv_f16_to_f32(0x0001) == 0x1p-24f);
    assert_true(cv_f16_to_f32(0x03ff) == 0x3ffp-24f);
    assert_true(cv_f16_to_f32(0x7bff) == 65504.0f);
    assert_true(cv_f16_to_f32(0x7c00) == INFINITY && cv_f16_to_f32(0xfc00) == -INFINITY);
    assert_true(isnan(cv_f16_to_f32(0x7e00)) && isnan(cv_f16_to_f32(0x7c01)));
    assert_int_equal(to_bits(cv_f16_to_f32(0x8000)), 0x80000000u);
}

static void test_f16_round_trip_all(void **state)
{
    (void)state;
    for (uint32_t h = 0; h < 0x10000; h++) {
        float f = cv_f16_to_f32((uint16_t)h);
        if (isnan(f)) {
            assert_true(isnan(cv_f16_to_f32(cv_f32_to_f16(f))));
            continue;
        }
        if (cv_f32_to_f16(f) != h)
            fail_msg("f16 0x%04x -> %a -> 0x%04x", h, (double)f, cv_f32_to_f16(f));
    }
}

static void test_bf16_rounding(void **state)
{
    (void)state;
    assert_int_equal(cv_f32_to_bf16(1.0f), 0x3f80);
    assert_int_equal(cv_f32_to_bf16(-1.0f), 0xbf80);
    assert_int_equal(cv_f32_to_bf16(1.0f + 0x1p-8f), 0x3f80);            /* tie: even */
    assert_int_equal(cv_f32_to_bf16(1.0f + 0x3p-8f), 0x3f82);            /* tie: odd, up */
    assert_int_equal(cv_f32_to_bf16(1.0f + 0x1p-8f + 0x1p-20f), 0x3f81); /* above tie */
    assert_int_equal(cv_f32_to_bf16(3.4028235e38f), 0x7f80);             /* FLT_MAX -> inf */
    assert_int_equal(cv_f32_to_bf16(INFINITY), 0x7f80);
    assert_int_equal(cv_f32_to_bf16(-INFINITY), 0xff80);
    assert_int_equal(cv_f32_to_bf16(from_bits(0x00008000u)), 0x0000); /* subnormal tie: even */
    assert_int_equal(cv_f32_to_bf16(from_bits(0x00018000u)), 0x0002); /* subnormal tie: up */
    assert_int_equal(cv_f32_to_bf16(from_bits(0x00008001u)), 0x0001);
    uint16_t n = cv_f32_to_bf16(from_bits(0x7f800001u)); /* NaN that truncation makes inf */
    assert_true((n & 0x7f80) == 0x7f80 && (n & 0x7f) != 0);
    assert_int_equal(to_bits(cv_bf16_to_f32(0x3f80)), 0x3f800000u);
    for (uint32_t h = 0; h < 0x10000; h++) {
        float f = cv_bf16_to_f32((uint16_t)h);
        if (isnan(f))
            assert_true(isnan(cv_bf16_to_f32(cv_f32_to_bf16(f))));
        else if (cv_f32_to_bf16(f) != h)
            fail_msg("bf16 0x%04x -> %a -> 0x%04x", h, (double)f, cv_f32_to_bf16(f));
    }
}

static void test_fnv1a(void **state)
{
    (void)state;
    assert_true(mdi_fnv1a(MDI_FNV_INIT, "", 0) == 0xcbf29ce484222325ULL);
    assert_true(mdi_fnv1a(MDI_FNV_INIT, "a", 1) == 0xaf63dc4c8601ec8cULL);
    assert_true(mdi_fnv1a(MDI_FNV_INIT, "foobar", 6) == 0x85944171f73967e8ULL);
    assert_true(mdi_fnv1a(mdi_fnv1a(MDI_FNV_INIT, "foo", 3), "bar", 3) == 0x85944171f73967e8ULL);
}

/* ---- detection and the llama2.c reader ------------------------------------ */

static void test_fits_float(void **state)
{
    (void)state;
    assert_true(cv_fits_float(10000.0) && cv_fits_float(-1e-5) && cv_fits_float(0.0));
    assert_true(cv_fits_float(3.4e38) && cv_fits_float(1.2e-38) && cv_fits_float(1.5e-45));
    assert_true(cv_fits_float(NAN) && cv_fits_float(INFINITY)); /* for the config check */
    assert_false(cv_fits_float(1e-300) || cv_fits_float(-1e-300) || cv_fits_float(1e-46));
    assert_false(cv_fits_float(3.5e38) || cv_fits_float(-1e39) || cv_fits_float(1e300));
}

static void test_detect(void **state)
{
    (void)state;
    char p[1024], dir[256], junk[512];
    assert_int_equal(cv_detect(mdi_test_model_path(STORIES, p, sizeof p)), CV_INPUT_LLAMA2C);
    assert_int_equal(cv_detect(mdi_test_model_path("stories260K/stories260K.gguf", p, sizeof p)),
                     CV_INPUT_GGUF);
    assert_int_equal(cv_detect(mdi_test_model_path("stories260K-hf", p, sizeof p)),
                     CV_INPUT_HF_DIR);
    assert_int_equal(cv_detect(mdi_test_model_path(TOK512, p, sizeof p)), CV_INPUT_UNKNOWN);
    assert_int_equal(cv_detect(mdi_test_model_path("stories260K", p, sizeof p)),
                     CV_INPUT_UNKNOWN); /* a directory without config.json */
    make_tmpdir(dir, sizeof dir);
    snprintf(junk, sizeof junk, "%s/junk", dir);
    spit(junk, "hello, this is not a model at all, really", 41);
    assert_int_equal(cv_detect(junk), CV_INPUT_UNKNOWN);
    spit(junk, "", 0);
    assert_int_equal(cv_detect(junk), CV_INPUT_UNKNOWN);
    snprintf(junk, sizeof junk, "%s/missing", dir);
    assert_int_equal(cv_detect(junk), CV_INPUT_UNKNOWN);
    assert_int_equal(cv_detect(NULL), CV_INPUT_UNKNOWN);
    mdi_test_rm_tree(dir);
}

/* Byte offset of a tensor in stories260K.bin, from the llama2.c layout. */
static size_t l2c_offset(mdi_tensor_kind k, int layer)
{
    const size_t d = 64, h = 172, L = 5, kv = 32, v = 512;
    size_t order[] = {v * d, L * d,     L * d * d, L * kv * d, L * kv * d, L * d * d,
                      L * d, L * h * d, L * d * h, L * h * d,  d};
    size_t per[] = {0, d, d * d, kv * d, kv * d, d * d, d, h * d, d * h, h * d, 0};
    mdi_tensor_kind kinds[] = {MDI_T_EMBED, MDI_T_ATTN_NORM, MDI_T_WQ,        MDI_T_WK,
                               MDI_T_WV,    MDI_T_WO,        MDI_T_FFN_NORM,  MDI_T_W1,
                               MDI_T_W2,    MDI_T_W3,        MDI_T_FINAL_NORM};
    size_t off = 28;
    for (size_t i = 0; i < 11; i++) {
        if (kinds[i] == k)
            return off + 4 * per[i] * (size_t)layer;
        off += 4 * order[i];
    }
    fail_msg("no offset for kind %d", (int)k);
    return 0;
}

static void test_llama2c_header(void **state)
{
    (void)state;
    cv_source src;
    char p[1024], id[17];
    open_stories(&src);
    const mdi_config *c = &src.cfg;
    assert_int_equal(c->dim, 64);
    assert_int_equal(c->hidden_dim, 172);
    assert_int_equal(c->n_layers, 5);
    assert_int_equal(c->n_heads, 8);
    assert_int_equal(c->n_kv_heads, 4);
    assert_int_equal(c->head_dim, 8);
    assert_int_equal(c->vocab_size, 512);
    assert_int_equal(c->max_seq_len, 512);
    assert_int_equal(c->tied_head, 1);
    assert_true(c->rope_theta == 10000.0f && c->norm_eps == 1e-5f);
    assert_string_equal(src.kind, "llama2c");
    assert_int_equal(src.vocab.n, 512);
    size_t n;
    unsigned char *file = slurp(mdi_test_model_path(STORIES, p, sizeof p), &n);
    snprintf(id, sizeof id, "%016llx", (unsigned long long)mdi_fnv1a(MDI_FNV_INIT, file, n));
    assert_string_equal(src.model_id, id);
    float buf[172 * 64];
    mdi_err err;
    const mdi_tensor_kind ks[] = {MDI_T_EMBED, MDI_T_WK, MDI_T_W2, MDI_T_FINAL_NORM, MDI_T_OUTPUT};
    for (size_t i = 0; i < sizeof ks / sizeof ks[0]; i++) {
        size_t rows, cols;
        mdi_tensor_shape(c, ks[i], &rows, &cols);
        float *big = malloc(rows * cols * sizeof(float));
        assert_non_null(big);
        assert_int_equal(src.read(&src, ks[i], 3, big, &err), MDI_OK);
        mdi_tensor_kind at = ks[i] == MDI_T_OUTPUT ? MDI_T_EMBED : ks[i]; /* tied */
        int layer = mdi_tensor_scope_of(at) == MDI_SCOPE_LAYER ? 3 : 0;
        assert_memory_equal(big, file + l2c_offset(at, layer), rows * cols * sizeof(float));
        free(big);
    }
    assert_int_not_equal(src.read(&src, MDI_T_WQ, 5, buf, &err), MDI_OK);
    free(file);
    cv_source_close(&src);
    cv_source_close(&src); /* idempotent */
}

static void test_llama2c_errors(void **state)
{
    (void)state;
    char p[1024], t[1024], dir[256], bad[512];
    cv_source src;
    mdi_err err;
    size_t n;
    mdi_test_model_path(STORIES, p, sizeof p);
    mdi_test_model_path(TOK512, t, sizeof t);
    assert_int_not_equal(cv_open_llama2c(p, NULL, &src, &err), MDI_OK);
    assert_non_null(strstr(err.msg, "pass --tokenizer tokenizer.bin"));
    make_tmpdir(dir, sizeof dir);
    snprintf(bad, sizeof bad, "%s/trunc.bin", dir);
    unsigned char *file = slurp(p, &n);

    spit(bad, file, n - 4096 - 4); /* truncated inside the weights */
    assert_int_equal(cv_detect(bad), CV_INPUT_UNKNOWN);
    assert_int_equal(cv_open_llama2c(bad, t, &src, &err), MDI_ERR_FORMAT);
    assert_non_null(strstr(err.msg, bad));
    assert_non_null(strstr(err.msg, "truncated"));
    spit(bad, file, 20); /* shorter than the header */
    assert_int_equal(cv_open_llama2c(bad, t, &src, &err), MDI_ERR_FORMAT);
    assert_non_null(strstr(err.msg, bad));

    /* Absurd but in-range sizes: must fail on the size check, not allocate. */
    int32_t hdr[7] = {65536, 262144, 4096, 1024, 1024, 4194304, 1048576};
    memcpy(file, hdr, sizeof hdr);
    spit(bad, file, n);
    assert_int_equal(cv_detect(bad), CV_INPUT_UNKNOWN);
    assert_int_equal(cv_open_llama2c(bad, t, &src, &err), MDI_ERR_FORMAT);
    assert_non_null(strstr(err.msg, "header implies"));
    const int32_t wild[][7] = {{1 << 30, 172, 5, 8, 4, 512, 512},
                               {64, 172, 5, 8, 4, INT32_MIN, 512},
                               {64, 172, 5, 8, 3, 512, 512},
                               {64, 172, -5, 8, 4, 512, 512},
                               {64, 172, 5, 7, 7, 512, 512}};
    for (size_t i = 0; i < sizeof wild / sizeof wild[0]; i++) {
        memcpy(file, wild[i], sizeof wild[i]);
        spit(bad, file, n);
        assert_int_equal(cv_detect(bad), CV_INPUT_UNKNOWN);
        assert_int_not_equal(cv_open_llama2c(bad, t, &src, &err), MDI_OK);
        assert_non_null(strstr(err.msg, bad));
    }
    free(file);
    mdi_test_rm_tree(dir);
}

/* A v0 file without the legacy RoPE tables is read with the same tensors. */
static void test_llama2c_without_rope_tables(void **state)
{
    (void)state;
    char p[1024], t[1024], dir[256], path[512];
    size_t n;
    cv_source a, b;
    mdi_err err;
    mdi_test_model_path(TOK512, t, sizeof t);
    unsigned char *file = slurp(mdi_test_model_path(STORIES, p, sizeof p), &n);
    make_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/norope.bin", dir);
    spit(path, file, n - 512 * 8 * 4);
    assert_int_equal(cv_detect(path), CV_INPUT_LLAMA2C);
    open_stories(&a);
    if (cv_open_llama2c(path, t, &b, &err))
        fail_msg("%s", err.msg);
    assert_true(mdi_config_equal(&a.cfg, &b.cfg));
    assert_string_not_equal(a.model_id, b.model_id);
    static float x[64], y[64];
    assert_int_equal(a.read(&a, MDI_T_FINAL_NORM, 0, x, &err), MDI_OK);
    assert_int_equal(b.read(&b, MDI_T_FINAL_NORM, 0, y, &err), MDI_OK);
    assert_memory_equal(x, y, sizeof x);
    cv_source_close(&a);
    cv_source_close(&b);
    free(file);
    mdi_test_rm_tree(dir);
}

/* ---- the writer ------------------------------------------------------------ */

int main(void)
{
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_f16_rounding),
        cmocka_unit_test(test_f16_round_trip_all),
        cmocka_unit_test(test_bf16_rounding),
        cmocka_unit_test(test_fnv1a),
        cmocka_unit_test(test_fits_float),
        cmocka_unit_test(test_detect),
        cmocka_unit_test(test_llama2c_header),
        cmocka_unit_test(test_llama2c_errors),
        cmocka_unit_test(test_llama2c_without_rope_tables),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

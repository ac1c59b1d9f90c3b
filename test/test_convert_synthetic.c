/* The synthetic source (label unit, no model files): deterministic for a
 * seed and independent of read order, values in the documented ranges, the
 * presets' geometry, and JSON config files in either naming scheme, with the
 * expected message for every bad config. */
#define _XOPEN_SOURCE 700
#include "convert_test_util.h"

/* Values of (kind, layer) lie in the documented range, are not constant and average near 0. */
static void expect_plausible(cv_source *s, mdi_tensor_kind kind, int32_t layer)
{
    size_t n, r, c;
    float *v = read_tensor(s, kind, layer, &n);
    mdi_tensor_shape(&s->cfg, kind, &r, &c);
    double bound = kind == MDI_T_EMBED ? 0.1 : 1.0 / sqrt((double)c), sum = 0, sq = 0;
    for (size_t i = 0; i < n; i++) {
        if (!mdi_tensor_is_matrix(kind)) {
            assert_true(v[i] == 1.0f);
            continue;
        }
        assert_true(fabs(v[i]) <= bound * (1 + 1e-6));
        sum += v[i];
        sq += (double)v[i] * v[i];
    }
    if (mdi_tensor_is_matrix(kind)) {
        /* uniform on [-a, a]: mean 0 (std a/sqrt(3n)), mean square a^2/3 */
        assert_true(fabs(sum / (double)n) < 6 * bound / sqrt(3.0 * (double)n));
        assert_true(fabs(sq / (double)n / (bound * bound / 3) - 1) < 0.1);
    }
    free(v);
}

static void test_synthetic_deterministic(void **state)
{
    (void)state;
    cv_source a, b, c;
    open_syn("tiny", 7, NULL, &a);
    open_syn("tiny", 7, NULL, &b);
    open_syn("tiny", 8, NULL, &c);
    assert_string_equal(a.model_id, b.model_id);
    assert_string_not_equal(a.model_id, c.model_id);
    assert_int_equal(a.cfg.tied_head, 0);
    expect_same_tensors(&a, &b, 0.0);
    for (int32_t l = 0; l < a.cfg.n_layers; l++)
        for (int k = 0; k < MDI_T_COUNT; k++) {
            mdi_tensor_kind kind = (mdi_tensor_kind)k;
            if (mdi_tensor_scope_of(kind) != MDI_SCOPE_LAYER && l > 0)
                continue;
            expect_plausible(&a, kind, l);
            if (mdi_tensor_is_matrix(kind))
                assert_true(max_diff(&a, kind, l, &c, kind, l) > 0.0); /* another seed */
            if (mdi_tensor_is_matrix(kind) && l > 0 && mdi_tensor_scope_of(kind) == MDI_SCOPE_LAYER)
                assert_true(max_diff(&a, kind, l, &a, kind, l - 1) > 0.0); /* another layer */
        }
    assert_true(max_diff(&a, MDI_T_W1, 2, &a, MDI_T_W3, 2) > 0.0); /* another kind, same shape */
    assert_true(max_diff(&a, MDI_T_EMBED, 0, &a, MDI_T_OUTPUT, 0) > 0.0);
    /* Reads in any order give the same values. */
    assert_true(max_diff(&a, MDI_T_WQ, 3, &b, MDI_T_WQ, 3) == 0.0);
    assert_true(max_diff(&b, MDI_T_WQ, 3, &a, MDI_T_WQ, 3) == 0.0);
    /* Byte-level vocabulary of exactly vocab_size pieces. */
    assert_int_equal(a.vocab.n, a.cfg.vocab_size);
    assert_int_equal(a.vocab.bos_id, 1);
    assert_int_equal(a.vocab.eos_id, 2);
    assert_int_equal(a.vocab.unk_id, 0);
    assert_int_equal(a.vocab.types[3], MDI_PIECE_BYTE);
    assert_memory_equal(a.vocab.bytes + a.vocab.offsets[3 + 0x41], "<0x41>", 6);
    /* U+2581 right after the bytes, so spaces round-trip as spaces, then padding */
    assert_int_equal(a.vocab.types[259], MDI_PIECE_NORMAL);
    assert_memory_equal(a.vocab.bytes + a.vocab.offsets[259], "\xe2\x96\x81", 3);
    assert_int_equal(a.vocab.offsets[260] - a.vocab.offsets[259], 3);
    assert_int_equal(a.vocab.types[260], MDI_PIECE_UNUSED);
    assert_memory_equal(a.vocab.bytes + a.vocab.offsets[260], "<unused_0>", 10);
    mdi_err err = {0};
    assert_int_equal(mdi_vocab_validate(&a.vocab, &err), MDI_OK);
    /* Bad reads. */
    float one;
    assert_int_not_equal(a.read(&a, MDI_T_ATTN_NORM, 4, &one, &err), MDI_OK);
    assert_int_not_equal(a.read(&a, MDI_T_ATTN_NORM, -1, &one, &err), MDI_OK);
    cv_source_close(&a);
    cv_source_close(&b);
    cv_source_close(&c);
}

static void test_synthetic_presets(void **state)
{
    (void)state;
    cv_source t, s;
    mdi_err err = {0};
    open_syn("tinyllama-1.1b", 1, NULL, &t);
    const mdi_config want = MDI_TEST_TINYLLAMA;
    assert_true(mdi_config_equal(&t.cfg, &want));
    assert_int_equal(t.vocab.n, 32000);
    expect_plausible(&t, MDI_T_WK, 21);
    expect_plausible(&t, MDI_T_FFN_NORM, 0);
    cv_source_close(&t);
    open_syn("stories260k", 1, NULL, &s);
    const mdi_config st = {64, 172, 5, 8, 4, 8, 512, 512, 10000.0f, 1e-5f, 1};
    assert_true(mdi_config_equal(&s.cfg, &st));
    float x;
    assert_int_equal(s.read(&s, MDI_T_OUTPUT, 0, &x, &err), MDI_ERR_ARG); /* tied: no head */
    cv_source_close(&s);
}

static void test_synthetic_config_files(void **state)
{
    fx *x = *state;
    cv_source a, b;
    char p[PATH_CAP];
    mdi_err err = {0};
    const char *ours = "{\"dim\": 64, \"hidden_dim\": 172, \"n_layers\": 5, \"n_heads\": 8,"
                       " \"n_kv_heads\": 4, \"vocab_size\": 512, \"max_seq_len\": 512,"
                       " \"rope_theta\": 10000.0, \"norm_eps\": 1e-5, \"tied_head\": 1}";
    spit(tmp_path(x, "ours.json", p), ours, strlen(ours));
    open_syn(p, 3, NULL, &a);
    open_syn("stories260k", 3, NULL, &b);
    assert_true(mdi_config_equal(&a.cfg, &b.cfg));
    assert_string_equal(a.model_id, b.model_id); /* the id depends on geometry and seed only */
    expect_same_tensors(&a, &b, 0.0);
    cv_source_close(&a);
    cv_source_close(&b);
    const char *mini = "{\"hidden_size\": 32, \"intermediate_size\": 48, \"num_hidden_layers\": 1,"
                       " \"num_attention_heads\": 2, \"vocab_size\": 259,"
                       " \"max_position_embeddings\": 16, \"tie_word_embeddings\": false}";
    spit(tmp_path(x, "hf.json", p), mini, strlen(mini));
    open_syn(p, 3, NULL, &a);
    assert_int_equal(a.cfg.n_kv_heads, 2); /* defaults */
    assert_int_equal(a.cfg.head_dim, 16);
    assert_true(a.cfg.rope_theta == 10000.0f && a.cfg.norm_eps == 1e-5f);
    assert_int_equal(a.vocab.n, 259);
    cv_source_close(&a);

    syn_case(x,
             "{\"dim\": 64, \"hidden_dim\": 128, \"n_layers\": 2, \"n_heads\": 4,"
             " \"n_kv_heads\": 3, \"vocab_size\": 300, \"max_seq_len\": 64}",
             NULL, "not a multiple of n_kv_heads");
    syn_case(x,
             "{\"dim\": 64, \"hidden_dim\": 128, \"n_heads\": 4, \"vocab_size\": 300,"
             " \"max_seq_len\": 64}",
             NULL, "'n_layers' (or 'num_hidden_layers') is missing");
    syn_case(x, "{\"dim\": \"64\"}", NULL, "'dim' is a string, expected an integer");
    syn_case(x, "{\"dim\": 64, \"hidden_size\": 64}", NULL, "both 'dim' and 'hidden_size'");
    syn_case(x,
             "{\"dim\": 64, \"hidden_dim\": 128, \"n_layers\": 2, \"n_heads\": 4,"
             " \"vocab_size\": 100, \"max_seq_len\": 64}",
             NULL, "too small for the byte-level tokenizer");
    syn_case(x,
             "{\"dim\": 64, \"hidden_dim\": 128, \"n_layers\": 2, \"n_heads\": 4,"
             " \"vocab_size\": 300, \"max_seq_len\": 64, \"norm_eps\": 0}",
             NULL, "norm_eps");
    syn_case(x,
             "{\"dim\": 64, \"hidden_dim\": 128, \"n_layers\": 1e10, \"n_heads\": 4,"
             " \"vocab_size\": 300, \"max_seq_len\": 64}",
             NULL, "'n_layers' = 10000000000 is out of range");
    /* a value that float32 cannot hold is named as given, not as its 0 or inf */
    syn_case(x,
             "{\"dim\": 64, \"hidden_dim\": 128, \"n_layers\": 2, \"n_heads\": 4,"
             " \"vocab_size\": 300, \"max_seq_len\": 64, \"rope_theta\": 1e-300}",
             NULL, "syn.json: 'rope_theta' = 1e-300 is outside the float32 range");
    syn_case(x,
             "{\"dim\": 64, \"hidden_dim\": 128, \"n_layers\": 2, \"n_heads\": 4,"
             " \"vocab_size\": 300, \"max_seq_len\": 64, \"rms_norm_eps\": -1e39}",
             NULL, "'rms_norm_eps' = -1e+39 is outside the float32 range");
    syn_case(x, "{\"dim\": 64, \"rope_scaling\": {\"factor\": 2}}", NULL,
             "rope_scaling is not supported");
    syn_case(x, "{\"dim\": 64, \"rope_parameters\": {\"rope_theta\": 5e5}}", NULL,
             "rope_parameters is not supported (give rope_theta at the top level)");
    syn_case(x, "{\"dim\": 64,}", NULL, "syn.json: line 1 column 12");
    cv_source s;
    expect_fail(cv_open_synthetic("no-such-preset", 1, NULL, &s, &err), &s, &err,
                "'no-such-preset' is neither a preset", NULL);
    expect_fail(cv_open_synthetic(NULL, 1, NULL, &s, &err), &s, &err, "no preset", NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_synthetic_deterministic),
        cmocka_unit_test(test_synthetic_presets),
        cmocka_unit_test(test_synthetic_config_files),
    };
    return cmocka_run_group_tests(tests, fx_setup, fx_teardown);
}

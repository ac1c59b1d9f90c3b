/* Model configuration: validation of every field, parameter counts worked
 * out by hand, and the tensor catalogue (names, scopes, shapes, presence);
 * and the error messages those checks build (one line, control bytes escaped). */
#include "test_util.h"

#include <math.h>
#include <stddef.h>

#include "mdi/model_config.h"

/* llama2.c's stories260K: tied head, GQA 8/4, head_dim 8. */
static const mdi_config stories260k = {.dim = 64,
                                       .hidden_dim = 172,
                                       .n_layers = 5,
                                       .n_heads = 8,
                                       .n_kv_heads = 4,
                                       .head_dim = 8,
                                       .vocab_size = 512,
                                       .max_seq_len = 512,
                                       .rope_theta = 10000.0f,
                                       .norm_eps = 1e-5f,
                                       .tied_head = 1};

static const mdi_config tiny_llama = MDI_TEST_TINYLLAMA;

static void test_validate_accepts(void **state)
{
    (void)state;
    mdi_err err;
    mdi_err_clear(&err);
    assert_int_equal(mdi_config_validate(&stories260k, &err), MDI_OK);
    assert_int_equal(mdi_config_validate(&tiny_llama, &err), MDI_OK);
    /* edges that are still valid */
    mdi_config c = tiny_llama;
    c.n_kv_heads = c.n_heads; /* plain multi-head */
    assert_int_equal(mdi_config_validate(&c, &err), MDI_OK);
    c.n_kv_heads = 1; /* multi-query */
    assert_int_equal(mdi_config_validate(&c, &err), MDI_OK);
    c = tiny_llama;
    c.head_dim = 2;
    c.norm_eps = 1.0f;
    c.rope_theta = 1.5f;
    c.n_layers = 1;
    c.vocab_size = 1;
    c.max_seq_len = 1;
    c.tied_head = 1;
    assert_int_equal(mdi_config_validate(&c, &err), MDI_OK);
    c = tiny_llama;
    c.dim = MDI_MAX_DIM;
    c.hidden_dim = MDI_MAX_HIDDEN;
    c.n_layers = MDI_MAX_LAYERS;
    c.vocab_size = MDI_MAX_VOCAB;
    c.max_seq_len = MDI_MAX_SEQ;
    assert_int_equal(mdi_config_validate(&c, &err), MDI_OK);
}

/* Validation fails with MDI_ERR_RANGE and a message naming word. */
static void expect_invalid(const mdi_config *c, const char *what, const char *word)
{
    mdi_err err;
    mdi_err_clear(&err);
    mdi_status s = mdi_config_validate(c, &err);
    if (s == MDI_OK)
        fail_msg("%s accepted", what);
    assert_int_equal(s, MDI_ERR_RANGE);
    assert_int_equal(err.status, s);
    if (!strstr(err.msg, word))
        fail_msg("%s: message '%s' does not name %s", what, err.msg, word);
}

/* One field of TinyLlama set to a bad value; the message must name the field. */
typedef struct bad_field {
    size_t offset; /* offsetof(mdi_config, field) */
    int is_float;
    double value;
    const char *name;
} bad_field;

#define INT_FIELD(f, v)                     \
    {                                       \
        offsetof(mdi_config, f), 0, (v), #f \
    }
#define FLOAT_FIELD(f, v)                   \
    {                                       \
        offsetof(mdi_config, f), 1, (v), #f \
    }

static void test_validate_rejects(void **state)
{
    (void)state;
    const bad_field bad[] = {
        INT_FIELD(dim, 0),
        INT_FIELD(dim, -4),
        INT_FIELD(dim, MDI_MAX_DIM + 1),
        INT_FIELD(hidden_dim, 0),
        INT_FIELD(hidden_dim, MDI_MAX_HIDDEN + 1),
        INT_FIELD(n_layers, 0),
        INT_FIELD(n_layers, MDI_MAX_LAYERS + 1),
        INT_FIELD(n_heads, 0),
        INT_FIELD(n_heads, MDI_MAX_HEADS + 1),
        INT_FIELD(n_kv_heads, 0),
        INT_FIELD(n_kv_heads, 3),  /* does not divide 32 */
        INT_FIELD(n_kv_heads, 12), /* does not divide 32 */
        INT_FIELD(n_kv_heads, 64), /* more than n_heads */
        INT_FIELD(head_dim, 0),
        INT_FIELD(head_dim, 1),
        INT_FIELD(head_dim, 63), /* odd: RoPE needs pairs */
        INT_FIELD(head_dim, MDI_MAX_HEAD_DIM + 2),
        INT_FIELD(vocab_size, 0),
        INT_FIELD(vocab_size, MDI_MAX_VOCAB + 1),
        INT_FIELD(max_seq_len, 0),
        INT_FIELD(max_seq_len, MDI_MAX_SEQ + 1),
        INT_FIELD(tied_head, 2),
        INT_FIELD(tied_head, -1),
        FLOAT_FIELD(rope_theta, NAN),
        FLOAT_FIELD(rope_theta, INFINITY),
        FLOAT_FIELD(rope_theta, 1.0),
        FLOAT_FIELD(rope_theta, 0.5),
        FLOAT_FIELD(rope_theta, -10000.0),
        FLOAT_FIELD(norm_eps, 0.0),
        FLOAT_FIELD(norm_eps, -1e-5),
        FLOAT_FIELD(norm_eps, NAN),
        FLOAT_FIELD(norm_eps, INFINITY),
        FLOAT_FIELD(norm_eps, 2.0),
    };
    mdi_config c;
    char what[64];
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        c = tiny_llama;
        if (bad[i].is_float) {
            float v = (float)bad[i].value;
            memcpy((char *)&c + bad[i].offset, &v, sizeof v);
        } else {
            int32_t v = (int32_t)bad[i].value;
            memcpy((char *)&c + bad[i].offset, &v, sizeof v);
        }
        snprintf(what, sizeof what, "%s = %g", bad[i].name, bad[i].value);
        expect_invalid(&c, what, bad[i].name);
    }
    /* n_heads * head_dim too wide even though each is in range */
    c = tiny_llama;
    c.n_heads = MDI_MAX_HEADS;
    c.n_kv_heads = 1;
    c.head_dim = MDI_MAX_HEAD_DIM;
    expect_invalid(&c, "1024 heads of 1024", "n_heads * head_dim");
}

static void test_param_counts(void **state)
{
    (void)state;
    /* TinyLlama per layer: two norms 2*2048 = 4096; wq and wo 2048*2048 =
     * 4194304 each; wk and wv (4*64)*2048 = 524288 each; w1, w2, w3
     * 5632*2048 = 11534336 each. */
    size_t layer = 4096 + 2 * 4194304 + 2 * 524288 + 3 * 11534336;
    assert_int_equal(layer, 44044288);
    assert_int_equal(mdi_config_layer_params(&tiny_llama), layer);
    /* extras: embedding and head 32000*2048 = 65536000 each, final norm 2048 */
    assert_int_equal(mdi_config_extra_params(&tiny_llama), 2 * 65536000 + 2048);
    /* 22 layers + extras = TinyLlama's published 1.1B parameters */
    assert_int_equal(22 * layer + 2 * 65536000 + 2048, 1100048384);
    assert_int_equal(mdi_config_q_dim(&tiny_llama), 2048);
    assert_int_equal(mdi_config_kv_dim(&tiny_llama), 256);

    /* tied: the head is the embedding and is not counted twice */
    mdi_config tied = tiny_llama;
    tied.tied_head = 1;
    assert_int_equal(mdi_config_extra_params(&tied), 65536000 + 2048);
    assert_int_equal(mdi_config_layer_params(&tied), layer);

    /* stories260K: norms 128, wq wo 64*64, wk wv 32*64, w1 w2 w3 172*64;
     * extras embedding 512*64 and final norm 64. */
    assert_int_equal(mdi_config_layer_params(&stories260k), 128 + 2 * 4096 + 2 * 2048 + 3 * 11008);
    assert_int_equal(mdi_config_extra_params(&stories260k), 32768 + 64);
    assert_int_equal(mdi_config_kv_dim(&stories260k), 32);

    /* q_dim may differ from dim */
    mdi_config wide = stories260k;
    wide.head_dim = 12;
    assert_int_equal(mdi_config_q_dim(&wide), 96);
    assert_int_equal(mdi_config_layer_params(&wide), 128 + 2 * 96 * 64 + 2 * 48 * 64 + 3 * 11008);

    /* the largest valid geometry does not wrap */
    mdi_config big = tiny_llama;
    big.dim = MDI_MAX_DIM;
    big.hidden_dim = MDI_MAX_HIDDEN;
    big.n_heads = 256;
    big.n_kv_heads = 256;
    big.head_dim = MDI_MAX_HEAD_DIM;
    big.vocab_size = MDI_MAX_VOCAB;
    mdi_err err;
    assert_int_equal(mdi_config_validate(&big, &err), MDI_OK);
    uint64_t D = MDI_MAX_DIM, Hd = MDI_MAX_HIDDEN, Q = 256ull * MDI_MAX_HEAD_DIM;
    assert_int_equal(mdi_config_layer_params(&big), 2 * D + 4 * Q * D + 3 * Hd * D);
    assert_int_equal(mdi_config_extra_params(&big), 2ull * MDI_MAX_VOCAB * D + D);
}

static void test_tensor_catalogue(void **state)
{
    (void)state;
    const struct {
        mdi_tensor_kind k;
        const char *name;
        mdi_tensor_scope scope;
        size_t rows, cols;
        int matrix;
    } want[] = {
        {MDI_T_ATTN_NORM, "attn_norm", MDI_SCOPE_LAYER, 2048, 1, 0},
        {MDI_T_WQ, "wq", MDI_SCOPE_LAYER, 2048, 2048, 1},
        {MDI_T_WK, "wk", MDI_SCOPE_LAYER, 256, 2048, 1},
        {MDI_T_WV, "wv", MDI_SCOPE_LAYER, 256, 2048, 1},
        {MDI_T_WO, "wo", MDI_SCOPE_LAYER, 2048, 2048, 1},
        {MDI_T_FFN_NORM, "ffn_norm", MDI_SCOPE_LAYER, 2048, 1, 0},
        {MDI_T_W1, "w1", MDI_SCOPE_LAYER, 5632, 2048, 1},
        {MDI_T_W2, "w2", MDI_SCOPE_LAYER, 2048, 5632, 1},
        {MDI_T_W3, "w3", MDI_SCOPE_LAYER, 5632, 2048, 1},
        {MDI_T_EMBED, "token_embedding", MDI_SCOPE_EXTRA, 32000, 2048, 1},
        {MDI_T_FINAL_NORM, "final_norm", MDI_SCOPE_EXTRA, 2048, 1, 0},
        {MDI_T_OUTPUT, "output", MDI_SCOPE_EXTRA, 32000, 2048, 1},
    };
    assert_int_equal(sizeof want / sizeof want[0], MDI_T_COUNT);
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        size_t r = 0, c = 0;
        assert_int_equal(want[i].k, (mdi_tensor_kind)i);
        assert_string_equal(mdi_tensor_name(want[i].k), want[i].name);
        assert_int_equal(mdi_tensor_scope_of(want[i].k), want[i].scope);
        mdi_tensor_shape(&tiny_llama, want[i].k, &r, &c);
        if (r != want[i].rows || c != want[i].cols)
            fail_msg("%s: shape (%zu, %zu), want (%zu, %zu)", want[i].name, r, c, want[i].rows,
                     want[i].cols);
        assert_int_equal(mdi_tensor_is_matrix(want[i].k), want[i].matrix);
        assert_true(mdi_tensor_present(&tiny_llama, want[i].k));
    }
    /* tied: every tensor but the output head is stored */
    mdi_config tied = tiny_llama;
    tied.tied_head = 1;
    for (int k = 0; k < MDI_T_COUNT; k++)
        assert_int_equal(mdi_tensor_present(&tied, (mdi_tensor_kind)k), k != MDI_T_OUTPUT);
    /* names are distinct */
    for (int a = 0; a < MDI_T_COUNT; a++)
        for (int b = a + 1; b < MDI_T_COUNT; b++)
            assert_string_not_equal(mdi_tensor_name((mdi_tensor_kind)a),
                                    mdi_tensor_name((mdi_tensor_kind)b));
    /* out of range kinds */
    assert_string_equal(mdi_tensor_name(MDI_T_COUNT), "?");
    size_t r = 9, c = 9;
    mdi_tensor_shape(&tiny_llama, MDI_T_COUNT, &r, &c);
    assert_int_equal(r, 0);
    assert_int_equal(c, 0);
}

static void test_config_equal(void **state)
{
    (void)state;
    mdi_config a = tiny_llama, b = tiny_llama;
    assert_true(mdi_config_equal(&a, &b));
    /* each field on its own makes a difference */
    mdi_config diff[11];
    for (int f = 0; f < 11; f++)
        diff[f] = tiny_llama;
    diff[0].dim++;
    diff[1].hidden_dim++;
    diff[2].n_layers++;
    diff[3].n_heads++;
    diff[4].n_kv_heads++;
    diff[5].head_dim++;
    diff[6].vocab_size++;
    diff[7].max_seq_len++;
    diff[8].rope_theta = 500000.0f;
    diff[9].norm_eps = 1e-6f;
    diff[10].tied_head = 1;
    for (int f = 0; f < 11; f++)
        if (mdi_config_equal(&a, &diff[f]) || mdi_config_equal(&diff[f], &a))
            fail_msg("configs differing in field %d compare equal", f);
}

static void test_error_one_line(void **state)
{
    (void)state;
    mdi_err err;
    char name[8] = {'a', 0x1b, '[', '\n', 0x7f, '\t', 'z', 0};
    assert_int_equal(mdi_errf(&err, MDI_ERR_FORMAT, "tensor '%s' is odd", name), MDI_ERR_FORMAT);
    assert_string_equal(err.msg, "tensor 'a\\x1b[\\x0a\\x7f\\x09z' is odd");
    /* wrapping an escaped message again leaves it as it is */
    char inner[MDI_ERR_MSG_MAX];
    snprintf(inner, sizeof inner, "%s", err.msg);
    mdi_errf(&err, MDI_ERR_FORMAT, "f.gguf: %s", inner);
    assert_string_equal(err.msg, "f.gguf: tensor 'a\\x1b[\\x0a\\x7f\\x09z' is odd");
    /* a message of control bytes fills the buffer with whole escapes, terminated */
    char many[MDI_ERR_MSG_MAX];
    memset(many, '\n', sizeof many - 1);
    many[sizeof many - 1] = 0;
    mdi_errf(&err, MDI_ERR_FORMAT, "x%s", many);
    size_t n = strlen(err.msg);
    assert_true(n < MDI_ERR_MSG_MAX && n >= MDI_ERR_MSG_MAX - 5 && (n - 1) % 4 == 0);
    assert_null(strchr(err.msg, '\n'));
    assert_string_equal(err.msg + n - 4, "\\x0a");
    mdi_errf(NULL, MDI_ERR_FORMAT, "%s", name); /* no err: nothing to do */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_validate_accepts), cmocka_unit_test(test_validate_rejects),
        cmocka_unit_test(test_param_counts),     cmocka_unit_test(test_tensor_catalogue),
        cmocka_unit_test(test_config_equal),     cmocka_unit_test(test_error_one_line),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

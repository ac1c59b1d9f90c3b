/* The Llama 2 tokenizer.model survives conversion (label model): a synthetic
 * model of vocab 32000 carrying ../shared/models/llama2-tokenizer/tokenizer.model
 * is written by cv_write, its /tokenizer group is read back by the engine's
 * loader, and the tokenizer built from it encodes every entry of
 * encodings.json exactly as SentencePiece does. */
#include "test_util.h"
#include "json_test_util.h"

#include <unistd.h>

#include "convert.h"
#include "mdi/shard_loader.h"
#include "mdi/tokenizer.h"

#define PATH_CAP 4096

/* Tiny layers, the Llama 2 vocabulary size. */
static const char config_json[] = "{\"dim\": 16, \"hidden_dim\": 32, \"n_layers\": 1,"
                                  " \"n_heads\": 2, \"vocab_size\": 32000, \"max_seq_len\": 64}";

/* A private directory under /tmp with the config file in it. */
typedef struct fx {
    char dir[64], config[PATH_CAP], model[PATH_CAP];
} fx;

static int fx_setup(void **state)
{
    fx *x = calloc(1, sizeof *x);
    if (!x)
        return -1;
    snprintf(x->dir, sizeof x->dir, "/tmp/mdi-tokfile-XXXXXX");
    if (!mkdtemp(x->dir)) {
        free(x);
        return -1;
    }
    snprintf(x->config, sizeof x->config, "%s/CONFIG.json", x->dir);
    snprintf(x->model, sizeof x->model, "%s/model.h5", x->dir);
    FILE *f = fopen(x->config, "wb");
    if (!f || fwrite(config_json, 1, sizeof config_json - 1, f) != sizeof config_json - 1 ||
        fclose(f) != 0) {
        free(x);
        return -1;
    }
    *state = x;
    return 0;
}

static int fx_teardown(void **state)
{
    fx *x = *state;
    unlink(x->model);
    unlink(x->config);
    rmdir(x->dir);
    free(x);
    return 0;
}

static void test_tokenizer_model_through_hdf5(void **state)
{
    fx *x = *state;
    char tok[PATH_CAP];
    cv_source src;
    mdi_vocab direct, loaded;
    mdi_tokenizer *t = NULL;
    mdi_err err = {0};
    if (!mdi_test_model_path("llama2-tokenizer/tokenizer.model", tok, sizeof tok))
        return;
    size_t n_cases;
    enc_case *cases = read_encodings(&n_cases);
    assert_true(n_cases >= 40);

    /* Convert: synthetic weights, the real tokenizer.model. */
    if (cv_open_synthetic(x->config, 1, tok, &src, &err) != MDI_OK)
        fail_msg("synthetic: %s", err.msg);
    assert_int_equal(src.cfg.vocab_size, 32000);
    assert_int_equal(src.vocab.n, 32000);
    cv_write_opts opts = {.dtype = CV_DTYPE_F32, .n_shards = 1, .quiet = 1};
    if (cv_write(&src, x->model, &opts, &err) != MDI_OK)
        fail_msg("cv_write: %s", err.msg);
    cv_source_close(&src);

    /* The loader gives back exactly the vocabulary the SentencePiece reader gives. */
    memset(&loaded, 0, sizeof loaded);
    memset(&direct, 0, sizeof direct);
    if (mdi_shard_load_vocab(x->model, &loaded, &err) != MDI_OK)
        fail_msg("load vocab: %s", err.msg);
    if (cv_read_spm_model(tok, &direct, &err) != MDI_OK)
        fail_msg("spm: %s", err.msg);
    assert_int_equal(loaded.n, 32000);
    assert_int_equal(loaded.n, direct.n);
    assert_memory_equal(loaded.offsets, direct.offsets, (loaded.n + 1) * sizeof *loaded.offsets);
    assert_memory_equal(loaded.bytes, direct.bytes, direct.offsets[direct.n]);
    assert_memory_equal(loaded.scores, direct.scores, loaded.n * sizeof *loaded.scores);
    assert_memory_equal(loaded.types, direct.types, loaded.n * sizeof *loaded.types);
    assert_int_equal(loaded.bos_id, 1);
    assert_int_equal(loaded.eos_id, 2);
    assert_int_equal(loaded.unk_id, 0);
    assert_int_equal(loaded.add_dummy_prefix, direct.add_dummy_prefix);
    mdi_vocab_free(&direct);

    /* Every reference encoding, without BOS. */
    if (mdi_tokenizer_create(&loaded, &t, &err) != MDI_OK)
        fail_msg("tokenizer: %s", err.msg);
    mdi_vocab_free(&loaded);
    int32_t ids[MAX_IDS];
    for (size_t c = 0; c < n_cases; c++) {
        size_t n = 0, i = 0;
        if (mdi_tokenizer_encode(t, cases[c].text, cases[c].len, 0, ids, MAX_IDS, &n, &err))
            fail_msg("case %zu: %s", c, err.msg);
        while (i < n && i < cases[c].n && ids[i] == cases[c].ids[i])
            i++;
        if (i < n || i < cases[c].n)
            fail_msg("case %zu \"%s\": %zu ids (want %zu), first difference at %zu: %d vs %d", c,
                     cases[c].text, n, cases[c].n, i, i < n ? (int)ids[i] : -1,
                     i < cases[c].n ? (int)cases[c].ids[i] : -1);
    }
    fprintf(stderr, "converted tokenizer.model: %zu/%zu reference encodings match\n", n_cases,
            n_cases);
    mdi_tokenizer_free(t);
    free_encodings(cases, n_cases);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tokenizer_model_through_hdf5),
    };
    return cmocka_run_group_tests(tests, fx_setup, fx_teardown);
}

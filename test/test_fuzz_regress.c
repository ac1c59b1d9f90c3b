/* Replays every input kept under test/fuzz/regress/<target>/ (what the
 * fuzzers of jobs/fuzz.sh found, kept after the fix) through the entry points
 * of the fuzz targets, which check the parsers' promises themselves: each
 * input must end in a defined status with a message, never a crash or a
 * sanitizer report. A few fixed inputs run too, so every target is exercised
 * even when its directory is empty. */
#define MDI_FUZZ_NO_MAIN
#include "test_util.h"

#include "fuzz/fuzz_gguf.c"
#include "fuzz/fuzz_hdf5.c"
#include "fuzz/fuzz_llama2c.c"
#include "fuzz/fuzz_safetensors.c"
#include "fuzz/fuzz_spm.c"
#include "fuzz/fuzz_tokenizer.c"

typedef struct target {
    const char *name; /* directory under test/fuzz/regress */
    mdi_status (*run)(const uint8_t *data, size_t size);
} target;

static const target targets[] = {
    {"llama2c", fuzz_llama2c}, {"gguf", fuzz_gguf},           {"safetensors", fuzz_safetensors},
    {"spm", fuzz_spm},         {"tokenizer", fuzz_tokenizer}, {"hdf5", fuzz_hdf5},
};

static void replay(const target *t, const char *what, const uint8_t *data, size_t size)
{
    mdi_status s = t->run(data, size);
    if (s < MDI_ERR_INTERNAL || s > MDI_OK)
        fail_msg("%s %s: undefined status %d", t->name, what, (int)s);
    printf("  %s %s (%zu bytes): %s\n", t->name, what, size, mdi_status_str(s));
}

/* Every regular file of test/fuzz/regress/<name>; returns how many. */
static int replay_dir(const target *t)
{
    const char *src = getenv("MDI_SOURCE_DIR");
    char dir[FUZZ_PATH_MAX], path[2 * FUZZ_PATH_MAX];
    snprintf(dir, sizeof dir, "%s/test/fuzz/regress/%s", src ? src : ".", t->name);
    DIR *d = opendir(dir);
    struct dirent *e;
    int n = 0;
    while (d && (e = readdir(d)) != NULL) {
        struct stat st;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (e->d_name[0] == '.' || stat(path, &st) != 0 || !S_ISREG(st.st_mode))
            continue;
        FILE *f = fopen(path, "rb");
        uint8_t *buf = malloc((size_t)st.st_size + 1);
        assert_non_null(f);
        assert_non_null(buf);
        assert_int_equal(fread(buf, 1, (size_t)st.st_size, f), (size_t)st.st_size);
        fclose(f);
        replay(t, e->d_name, buf, (size_t)st.st_size);
        free(buf);
        n++;
    }
    if (d)
        closedir(d);
    return n;
}

static void test_target(void **state)
{
    const target *t = *state;
    static const uint8_t fixed[][8] = {{0}, {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}};
    replay(t, "(empty)", (const uint8_t *)"", 0);
    replay(t, "(8 zero bytes)", fixed[0], sizeof fixed[0]);
    replay(t, "(8 0xff bytes)", fixed[1], sizeof fixed[1]);
    printf("  %s: %d regression inputs\n", t->name, replay_dir(t));
}

int main(void)
{
    char tok[FUZZ_PATH_MAX];
    const char *models = getenv("MDI_MODELS_DIR");
    struct stat st;
    /* The tokenizer target also uses the Llama 2 vocabulary when it is here. */
    snprintf(tok, sizeof tok, "%s/llama2-tokenizer/tokenizer.model",
             models ? models : "../shared/models");
    if (!getenv("MDI_FUZZ_TOKENIZER") && stat(tok, &st) == 0)
        setenv("MDI_FUZZ_TOKENIZER", tok, 1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_prestate(test_target, (void *)&targets[0]),
        cmocka_unit_test_prestate(test_target, (void *)&targets[1]),
        cmocka_unit_test_prestate(test_target, (void *)&targets[2]),
        cmocka_unit_test_prestate(test_target, (void *)&targets[3]),
        cmocka_unit_test_prestate(test_target, (void *)&targets[4]),
        cmocka_unit_test_prestate(test_target, (void *)&targets[5]),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* Helpers shared by the cmocka tests (header-only, static). */
#ifndef MDI_TEST_UTIL_H
#define MDI_TEST_UTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/stat.h>

#include <cmocka.h>

/* Path of file `rel` under ../shared/models, or NULL when it is absent. In CI
 * (CI=true) a missing model fails the test loudly; elsewhere the test is
 * skipped with a visible message. Writes into buf (cap bytes). */
static inline const char *mdi_test_model_path(const char *rel, char *buf, size_t cap)
{
    const char *dir = getenv("MDI_MODELS_DIR");
    struct stat st;
    if (!dir)
        dir = "../shared/models";
    snprintf(buf, cap, "%s/%s", dir, rel);
    if (stat(buf, &st) == 0)
        return buf;
    const char *ci = getenv("CI");
    if (ci && strcmp(ci, "true") == 0) {
        fail_msg("test model %s is missing (CI=true: models are required)", buf);
    }
    fprintf(stderr, "SKIP: test model %s is missing\n", buf);
    skip();
    return NULL;
}

/* Relative difference |a-b| / max(|b|, floor). */
static inline double mdi_test_rel(double a, double b, double floor_)
{
    double d = a > b ? a - b : b - a, m = b < 0 ? -b : b;
    return d / (m > floor_ ? m : floor_);
}

/* rm -r path, without following links (test scratch directories only). */
static inline void mdi_test_rm_tree(const char *path)
{
    struct stat st;
    char sub[1024];
    if (lstat(path, &st) != 0)
        return;
    if (S_ISDIR(st.st_mode)) {
        DIR *d = opendir(path);
        for (struct dirent *e; d && (e = readdir(d));) {
            if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
                int n = snprintf(sub, sizeof sub, "%s/%s", path, e->d_name);
                if (n > 0 && (size_t)n < sizeof sub) /* a longer path is not ours */
                    mdi_test_rm_tree(sub);
            }
        }
        if (d)
            closedir(d);
    }
    remove(path);
}

/* TinyLlama-1.1B's geometry as an mdi_config initializer: untied head, GQA
 * 32/4, head_dim 64, 22 layers. */
#define MDI_TEST_TINYLLAMA                                                                \
    {                                                                                     \
        .dim = 2048, .hidden_dim = 5632, .n_layers = 22, .n_heads = 32, .n_kv_heads = 4,  \
        .head_dim = 64, .vocab_size = 32000, .max_seq_len = 2048, .rope_theta = 10000.0f, \
        .norm_eps = 1e-5f, .tied_head = 0                                                 \
    }

#endif /* MDI_TEST_UTIL_H */

/* Helpers shared by the converter reader tests (test_convert_formats.c,
 * test_convert_synthetic.c), header-only and static: a private temporary
 * directory per test group, reading tensors out of a cv_source and comparing
 * sources, expecting a failed open. Define _XOPEN_SOURCE 700 before including
 * (nftw). Failures end the test. */
#ifndef MDI_CONVERT_TEST_UTIL_H
#define MDI_CONVERT_TEST_UTIL_H

#include "test_util.h"

#include <ftw.h>
#include <math.h>
#include <unistd.h>

#include "convert.h"

#define PATH_CAP 4096

/* Paths shared by the tests: a private temporary directory. */
typedef struct fx {
    char tmp[64];
} fx;

static inline int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static inline int fx_setup(void **state)
{
    fx *x = calloc(1, sizeof *x);
    if (!x)
        return -1;
    snprintf(x->tmp, sizeof x->tmp, "/tmp/mdi-fmt-XXXXXX");
    if (!mkdtemp(x->tmp)) {
        free(x);
        return -1;
    }
    *state = x;
    return 0;
}

static inline int fx_teardown(void **state)
{
    fx *x = *state;
    nftw(x->tmp, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(x);
    return 0;
}

static inline void spit(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(p, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
}

/* tmp/name into buf. */
static inline const char *tmp_path(const fx *x, const char *name, char *buf)
{
    snprintf(buf, PATH_CAP, "%s/%s", x->tmp, name);
    return buf;
}

/* Read (kind, layer) of src into a new buffer of *n floats. */
static inline float *read_tensor(cv_source *src, mdi_tensor_kind kind, int32_t layer, size_t *n)
{
    size_t r, c;
    mdi_err err = {0};
    mdi_tensor_shape(&src->cfg, kind, &r, &c);
    float *t = malloc(r * c * sizeof *t);
    assert_non_null(t);
    if (src->read(src, kind, layer, t, &err) != MDI_OK)
        fail_msg("%s: read %s layer %d: %s", src->kind, mdi_tensor_name(kind), (int)layer, err.msg);
    *n = r * c;
    return t;
}

/* Largest |a - b| between tensor (ka, la) of a and (kb, lb) of b (same shape). */
static inline double max_diff(cv_source *a, mdi_tensor_kind ka, int32_t la, cv_source *b,
                              mdi_tensor_kind kb, int32_t lb)
{
    size_t na, nb;
    float *x = read_tensor(a, ka, la, &na), *y = read_tensor(b, kb, lb, &nb);
    assert_int_equal(na, nb);
    double worst = 0.0;
    for (size_t i = 0; i < na; i++) {
        double d = x[i] == y[i] ? 0.0 : fabs((double)x[i] - (double)y[i]);
        worst = d > worst || isnan(d) ? d : worst;
    }
    free(x);
    free(y);
    return worst;
}

/* Every layer tensor and every extra both sources store agree within tol (0: bit-identical). */
static inline void expect_same_tensors(cv_source *a, cv_source *b, double tol)
{
    for (int32_t l = 0; l < a->cfg.n_layers; l++)
        for (int k = 0; k < MDI_T_COUNT; k++)
            if (mdi_tensor_scope_of((mdi_tensor_kind)k) == MDI_SCOPE_LAYER) {
                double d = max_diff(a, (mdi_tensor_kind)k, l, b, (mdi_tensor_kind)k, l);
                if (d > tol)
                    fail_msg("%s vs %s: %s layer %d differs by %g", a->kind, b->kind,
                             mdi_tensor_name((mdi_tensor_kind)k), (int)l, d);
            }
    assert_true(max_diff(a, MDI_T_EMBED, 0, b, MDI_T_EMBED, 0) <= tol);
    assert_true(max_diff(a, MDI_T_FINAL_NORM, 0, b, MDI_T_FINAL_NORM, 0) <= tol);
    /* The head: stored, or the embedding when tied. */
    mdi_tensor_kind ha = a->cfg.tied_head ? MDI_T_EMBED : MDI_T_OUTPUT;
    mdi_tensor_kind hb = b->cfg.tied_head ? MDI_T_EMBED : MDI_T_OUTPUT;
    assert_true(max_diff(a, ha, 0, b, hb, 0) <= tol);
}

static inline void expect_model_id(const cv_source *s)
{
    assert_int_equal(strlen(s->model_id), 16);
    assert_int_equal(strspn(s->model_id, "0123456789abcdef"), 16);
}

/* A failed open: status not ok, message holds both needles, src left zeroed. */
static inline void expect_fail(mdi_status s, cv_source *src, const mdi_err *err, const char *n1,
                               const char *n2)
{
    if (s == MDI_OK)
        fail_msg("open succeeded, expected an error containing '%s'", n1);
    if (!strstr(err->msg, n1) || (n2 && !strstr(err->msg, n2)))
        fail_msg("message '%s' lacks '%s'%s%s", err->msg, n1, n2 ? " / " : "", n2 ? n2 : "");
    assert_null(src->impl);
    assert_null(src->read);
    assert_int_equal(src->vocab.n, 0);
    cv_source_close(src); /* safe on the zeroed struct */
}

/* Open a synthetic source, failing the test on error. */
static inline void open_syn(const char *spec, uint64_t seed, const char *tok, cv_source *s)
{
    mdi_err err = {0};
    if (cv_open_synthetic(spec, seed, tok, s, &err) != MDI_OK)
        fail_msg("synthetic %s: %s", spec, err.msg);
    assert_string_equal(s->kind, "synthetic");
    expect_model_id(s);
}

/* Expect cv_open_synthetic on a config file holding text to fail with needle. */
static inline void syn_case(const fx *x, const char *text, const char *tok, const char *needle)
{
    char p[PATH_CAP];
    cv_source s;
    mdi_err err = {0};
    spit(tmp_path(x, "syn.json", p), text, strlen(text));
    expect_fail(cv_open_synthetic(p, 1, tok, &s, &err), &s, &err, needle, NULL);
}

#endif /* MDI_CONVERT_TEST_UTIL_H */

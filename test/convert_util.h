/* Helpers shared by the converter tests (header-only, static inline), as
 * test_util.h: temporary directories, files, HDF5 attributes and datasets. */
#ifndef MDI_TEST_CONVERT_UTIL_H
#define MDI_TEST_CONVERT_UTIL_H

#include "test_util.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <unistd.h>

#include <hdf5.h>

#include "convert.h"

#define STORIES "stories260K/stories260K.bin"
#define TOK512 "stories260K/tok512.bin"

/* ---- helpers --------------------------------------------------------------- */

static inline float from_bits(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static inline uint32_t to_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

/* Fresh empty directory under /tmp (path into buf). */
static inline void make_tmpdir(char *buf, size_t cap)
{
    snprintf(buf, cap, "/tmp/mdi-test-convert-XXXXXX");
    assert_non_null(mkdtemp(buf));
}

/* Number of entries in dir (not . and ..); those containing ".tmp-" into *tmp. */
static inline int count_entries(const char *dir, int *tmp)
{
    DIR *d = opendir(dir);
    int n = 0;
    *tmp = 0;
    assert_non_null(d);
    for (struct dirent *e; (e = readdir(d));) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        n++;
        if (strstr(e->d_name, ".tmp-"))
            (*tmp)++;
    }
    closedir(d);
    return n;
}

/* Whole file into a malloc'd buffer. */
static inline unsigned char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)len);
    assert_non_null(b);
    assert_int_equal(fread(b, 1, (size_t)len, f), (size_t)len);
    fclose(f);
    *n = (size_t)len;
    return b;
}

static inline void spit(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, n, f), n);
    fclose(f);
}

static inline int32_t h5_int(hid_t loc, const char *name)
{
    int32_t v = -12345;
    hid_t a = H5Aopen(loc, name, H5P_DEFAULT);
    if (a < 0)
        fail_msg("attribute %s missing", name);
    assert_true(H5Aread(a, H5T_NATIVE_INT32, &v) >= 0);
    H5Aclose(a);
    return v;
}

static inline float h5_float(hid_t loc, const char *name)
{
    float v = NAN;
    hid_t a = H5Aopen(loc, name, H5P_DEFAULT);
    if (a < 0)
        fail_msg("attribute %s missing", name);
    hid_t t = H5Aget_type(a);
    assert_int_equal(H5Tequal(t, H5T_IEEE_F32LE), 1);
    H5Tclose(t);
    assert_true(H5Aread(a, H5T_NATIVE_FLOAT, &v) >= 0);
    H5Aclose(a);
    return v;
}

/* Fixed-length string attribute, checked to be NULLTERM of size strlen + 1. */
static inline void h5_str(hid_t loc, const char *name, char *buf, size_t cap)
{
    hid_t a = H5Aopen(loc, name, H5P_DEFAULT);
    if (a < 0)
        fail_msg("attribute %s missing", name);
    hid_t t = H5Aget_type(a);
    assert_int_equal(H5Tget_class(t), H5T_STRING);
    assert_int_equal(H5Tget_strpad(t), H5T_STR_NULLTERM);
    size_t size = H5Tget_size(t);
    assert_true(size < cap);
    memset(buf, 0, cap);
    assert_true(H5Aread(a, t, buf) >= 0);
    assert_int_equal(strlen(buf) + 1, size);
    H5Tclose(t);
    H5Aclose(a);
}

/* Dataset `name` as float32 (HDF5 converts 16-bit types), checking shape,
 * contiguous layout, no filters and the stored element size; malloc'd. */
static inline float *h5_floats(hid_t f, const char *name, int rank, size_t rows, size_t cols,
                               size_t elem)
{
    hid_t d = H5Dopen2(f, name, H5P_DEFAULT);
    if (d < 0)
        fail_msg("dataset %s missing", name);
    hid_t sp = H5Dget_space(d), t = H5Dget_type(d), pl = H5Dget_create_plist(d);
    hsize_t dims[2] = {0, 0};
    assert_int_equal(H5Sget_simple_extent_ndims(sp), rank);
    H5Sget_simple_extent_dims(sp, dims, NULL);
    assert_int_equal(dims[0], rows);
    assert_int_equal(rank == 2 ? dims[1] : 1, cols);
    assert_int_equal(H5Tget_class(t), H5T_FLOAT);
    assert_int_equal(H5Tget_size(t), elem);
    assert_int_equal(H5Pget_layout(pl), H5D_CONTIGUOUS);
    assert_int_equal(H5Pget_nfilters(pl), 0);
    float *v = malloc(rows * cols * sizeof *v);
    assert_non_null(v);
    assert_true(H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) >= 0);
    H5Pclose(pl);
    H5Tclose(t);
    H5Sclose(sp);
    H5Dclose(d);
    return v;
}

static inline int h5_exists(hid_t f, const char *name)
{
    return H5Lexists(f, name, H5P_DEFAULT) > 0;
}

/* ---- 16-bit floats -------------------------------------------------------- */
/* stories260K through the llama2.c reader. */
static inline void open_stories(cv_source *src)
{
    char p[1024], t[1024];
    mdi_err err;
    mdi_test_model_path(STORIES, p, sizeof p);
    mdi_test_model_path(TOK512, t, sizeof t);
    if (cv_open_llama2c(p, t, src, &err))
        fail_msg("cv_open_llama2c: %s", err.msg);
}

#endif /* MDI_TEST_CONVERT_UTIL_H */

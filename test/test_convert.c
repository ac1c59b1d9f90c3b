/* Converter: 16-bit float rounding, input detection, the llama2.c reader, and
 * the HDF5 writer (one file, shards, dtypes, failures leave nothing behind),
 * checked by reading the output back with HDF5 directly. */
#include "test_util.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <unistd.h>

#include <hdf5.h>

#include "convert.h"
#include "inspect.h"
#include "mdi/plan.h"

#define STORIES "stories260K/stories260K.bin"
#define TOK512 "stories260K/tok512.bin"

/* ---- helpers --------------------------------------------------------------- */

static float from_bits(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static uint32_t to_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

/* Fresh empty directory under /tmp (path into buf). */
static void make_tmpdir(char *buf, size_t cap)
{
    snprintf(buf, cap, "/tmp/mdi-test-convert-XXXXXX");
    assert_non_null(mkdtemp(buf));
}

/* Number of entries in dir (not . and ..); those containing ".tmp-" into *tmp. */
static int count_entries(const char *dir, int *tmp)
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
static unsigned char *slurp(const char *path, size_t *n)
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

static void spit(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, n, f), n);
    fclose(f);
}

static int32_t h5_int(hid_t loc, const char *name)
{
    int32_t v = -12345;
    hid_t a = H5Aopen(loc, name, H5P_DEFAULT);
    if (a < 0)
        fail_msg("attribute %s missing", name);
    assert_true(H5Aread(a, H5T_NATIVE_INT32, &v) >= 0);
    H5Aclose(a);
    return v;
}

static float h5_float(hid_t loc, const char *name)
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
static void h5_str(hid_t loc, const char *name, char *buf, size_t cap)
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
static float *h5_floats(hid_t f, const char *name, int rank, size_t rows, size_t cols, size_t elem)
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

static int h5_exists(hid_t f, const char *name)
{
    return H5Lexists(f, name, H5P_DEFAULT) > 0;
}

/* ---- 16-bit floats -------------------------------------------------------- */

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
    assert_true(cv_fnv1a(CV_FNV_INIT, "", 0) == 0xcbf29ce484222325ULL);
    assert_true(cv_fnv1a(CV_FNV_INIT, "a", 1) == 0xaf63dc4c8601ec8cULL);
    assert_true(cv_fnv1a(CV_FNV_INIT, "foobar", 6) == 0x85944171f73967e8ULL);
    assert_true(cv_fnv1a(cv_fnv1a(CV_FNV_INIT, "foo", 3), "bar", 3) == 0x85944171f73967e8ULL);
}

/* ---- detection and the llama2.c reader ------------------------------------ */

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

static void open_stories(cv_source *src)
{
    char p[1024], t[1024];
    mdi_err err;
    mdi_test_model_path(STORIES, p, sizeof p);
    mdi_test_model_path(TOK512, t, sizeof t);
    if (cv_open_llama2c(p, t, src, &err))
        fail_msg("cv_open_llama2c: %s", err.msg);
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
    snprintf(id, sizeof id, "%016llx", (unsigned long long)cv_fnv1a(CV_FNV_INIT, file, n));
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

/* What a value of the source looks like after storage as dtype. */
static float stored(float x, cv_dtype dt)
{
    if (dt == CV_DTYPE_F16)
        return cv_f16_to_f32(cv_f32_to_f16(x));
    if (dt == CV_DTYPE_BF16)
        return cv_bf16_to_f32(cv_f32_to_bf16(x));
    return x;
}

/* Dataset name of tensor k in layer l (extras when l < 0) equals the source, bit for bit. */
static void check_tensor(hid_t f, cv_source *src, mdi_tensor_kind k, int32_t l, cv_dtype dt)
{
    char name[64];
    size_t rows, cols;
    mdi_err err;
    int matrix = mdi_tensor_is_matrix(k);
    mdi_tensor_shape(&src->cfg, k, &rows, &cols);
    if (l >= 0)
        snprintf(name, sizeof name, "/layers/%03d/%s", (int)l, mdi_tensor_name(k));
    else
        snprintf(name, sizeof name, "/%s", mdi_tensor_name(k));
    float *got =
        h5_floats(f, name, matrix ? 2 : 1, rows, cols, matrix && dt != CV_DTYPE_F32 ? 2 : 4);
    float *want = malloc(rows * cols * sizeof *want);
    assert_non_null(want);
    assert_int_equal(src->read(src, k, l < 0 ? 0 : l, want, &err), MDI_OK);
    for (size_t i = 0; i < rows * cols; i++) {
        float w = matrix ? stored(want[i], dt) : want[i];
        if (to_bits(got[i]) != to_bits(w))
            fail_msg("%s[%zu] = %a, expected %a", name, i, (double)got[i], (double)w);
    }
    free(want);
    free(got);
}

/* The /tokenizer group equals src->vocab. */
static void check_tokenizer(hid_t f, const mdi_vocab *v)
{
    hid_t g = H5Gopen2(f, "tokenizer", H5P_DEFAULT);
    assert_true(g >= 0);
    uint64_t *off = malloc(((size_t)v->n + 1) * sizeof *off);
    float *sc = h5_floats(g, "scores", 1, (size_t)v->n, 1, 4);
    assert_non_null(off);
    hid_t d = H5Dopen2(g, "offsets", H5P_DEFAULT);
    assert_true(H5Dread(d, H5T_NATIVE_UINT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, off) >= 0);
    H5Dclose(d);
    assert_memory_equal(off, v->offsets, ((size_t)v->n + 1) * sizeof *off);
    assert_memory_equal(sc, v->scores, (size_t)v->n * sizeof *sc);
    assert_int_equal(h5_int(g, "bos_id"), v->bos_id);
    assert_int_equal(h5_int(g, "eos_id"), v->eos_id);
    assert_int_equal(h5_int(g, "unk_id"), v->unk_id);
    assert_int_equal(h5_int(g, "add_dummy_prefix"), v->add_dummy_prefix);
    assert_true(h5_exists(g, "bytes") && h5_exists(g, "types"));
    free(sc);
    free(off);
    H5Gclose(g);
}

/* One written file holds exactly layers [first, last) of src and says so. */
static void check_file(const char *path, cv_source *src, int32_t first, int32_t last, int32_t index,
                       int32_t count, cv_dtype dt)
{
    static const char *const dts[] = {"f32", "f16", "bf16"};
    char s[64];
    const mdi_config *c = &src->cfg;
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0)
        fail_msg("cannot open %s", path);
    h5_str(f, "format", s, sizeof s);
    assert_string_equal(s, "mdi-llm");
    assert_int_equal(h5_int(f, "format_version"), 1);
    h5_str(f, "model_id", s, sizeof s);
    assert_string_equal(s, src->model_id);
    h5_str(f, "rope_layout", s, sizeof s);
    assert_string_equal(s, "interleaved");
    h5_str(f, "dtype", s, sizeof s);
    assert_string_equal(s, dts[dt]);
    mdi_config g = {h5_int(f, "dim"),        h5_int(f, "hidden_dim"),  h5_int(f, "n_layers"),
                    h5_int(f, "n_heads"),    h5_int(f, "n_kv_heads"),  h5_int(f, "head_dim"),
                    h5_int(f, "vocab_size"), h5_int(f, "max_seq_len"), h5_float(f, "rope_theta"),
                    h5_float(f, "norm_eps"), h5_int(f, "tied_head")};
    assert_true(mdi_config_equal(&g, c));
    assert_int_equal(h5_int(f, "layer_first"), first);
    assert_int_equal(h5_int(f, "layer_last"), last);
    assert_int_equal(h5_int(f, "shard_index"), index);
    assert_int_equal(h5_int(f, "shard_count"), count);
    H5G_info_t info;
    assert_true(H5Gget_info_by_name(f, "layers", &info, H5P_DEFAULT) >= 0);
    assert_int_equal(info.nlinks, (hsize_t)(last - first));
    for (int k = 0; k < MDI_T_COUNT; k++) {
        mdi_tensor_kind kind = (mdi_tensor_kind)k;
        if (mdi_tensor_scope_of(kind) == MDI_SCOPE_LAYER) {
            for (int32_t l = first; l < last; l++)
                check_tensor(f, src, kind, l, dt);
        } else if (first == 0 && mdi_tensor_present(c, kind)) {
            check_tensor(f, src, kind, -1, dt);
        } else {
            assert_false(h5_exists(f, mdi_tensor_name(kind)));
        }
    }
    assert_int_equal(h5_exists(f, "tokenizer"), first == 0 && src->vocab.n > 0);
    if (first == 0 && src->vocab.n > 0)
        check_tokenizer(f, &src->vocab);
    H5Fclose(f);
}

static mdi_status write_opts(cv_source *src, const char *out, cv_dtype dt, int32_t n,
                             const int32_t *split, mdi_err *err)
{
    cv_write_opts o = {.dtype = dt, .n_shards = n, .split = split, .quiet = 1};
    return cv_write(src, out, &o, err);
}

/* Write src as n shards (bounds), then check names and every file. */
static void check_sharded(cv_source *src, const char *dir, const char *name, int32_t n,
                          const int32_t *split, cv_dtype dt)
{
    char out[512], path[640];
    int32_t bounds[MDI_MAX_LAYERS + 1];
    int tmp;
    mdi_err err;
    snprintf(out, sizeof out, "%s/%s", dir, name);
    if (write_opts(src, out, dt, n, split, &err))
        fail_msg("cv_write %s: %s", out, err.msg);
    if (split)
        assert_int_equal(mdi_plan_from_counts(&src->cfg, split, n, bounds, &err), MDI_OK);
    else
        assert_int_equal(mdi_plan_balanced(&src->cfg, n, bounds, &err), MDI_OK);
    assert_int_equal(count_entries(out, &tmp), n);
    assert_int_equal(tmp, 0);
    for (int32_t i = 0; i < n; i++) {
        snprintf(path, sizeof path, "%s/model-%02d-of-%02d.L%03d-%03d.h5", out, (int)i, (int)n,
                 (int)bounds[i], (int)bounds[i + 1] - 1);
        check_file(path, src, bounds[i], bounds[i + 1], i, n, dt);
    }
}

static void test_write_stories(void **state)
{
    (void)state;
    char dir[256], out[512];
    int tmp;
    cv_source src;
    mdi_err err;
    open_stories(&src);
    make_tmpdir(dir, sizeof dir);
    snprintf(out, sizeof out, "%s/one.h5", dir);
    if (write_opts(&src, out, CV_DTYPE_F32, 0, NULL, &err))
        fail_msg("cv_write: %s", err.msg);
    check_file(out, &src, 0, 5, 0, 1, CV_DTYPE_F32);
    check_sharded(&src, dir, "two", 2, NULL, CV_DTYPE_F32);
    check_sharded(&src, dir, "five", 5, NULL, CV_DTYPE_F32);
    const int32_t split[] = {1, 1, 3};
    check_sharded(&src, dir, "split-f16", 3, split, CV_DTYPE_F16);
    snprintf(out, sizeof out, "%s/bf16.h5", dir);
    assert_int_equal(write_opts(&src, out, CV_DTYPE_BF16, 1, NULL, &err), MDI_OK);
    check_file(out, &src, 0, 5, 0, 1, CV_DTYPE_BF16);
    assert_int_equal(count_entries(dir, &tmp), 5);
    assert_int_equal(tmp, 0);
    cv_source_close(&src);
    mdi_test_rm_tree(dir);
}

/* A made-up source: small geometry, optional NaN/Inf at one tensor of one layer. */
typedef struct fake_impl {
    mdi_tensor_kind bad_kind;
    int32_t bad_layer;
    float bad_value;
} fake_impl;

static mdi_status fake_read(cv_source *src, mdi_tensor_kind k, int32_t layer, float *out,
                            mdi_err *err)
{
    (void)err;
    fake_impl *f = src->impl;
    size_t rows, cols;
    mdi_tensor_shape(&src->cfg, k, &rows, &cols);
    for (size_t i = 0; i < rows * cols; i++)
        out[i] = (float)((int)k * 10 + layer) + (float)(i % 97) * 0.01f;
    if (k == f->bad_kind && layer == f->bad_layer)
        out[rows * cols / 2] = f->bad_value;
    return MDI_OK;
}

static void make_fake(cv_source *src, fake_impl *impl, int tied)
{
    memset(src, 0, sizeof *src);
    src->cfg = (mdi_config){16, 24, 4, 4, 2, 4, 32, 64, 10000.0f, 1e-5f, tied};
    snprintf(src->model_id, sizeof src->model_id, "0123456789abcdef");
    src->kind = "fake";
    src->impl = impl;
    src->read = fake_read;
}

static void test_write_refusals(void **state)
{
    (void)state;
    char dir[256], out[512];
    int tmp;
    cv_source src;
    fake_impl impl = {.bad_kind = MDI_T_COUNT};
    mdi_err err;
    make_fake(&src, &impl, 1); /* 4 layers */
    make_tmpdir(dir, sizeof dir);
    const int32_t bad[] = {2, 4, 4};
    snprintf(out, sizeof out, "%s/split", dir);
    assert_int_not_equal(write_opts(&src, out, CV_DTYPE_F32, 3, bad, &err), MDI_OK);
    assert_non_null(strstr(err.msg, "split covers")); /* planner's message */
    assert_non_null(strstr(err.msg, "but the model has 4"));
    assert_int_not_equal(write_opts(&src, out, CV_DTYPE_F32, 5, NULL, &err), MDI_OK);
    assert_int_equal(count_entries(dir, &tmp), 0);

    snprintf(out, sizeof out, "%s/exists", dir); /* an existing file or directory is kept */
    spit(out, "keep", 4);
    for (int32_t n = 1; n <= 2; n++) {
        assert_int_equal(write_opts(&src, out, CV_DTYPE_F32, n, NULL, &err), MDI_ERR_ARG);
        assert_non_null(strstr(err.msg, "exists; remove it first"));
    }
    size_t len;
    unsigned char *kept = slurp(out, &len);
    assert_int_equal(len, 4);
    free(kept);
    assert_int_equal(count_entries(dir, &tmp), 1);

    snprintf(out, sizeof out, "%s/no/such/dir/out.h5", dir); /* parent missing */
    for (int32_t n = 1; n <= 2; n++) {
        assert_int_not_equal(write_opts(&src, out, CV_DTYPE_F32, n, NULL, &err), MDI_OK);
        assert_non_null(strstr(err.msg, "cannot create"));
    }
    assert_int_equal(count_entries(dir, &tmp), 1);
    if (geteuid() != 0) { /* root ignores permissions */
        char ro[300];
        snprintf(ro, sizeof ro, "%s/ro", dir);
        assert_int_equal(mkdir(ro, 0555), 0);
        snprintf(out, sizeof out, "%s/out.h5", ro);
        assert_int_not_equal(write_opts(&src, out, CV_DTYPE_F32, 1, NULL, &err), MDI_OK);
        assert_int_equal(count_entries(ro, &tmp), 0);
        chmod(ro, 0755);
    }
    cv_source_close(&src);
    mdi_test_rm_tree(dir);
}

static void test_write_untied_without_tokenizer(void **state)
{
    (void)state;
    char dir[256], out[512];
    cv_source src;
    fake_impl impl = {.bad_kind = MDI_T_COUNT};
    mdi_err err;
    make_fake(&src, &impl, 0);
    make_tmpdir(dir, sizeof dir);
    snprintf(out, sizeof out, "%s/untied.h5", dir);
    if (write_opts(&src, out, CV_DTYPE_F16, 1, NULL, &err))
        fail_msg("cv_write: %s", err.msg);
    check_file(out, &src, 0, 4, 0, 1, CV_DTYPE_F16); /* /output present, no /tokenizer */
    cv_source_close(&src);
    mdi_test_rm_tree(dir);
}

static void test_write_nonfinite_leaves_nothing(void **state)
{
    (void)state;
    char dir[256], out[512];
    int tmp;
    cv_source src;
    mdi_err err;
    fake_impl impl = {MDI_T_W2, 3, NAN};
    make_fake(&src, &impl, 1);
    make_tmpdir(dir, sizeof dir);
    snprintf(out, sizeof out, "%s/bad", dir);
    for (int32_t n = 1; n <= 3; n++) {
        assert_int_equal(write_opts(&src, out, CV_DTYPE_F32, n, NULL, &err), MDI_ERR_FORMAT);
        assert_non_null(strstr(err.msg, "tensor w2 of layer 3"));
        assert_int_equal(count_entries(dir, &tmp), 0);
    }
    impl = (fake_impl){MDI_T_EMBED, 0, INFINITY};
    assert_int_equal(write_opts(&src, out, CV_DTYPE_BF16, 2, NULL, &err), MDI_ERR_FORMAT);
    assert_non_null(strstr(err.msg, "tensor token_embedding"));
    assert_int_equal(count_entries(dir, &tmp), 0);
    cv_source_close(&src);
    mdi_test_rm_tree(dir);
}

static void test_inspect(void **state)
{
    (void)state;
    char dir[256], out[512], shard[640];
    cv_source src;
    fake_impl impl = {.bad_kind = MDI_T_COUNT};
    mdi_err err;
    FILE *null = fopen("/dev/null", "w");
    assert_non_null(null);
    make_fake(&src, &impl, 0);
    make_tmpdir(dir, sizeof dir);
    snprintf(out, sizeof out, "%s/m", dir);
    const int32_t split[] = {1, 1, 2};
    assert_int_equal(write_opts(&src, out, CV_DTYPE_BF16, 3, split, &err), MDI_OK);
    assert_int_equal(cv_inspect(out, null, &err), MDI_OK);
    snprintf(shard, sizeof shard, "%s/model-01-of-03.L001-001.h5", out);
    assert_int_equal(cv_inspect(shard, null, &err), MDI_OK);
    hid_t f = H5Fopen(shard, H5F_ACC_RDWR, H5P_DEFAULT), a = H5Aopen(f, "format_version", 0);
    int32_t v2 = 2;
    assert_true(a >= 0 && H5Awrite(a, H5T_NATIVE_INT32, &v2) >= 0);
    H5Aclose(a);
    H5Fclose(f);
    assert_int_equal(cv_inspect(out, null, &err), MDI_ERR_FORMAT);
    assert_non_null(strstr(err.msg, "format_version 2 is not supported"));
    assert_int_equal(remove(shard), 0); /* a gap in the layers */
    assert_int_equal(cv_inspect(out, null, &err), MDI_ERR_FORMAT);
    f = H5Fcreate(shard, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    H5Fclose(f);
    assert_int_equal(cv_inspect(shard, null, &err), MDI_ERR_FORMAT);
    assert_non_null(strstr(err.msg, "not an mdi-llm model"));
    snprintf(shard, sizeof shard, "%s/m/model-00-of-03.L000-000.h5", dir);
    spit(shard, "junk", 4);
    assert_int_equal(cv_inspect(shard, null, &err), MDI_ERR_FORMAT);
    assert_non_null(strstr(err.msg, "not an HDF5 file"));
    fclose(null);
    cv_source_close(&src);
    mdi_test_rm_tree(dir);
}

int main(void)
{
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_f16_rounding),
        cmocka_unit_test(test_f16_round_trip_all),
        cmocka_unit_test(test_bf16_rounding),
        cmocka_unit_test(test_fnv1a),
        cmocka_unit_test(test_detect),
        cmocka_unit_test(test_llama2c_header),
        cmocka_unit_test(test_llama2c_errors),
        cmocka_unit_test(test_llama2c_without_rope_tables),
        cmocka_unit_test(test_write_stories),
        cmocka_unit_test(test_write_refusals),
        cmocka_unit_test(test_write_untied_without_tokenizer),
        cmocka_unit_test(test_write_nonfinite_leaves_nothing),
        cmocka_unit_test(test_inspect),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* Shard loader against broken model files: each case starts from a valid file
 * written by the converter (synthetic "tiny" model), breaks one thing with
 * the HDF5 API, and checks the loader's status and that its one-line message
 * names the file and the problem. Also: a prompt whose ids outnumber its bytes
 * (byte fallback) read through a model file. No model files needed. */
#include "test_util.h"

#include <dirent.h>
#include <math.h>
#include <unistd.h>

#include <hdf5.h>

#include "convert.h"
#include "mdi/engine.h"
#include "mdi/shard_loader.h"

#define PATH_CAP 1024

/* The scratch directory and the valid files every case copies. */
typedef struct fx {
    char dir[256];
    char good[PATH_CAP];   /* whole model, tiny: 4 layers, untied head, tokenizer */
    char shards[PATH_CAP]; /* the same as 2 shards: layers [0, 2) and [2, 4) */
    char path[PATH_CAP];   /* the case being tested (a fresh copy of good) */
    mdi_config cfg;
} fx;

/* ---- helpers --------------------------------------------------------------- */

static void copy_file(const char *from, const char *to)
{
    FILE *in = fopen(from, "rb"), *out = fopen(to, "wb");
    char buf[1 << 16];
    size_t n;
    assert_non_null(in);
    assert_non_null(out);
    while ((n = fread(buf, 1, sizeof buf, in)) > 0)
        assert_int_equal(fwrite(buf, 1, n, out), n);
    fclose(in);
    assert_int_equal(fclose(out), 0);
}

/* x->path = a fresh copy of the valid model named `name`. */
static const char *fresh(fx *x, const char *name)
{
    snprintf(x->path, sizeof x->path, "%s/%s", x->dir, name);
    remove(x->path);
    copy_file(x->good, x->path);
    return x->path;
}

static hid_t open_rw(const char *path)
{
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    assert_true(f >= 0);
    return f;
}

/* Replace (or add) scalar attribute `name` of object `obj` with type ftype, value *v. */
static void put_attr(const char *path, const char *obj, const char *name, hid_t ftype, hid_t mtype,
                     const void *v)
{
    hid_t f = open_rw(path), sp = H5Screate(H5S_SCALAR);
    if (H5Aexists_by_name(f, obj, name, H5P_DEFAULT) > 0)
        assert_true(H5Adelete_by_name(f, obj, name, H5P_DEFAULT) >= 0);
    hid_t a = H5Acreate_by_name(f, obj, name, ftype, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    assert_true(a >= 0);
    assert_true(H5Awrite(a, mtype, v) >= 0);
    H5Aclose(a);
    H5Sclose(sp);
    H5Fclose(f);
}

static void put_int(const char *path, const char *obj, const char *name, int32_t v)
{
    put_attr(path, obj, name, H5T_STD_I32LE, H5T_NATIVE_INT32, &v);
}

static void put_str(const char *path, const char *name, const char *v)
{
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, strlen(v) + 1);
    put_attr(path, "/", name, t, t, v);
    H5Tclose(t);
}

static void del_attr(const char *path, const char *obj, const char *name)
{
    hid_t f = open_rw(path);
    assert_true(H5Adelete_by_name(f, obj, name, H5P_DEFAULT) >= 0);
    H5Fclose(f);
}

static void del_link(const char *path, const char *name)
{
    hid_t f = open_rw(path);
    assert_true(H5Ldelete(f, name, H5P_DEFAULT) >= 0);
    H5Fclose(f);
}

/* Replace dataset `name` with one of file type ftype and shape dims (zeros). */
static void put_dataset(const char *path, const char *name, hid_t ftype, int rank,
                        const hsize_t *dims)
{
    hid_t f = open_rw(path);
    if (H5Lexists(f, name, H5P_DEFAULT) > 0)
        assert_true(H5Ldelete(f, name, H5P_DEFAULT) >= 0);
    hid_t sp = H5Screate_simple(rank, dims, NULL);
    hid_t d = H5Dcreate2(f, name, ftype, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    assert_true(d >= 0);
    H5Dclose(d);
    H5Sclose(sp);
    H5Fclose(f);
}

/* Set element i of float dataset `name` to v. */
static void poke(const char *path, const char *name, size_t i, float v)
{
    hid_t f = open_rw(path), d = H5Dopen2(f, name, H5P_DEFAULT);
    assert_true(d >= 0);
    hid_t sp = H5Dget_space(d);
    hssize_t n = H5Sget_simple_extent_npoints(sp);
    assert_true(n > (hssize_t)i);
    float *buf = malloc((size_t)n * sizeof *buf);
    assert_non_null(buf);
    assert_true(H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) >= 0);
    buf[i] = v;
    assert_true(H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) >= 0);
    free(buf);
    H5Sclose(sp);
    H5Dclose(d);
    H5Fclose(f);
}

/* The message names the file (if path) and contains want (if not empty). */
static void expect_msg(const mdi_err *err, const char *path, const char *want)
{
    if (!*want)
        return;
    if (getenv("MDI_TEST_VERBOSE")) /* the messages docs/ROBUSTNESS.md quotes */
        printf("    %s\n", err->msg);
    if (!strstr(err->msg, want) || (path && !strstr(err->msg, path)))
        fail_msg("message '%s' lacks '%s' or the path %s", err->msg, want, path ? path : "-");
}

static void expect_probe(const char *path, mdi_status want, const char *msg)
{
    mdi_shard_info in;
    mdi_err err;
    mdi_err_clear(&err);
    mdi_status s = mdi_shard_probe(path, &in, &err);
    if (s != want)
        fail_msg("probe %s: status %d, expected %d (%s)", path, s, want, err.msg);
    expect_msg(&err, path, msg);
}

/* A stage of half-layers [first, last) loaded from path (the caller frees st). */
static mdi_status load_halves(const fx *x, const char *path, int32_t first, int32_t last,
                              mdi_stage *st, mdi_err *err)
{
    mdi_stage_params p = {.half_first = first,
                          .half_last = last,
                          .has_extras = first == 0,
                          .n_slots = 1,
                          .max_pos = 4,
                          .max_rows = 1,
                          .max_logit_rows = 1,
                          .n_threads = 1};
    mdi_err_clear(err);
    if (mdi_stage_init(st, &x->cfg, &p, err) != MDI_OK)
        fail_msg("mdi_stage_init: %s", err->msg);
    return mdi_shard_load(path, st, NULL, NULL, err);
}

/* Load the whole model (every layer and the extras) from path. */
static mdi_status load_all(const fx *x, const char *path, mdi_err *err)
{
    mdi_stage st;
    mdi_status s = load_halves(x, path, 0, 2 * x->cfg.n_layers, &st, err);
    mdi_stage_free(&st);
    return s;
}

static void expect_load(const fx *x, const char *path, mdi_status want, const char *msg)
{
    mdi_err err;
    mdi_status s = load_all(x, path, &err);
    if (s != want)
        fail_msg("load %s: status %d, expected %d (%s)", path, s, want, err.msg);
    expect_msg(&err, path, msg);
}

static void expect_vocab(const char *path, mdi_status want, const char *msg)
{
    mdi_vocab v;
    mdi_err err;
    memset(&v, 0, sizeof v);
    mdi_err_clear(&err);
    mdi_status s = mdi_shard_load_vocab(path, &v, &err);
    mdi_vocab_free(&v);
    if (s != want)
        fail_msg("vocab %s: status %d, expected %d (%s)", path, s, want, err.msg);
    expect_msg(&err, path, msg);
}

/* ---- fixture --------------------------------------------------------------- */

static int setup(void **state)
{
    fx *x = calloc(1, sizeof *x);
    cv_source src;
    mdi_err err;
    assert_non_null(x);
    snprintf(x->dir, sizeof x->dir, "/tmp/mdi-test-loader-XXXXXX");
    assert_non_null(mkdtemp(x->dir));
    snprintf(x->good, sizeof x->good, "%s/good.h5", x->dir);
    snprintf(x->shards, sizeof x->shards, "%s/two", x->dir);
    if (cv_open_synthetic("tiny", 7, NULL, &src, &err) != MDI_OK)
        fail_msg("synthetic: %s", err.msg);
    x->cfg = src.cfg;
    cv_write_opts one = {.dtype = CV_DTYPE_F32, .n_shards = 1, .quiet = 1};
    static const int32_t split[2] = {4, 4}; /* half-layers: layers 0-1 | 2-3 */
    cv_write_opts two = {.dtype = CV_DTYPE_F16, .n_shards = 2, .split = split, .quiet = 1};
    if (cv_write(&src, x->good, &one, &err) != MDI_OK || cv_write(&src, x->shards, &two, &err))
        fail_msg("cv_write: %s", err.msg);
    cv_source_close(&src);
    assert_int_equal(x->cfg.tied_head, 0); /* the cases below delete /output */
    *state = x;
    return 0;
}

static int teardown(void **state)
{
    fx *x = *state;
    mdi_test_rm_tree(x->dir);
    free(x);
    return 0;
}

/* ---- cases ----------------------------------------------------------------- */

static void test_valid_files(void **state)
{
    fx *x = *state;
    mdi_shard_info in;
    mdi_err err;
    char path[PATH_CAP];
    assert_int_equal(mdi_shard_probe(x->good, &in, &err), MDI_OK);
    assert_true(mdi_config_equal(&in.cfg, &x->cfg));
    assert_int_equal(in.layer_first, 0);
    assert_int_equal(in.layer_last, 4);
    assert_true(in.has_extras);
    assert_int_equal(load_all(x, x->good, &err), MDI_OK);
    expect_vocab(x->good, MDI_OK, "");
    for (int32_t r = 0; r < 2; r++) {
        assert_int_equal(mdi_shard_locate(x->shards, r, path, sizeof path, &in, &err), MDI_OK);
        assert_int_equal(in.shard_index, r);
        assert_int_equal(in.layer_first, 2 * r);
        assert_int_equal(in.has_extras, r == 0);
    }
}

/* What the progress hook of mdi_shard_load saw. */
typedef struct progress_log {
    int calls, monotonic;
    uint64_t last, total;
} progress_log;

static void log_progress(void *ctx, uint64_t done, uint64_t total)
{
    progress_log *p = ctx;
    p->monotonic &= done > p->last && done <= total && (p->calls == 0 || total == p->total);
    p->calls++;
    p->last = done;
    p->total = total;
}

/* Progress is told after every tensor, rising to the stage's own weight
 * bytes: for the whole model and for a stage of half-layers. */
static void test_load_progress(void **state)
{
    fx *x = *state;
    static const int32_t ranges[][2] = {{0, 8}, {1, 4}, {3, 8}};
    for (size_t i = 0; i < sizeof ranges / sizeof ranges[0]; i++) {
        mdi_stage_params p = {.half_first = ranges[i][0],
                              .half_last = ranges[i][1],
                              .has_extras = ranges[i][0] == 0,
                              .n_slots = 1,
                              .max_pos = 4,
                              .max_rows = 1,
                              .max_logit_rows = 1,
                              .n_threads = 1};
        mdi_stage st;
        mdi_err err;
        progress_log log = {0, 1, 0, 0};
        if (mdi_stage_init(&st, &x->cfg, &p, &err) != MDI_OK)
            fail_msg("mdi_stage_init: %s", err.msg);
        assert_int_equal(mdi_shard_load(x->good, &st, log_progress, &log, &err), MDI_OK);
        assert_true(log.monotonic);
        assert_true(log.calls >= 2);
        assert_true(log.last == log.total);
        assert_true(log.total == (uint64_t)mdi_stage_weight_bytes(&st));
        mdi_stage_free(&st);
    }
}

static void test_not_a_model(void **state)
{
    fx *x = *state;
    char path[PATH_CAP], empty[PATH_CAP];
    mdi_shard_info in;
    mdi_err err;
    snprintf(path, sizeof path, "%s/nope.h5", x->dir);
    expect_probe(path, MDI_ERR_IO, "No such file or directory");
    assert_int_equal(mdi_shard_locate(path, 0, empty, sizeof empty, &in, &err), MDI_ERR_IO);
    expect_msg(&err, path, "No such file or directory");
    FILE *nd = fopen(path, "wb"); /* a file where a directory is expected: the cause is told */
    assert_non_null(nd);
    fclose(nd);
    snprintf(path, sizeof path, "%s/nope.h5/x.h5", x->dir);
    expect_probe(path, MDI_ERR_IO, "Not a directory");
    assert_int_equal(mdi_shard_locate(path, 0, empty, sizeof empty, &in, &err), MDI_ERR_IO);
    expect_msg(&err, path, "Not a directory");
    snprintf(path, sizeof path, "%s/nope.h5", x->dir);
    assert_int_equal(remove(path), 0);

    snprintf(path, sizeof path, "%s/junk.h5", x->dir);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fputs("this is not HDF5\n", f);
    fclose(f);
    expect_probe(path, MDI_ERR_FORMAT, "not an HDF5 file");
    expect_load(x, path, MDI_ERR_FORMAT, "not an HDF5 file");
    expect_vocab(path, MDI_ERR_FORMAT, "not an HDF5 file");

    snprintf(path, sizeof path, "%s/empty.h5", x->dir); /* HDF5, but not ours */
    hid_t h = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    assert_true(h >= 0);
    H5Fclose(h);
    expect_probe(path, MDI_ERR_FORMAT, "not an mdi-llm model (no 'format' attribute)");

    expect_probe(x->dir, MDI_ERR_IO, "not a regular file");
    snprintf(empty, sizeof empty, "%s/empty-dir", x->dir);
    assert_int_equal(mkdir(empty, 0755), 0);
    assert_int_equal(mdi_shard_locate(empty, 0, path, sizeof path, &in, &err), MDI_ERR_IO);
    expect_msg(&err, empty, "no shard with index 0 (*.h5) on this host");
    rmdir(empty);
}

/* A model cut short, as by an interrupted copy, is named truncated, with
 * both sizes: cut in its data, inside its superblock, and in a file whose
 * superblock follows a 512-byte user block (the end of file it records then
 * counts the user block). */
static void test_truncated(void **state)
{
    fx *x = *state;
    struct stat sb;
    char want[PATH_CAP + 128];
    fresh(x, "cut.h5");
    assert_int_equal(stat(x->path, &sb), 0);
    long long whole = (long long)sb.st_size, half = whole / 2;
    assert_int_equal(truncate(x->path, half), 0);
    snprintf(want, sizeof want, "truncated: it has %lld bytes, its HDF5 superblock records %lld ",
             half, whole);
    expect_probe(x->path, MDI_ERR_FORMAT, want);
    expect_load(x, x->path, MDI_ERR_FORMAT, want);
    expect_vocab(x->path, MDI_ERR_FORMAT, want);
    assert_int_equal(truncate(x->path, 30), 0);
    expect_probe(x->path, MDI_ERR_FORMAT,
                 "truncated: it ends inside its HDF5 superblock (30 bytes)");

    snprintf(x->path, sizeof x->path, "%s/userblock.h5", x->dir);
    hid_t fcpl = H5Pcreate(H5P_FILE_CREATE);
    assert_true(fcpl >= 0 && H5Pset_userblock(fcpl, 512) >= 0);
    hid_t h = H5Fcreate(x->path, H5F_ACC_TRUNC, fcpl, H5P_DEFAULT);
    assert_true(h >= 0);
    H5Pclose(fcpl);
    H5Fclose(h);
    put_int(x->path, "/", "n_layers", 4);
    expect_probe(x->path, MDI_ERR_FORMAT, "not an mdi-llm model"); /* whole: not cut */
    assert_int_equal(stat(x->path, &sb), 0);
    whole = (long long)sb.st_size;
    assert_int_equal(truncate(x->path, whole - 100), 0);
    snprintf(want, sizeof want, "truncated: it has %lld bytes, its HDF5 superblock records %lld ",
             whole - 100, whole);
    expect_probe(x->path, MDI_ERR_FORMAT, want);
}

static void test_unreadable(void **state)
{
    fx *x = *state;
    if (geteuid() == 0) { /* root reads anything: nothing to test */
        printf("SKIP: unreadable-file case (running as root, chmod 000 does not stop reads)\n");
        return;
    }
    fresh(x, "unreadable.h5");
    assert_int_equal(chmod(x->path, 0), 0);
    expect_probe(x->path, MDI_ERR_IO, "cannot be read");
    chmod(x->path, 0644);
}

static void test_other_format_or_version(void **state)
{
    fx *x = *state;
    put_str(fresh(x, "other.h5"), "format", "gguf-in-hdf5");
    expect_probe(x->path, MDI_ERR_FORMAT, "format is 'gguf-in-hdf5', expected 'mdi-llm'");
    put_int(fresh(x, "v3.h5"), "/", "format_version", 3);
    expect_probe(x->path, MDI_ERR_UNSUPPORTED,
                 "format version 3 is not supported (this build reads up to 2)");
    put_int(fresh(x, "v0.h5"), "/", "format_version", 0);
    expect_probe(x->path, MDI_ERR_UNSUPPORTED, "format version 0 is not supported");
    put_str(fresh(x, "rope.h5"), "rope_layout", "rotate_half");
    expect_probe(x->path, MDI_ERR_UNSUPPORTED, "rope_layout 'rotate_half' is not supported");
}

static void test_attribute_missing(void **state)
{
    fx *x = *state;
    static const char *const names[] = {
        "format_version", "model_id",    "dim",         "hidden_dim",  "n_layers",
        "n_heads",        "n_kv_heads",  "head_dim",    "vocab_size",  "max_seq_len",
        "rope_theta",     "norm_eps",    "tied_head",   "rope_layout", "layer_first",
        "layer_last",     "shard_index", "shard_count", "dtype"};
    char want[128];
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        del_attr(fresh(x, "noattr.h5"), "/", names[i]);
        snprintf(want, sizeof want, "attribute '%s' is missing", names[i]);
        expect_probe(x->path, MDI_ERR_FORMAT, want);
    }
    del_attr(fresh(x, "noformat.h5"), "/", "format");
    expect_probe(x->path, MDI_ERR_FORMAT, "not an mdi-llm model (no 'format' attribute)");
}

static void test_attribute_wrong_type(void **state)
{
    fx *x = *state;
    put_str(fresh(x, "dimstr.h5"), "dim", "sixty-four");
    expect_probe(x->path, MDI_ERR_FORMAT, "attribute 'dim' is not a single integer");
    put_str(fresh(x, "thetastr.h5"), "rope_theta", "big");
    expect_probe(x->path, MDI_ERR_FORMAT, "attribute 'rope_theta' is not a single number");
    int32_t v = 5;
    put_attr(fresh(x, "fmtint.h5"), "/", "format", H5T_STD_I32LE, H5T_NATIVE_INT32, &v);
    expect_probe(x->path, MDI_ERR_FORMAT, "attribute 'format' is not a fixed-length string");
    put_int(fresh(x, "idint.h5"), "/", "model_id", 12);
    expect_probe(x->path, MDI_ERR_FORMAT, "attribute 'model_id' is not a fixed-length string");
    put_str(fresh(x, "idlong.h5"), "model_id", "0123456789abcdef0123");
    expect_probe(x->path, MDI_ERR_FORMAT, "attribute 'model_id' is too long or unreadable");

    /* two values where one is expected */
    hid_t f = open_rw(fresh(x, "dim2.h5"));
    hsize_t two = 2;
    int32_t dims[2] = {64, 64};
    H5Adelete(f, "n_layers");
    hid_t sp = H5Screate_simple(1, &two, NULL);
    hid_t a = H5Acreate2(f, "n_layers", H5T_STD_I32LE, sp, H5P_DEFAULT, H5P_DEFAULT);
    assert_true(a >= 0 && H5Awrite(a, H5T_NATIVE_INT32, dims) >= 0);
    H5Aclose(a);
    H5Sclose(sp);
    H5Fclose(f);
    expect_probe(x->path, MDI_ERR_FORMAT, "attribute 'n_layers' is not a single integer");

    /* a variable-length string */
    hid_t vt = H5Tcopy(H5T_C_S1);
    H5Tset_size(vt, H5T_VARIABLE);
    const char *s = "f32";
    put_attr(fresh(x, "vlen.h5"), "/", "dtype", vt, vt, &s);
    H5Tclose(vt);
    expect_probe(x->path, MDI_ERR_FORMAT, "attribute 'dtype' is not a fixed-length string");

    /* Integer types that HDF5 allows but no writer makes (and a damaged file
     * may declare): 16 bits at offset 8 of 4 bytes; 31 bits. Refused before
     * HDF5 converts them (it crashed converting a 49184-bit 4-byte one). */
    hid_t odd = H5Tcopy(H5T_STD_I32LE);
    assert_true(H5Tset_precision(odd, 16) >= 0 && H5Tset_offset(odd, 8) >= 0);
    int32_t heads = 4 << 8;
    put_attr(fresh(x, "padded.h5"), "/", "n_heads", odd, H5T_NATIVE_INT32, &heads);
    expect_probe(x->path, MDI_ERR_FORMAT,
                 "attribute 'n_heads' has a damaged or unsupported number type");
    assert_true(H5Tset_offset(odd, 0) >= 0 && H5Tset_precision(odd, 31) >= 0);
    put_attr(fresh(x, "narrow.h5"), "/", "n_heads", odd, H5T_NATIVE_INT32, &heads);
    expect_probe(x->path, MDI_ERR_FORMAT,
                 "attribute 'n_heads' has a damaged or unsupported number type");
    H5Tclose(odd);
    /* Whole-byte integers and IEEE floats of other sizes and byte orders are read. */
    int64_t h64 = 4;
    put_attr(fresh(x, "i64be.h5"), "/", "n_heads", H5T_STD_I64BE, H5T_NATIVE_INT64, &h64);
    double theta = 10000.0;
    put_attr(x->path, "/", "rope_theta", H5T_IEEE_F64BE, H5T_NATIVE_DOUBLE, &theta);
    mdi_shard_info in;
    mdi_err err;
    assert_int_equal(mdi_shard_probe(x->path, &in, &err), MDI_OK);
    assert_int_equal(in.cfg.n_heads, 4);
    assert_true(in.cfg.rope_theta == 10000.0f);
}

static void test_attribute_values(void **state)
{
    fx *x = *state;
    put_int(fresh(x, "heads.h5"), "/", "n_heads", 3); /* 2 kv heads do not divide 3 */
    expect_probe(x->path, MDI_ERR_FORMAT, "n_heads = 3 is not a multiple of n_kv_heads = 2");
    put_int(fresh(x, "negdim.h5"), "/", "dim", -64);
    expect_probe(x->path, MDI_ERR_FORMAT, "dim = -64 is outside [1, 65536]");
    put_int(fresh(x, "range1.h5"), "/", "layer_first", 3);
    put_int(x->path, "/", "layer_last", 2);
    expect_probe(x->path, MDI_ERR_FORMAT, "layer range [3, 2) is invalid for 4 layers");
    put_int(fresh(x, "range2.h5"), "/", "layer_last", 5);
    expect_probe(x->path, MDI_ERR_FORMAT, "layer range [0, 5) is invalid for 4 layers");
    put_int(fresh(x, "range3.h5"), "/", "layer_first", -1);
    expect_probe(x->path, MDI_ERR_FORMAT, "layer range [-1, 4) is invalid for 4 layers");
    put_int(fresh(x, "shard.h5"), "/", "shard_index", 1);
    expect_probe(x->path, MDI_ERR_FORMAT, "shard 1 of 1 is invalid");
    put_int(fresh(x, "count.h5"), "/", "shard_count", 0);
    expect_probe(x->path, MDI_ERR_FORMAT, "shard 0 of 0 is invalid");
}

static void test_dataset_missing(void **state)
{
    fx *x = *state;
    del_link(fresh(x, "now3.h5"), "/layers/002/w3");
    expect_load(x, x->path, MDI_ERR_FORMAT, "dataset '/layers/002/w3' is missing");
    del_link(fresh(x, "noemb.h5"), "/token_embedding");
    expect_load(x, x->path, MDI_ERR_FORMAT, "dataset '/token_embedding' is missing");
    del_link(fresh(x, "noout.h5"), "/output");
    expect_load(x, x->path, MDI_ERR_FORMAT, "dataset '/output' is missing");
    del_link(fresh(x, "nonorm.h5"), "/final_norm");
    expect_load(x, x->path, MDI_ERR_FORMAT, "dataset '/final_norm' is missing");
    del_link(fresh(x, "nolayer.h5"), "/layers/001");
    expect_load(x, x->path, MDI_ERR_FORMAT, "group '/layers/001' is missing");
    del_link(fresh(x, "nolayers.h5"), "/layers");
    expect_load(x, x->path, MDI_ERR_FORMAT, "group '/layers' is missing");
}

static void test_shape_contradicts(void **state)
{
    fx *x = *state;
    hsize_t d2[2] = {64, 32}, d1[1] = {64}, d3[3] = {2, 32, 64};
    put_dataset(fresh(x, "wq.h5"), "/layers/001/wq", H5T_IEEE_F32LE, 2, d2);
    expect_load(x, x->path, MDI_ERR_FORMAT,
                "dataset '/layers/001/wq' has shape (64, 32), the attributes imply (64, 64)");
    put_dataset(fresh(x, "wo1d.h5"), "/layers/000/wo", H5T_IEEE_F32LE, 1, d1);
    expect_load(x, x->path, MDI_ERR_FORMAT,
                "dataset '/layers/000/wo' has shape (64), the attributes imply (64, 64)");
    put_dataset(fresh(x, "wk3d.h5"), "/layers/003/wk", H5T_IEEE_F32LE, 3, d3);
    expect_load(x, x->path, MDI_ERR_FORMAT, "dataset '/layers/003/wk' is unreadable or not 1-/2-D");
    put_dataset(fresh(x, "wvint.h5"), "/layers/003/wv", H5T_STD_I32LE, 2, d2);
    expect_load(x, x->path, MDI_ERR_FORMAT, "dataset '/layers/003/wv' has shape (64, 32)");
    hsize_t dv[2] = {32, 64};
    put_dataset(fresh(x, "wvint2.h5"), "/layers/003/wv", H5T_STD_I32LE, 2, dv);
    expect_load(x, x->path, MDI_ERR_FORMAT, "dataset '/layers/003/wv' is not floating point");
    /* The attributes lie instead: a wider hidden_dim than the tensors have. */
    fx wide = *x;
    wide.cfg.hidden_dim = 256;
    put_int(fresh(x, "hidden.h5"), "/", "hidden_dim", 256);
    expect_load(&wide, x->path, MDI_ERR_FORMAT,
                "dataset '/layers/000/w1' has shape (128, 64), the attributes imply (256, 64)");
    /* The file describes another geometry than the stage the rank built. */
    put_int(fresh(x, "ctx.h5"), "/", "max_seq_len", 256);
    expect_load(x, x->path, MDI_ERR_MISMATCH, "geometry differs from the model's");
}

static void test_non_finite(void **state)
{
    fx *x = *state;
    poke(fresh(x, "nan.h5"), "/layers/003/w2", 5, NAN);
    expect_load(x, x->path, MDI_ERR_FORMAT,
                "dataset '/layers/003/w2' holds a non-finite value (nan) at element 5");
    poke(fresh(x, "inf.h5"), "/final_norm", 63, INFINITY);
    expect_load(x, x->path, MDI_ERR_FORMAT,
                "dataset '/final_norm' holds a non-finite value (inf) at element 63");
    poke(fresh(x, "ninf.h5"), "/token_embedding", 512 * 64 - 1, -INFINITY);
    expect_load(x, x->path, MDI_ERR_FORMAT,
                "dataset '/token_embedding' holds a non-finite value (-inf) at element 32767");
    poke(fresh(x, "out.h5"), "/output", 0, NAN);
    expect_load(x, x->path, MDI_ERR_FORMAT, "dataset '/output' holds a non-finite value");
}

static void test_shards(void **state)
{
    fx *x = *state;
    char path[PATH_CAP], copy[512];
    mdi_shard_info in;
    mdi_err err;
    assert_int_equal(mdi_shard_locate(x->shards, 2, path, sizeof path, &in, &err),
                     MDI_ERR_MISMATCH);
    expect_msg(&err, x->shards, "holds a 2-way split but this is rank 2: run with -np 2");
    /* rank 0's shard holds layers [0, 2) only: a stage of [0, 4) cannot load from it */
    assert_int_equal(mdi_shard_locate(x->shards, 0, path, sizeof path, &in, &err), MDI_OK);
    expect_load(x, path, MDI_ERR_MISMATCH, "holds layers 0-1 but this rank needs layers 0-3");
    /* a rank whose shard is missing names the file it could not read */
    snprintf(copy, sizeof copy, "%s/bad-shards", x->dir);
    assert_int_equal(mkdir(copy, 0755), 0);
    snprintf(path, sizeof path, "%s/model-00-of-02.L000-001.h5", copy);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fputs("junk", f);
    fclose(f);
    assert_int_equal(mdi_shard_locate(copy, 1, x->path, sizeof x->path, &in, &err), MDI_ERR_FORMAT);
    expect_msg(&err, path, "no readable shard with index 1; ");
    expect_msg(&err, path, "not an HDF5 file");
    mdi_test_rm_tree(copy);
}

/* The attributes, not the names or the directory order, pick a rank's shard:
 * unreadable or foreign *.h5 files beside the shards are passed over when the
 * rank's own shard is there, and two files with one index are refused, named,
 * whichever comes first. */
static void test_shard_directory_contents(void **state)
{
    fx *x = *state;
    static const char *const strays[] = {"aa-whole.h5", "zz-whole.h5"};
    char dir[PATH_CAP], path[PATH_CAP], from[PATH_CAP + 64], to[PATH_CAP + 64];
    mdi_shard_info in;
    mdi_err err;
    snprintf(dir, sizeof dir, "%s/mixed-dir", x->dir);
    for (int k = 0; k < 2; k++) {
        assert_int_equal(mkdir(dir, 0755), 0);
        static const char *const names[] = {"model-00-of-02.L000-001.h5",
                                            "model-01-of-02.L002-003.h5"};
        for (int i = 0; i < 2; i++) {
            snprintf(from, sizeof from, "%s/%s", x->shards, names[i]);
            snprintf(to, sizeof to, "%s/%s", dir, names[i]);
            copy_file(from, to);
        }
        snprintf(to, sizeof to, "%s/junk.h5", dir);
        FILE *f = fopen(to, "wb");
        assert_non_null(f);
        fputs("not HDF5", f);
        fclose(f);
        snprintf(to, sizeof to, "%s/notes.txt", dir);
        copy_file(x->good, to); /* not *.h5: never opened */
        for (int32_t r = 0; r < 2; r++) {
            assert_int_equal(mdi_shard_locate(dir, r, path, sizeof path, &in, &err), MDI_OK);
            assert_int_equal(in.shard_index, r);
            assert_non_null(strstr(path, names[r]));
        }
        /* a whole-model file left beside the shards is shard 0 of 1 */
        snprintf(to, sizeof to, "%s/%s", dir, strays[k]);
        copy_file(x->good, to);
        assert_int_equal(mdi_shard_locate(dir, 0, path, sizeof path, &in, &err), MDI_ERR_MISMATCH);
        expect_msg(&err, dir, "both claim shard index 0");
        expect_msg(&err, strays[k], names[0]);
        assert_int_equal(mdi_shard_locate(dir, 1, path, sizeof path, &in, &err), MDI_OK);
        assert_non_null(strstr(path, names[1]));
        mdi_test_rm_tree(dir);
    }
}

/* Version-2 shards cut inside a layer: [0, 3) ends with layer 1's attention,
 * [3, 8) starts with its MLP. Each loads the halves it holds, with the same
 * values as the whole-model file; a stage wanting more is refused; the half
 * attributes must agree with the layer range; a held half's dataset must be
 * there, an unheld one's need not. */
static void test_half_layer_shards(void **state)
{
    fx *x = *state;
    char dir[PATH_CAP], path[PATH_CAP];
    mdi_shard_info in;
    mdi_err err;
    cv_source src;
    snprintf(dir, sizeof dir, "%s/halves", x->dir);
    if (cv_open_synthetic("tiny", 7, NULL, &src, &err) != MDI_OK)
        fail_msg("synthetic: %s", err.msg);
    static const int32_t split[2] = {3, 5};
    cv_write_opts two = {.dtype = CV_DTYPE_F32, .n_shards = 2, .split = split, .quiet = 1};
    if (cv_write(&src, dir, &two, &err) != MDI_OK)
        fail_msg("cv_write: %s", err.msg);
    cv_source_close(&src);

    mdi_stage whole, st;
    assert_int_equal(load_halves(x, x->good, 0, 8, &whole, &err), MDI_OK);
    const int32_t cut[3] = {0, 3, 8};
    for (int32_t r = 0; r < 2; r++) {
        assert_int_equal(mdi_shard_locate(dir, r, path, sizeof path, &in, &err), MDI_OK);
        assert_int_equal(in.format_version, 2);
        assert_int_equal(in.half_first, cut[r]);
        assert_int_equal(in.half_last, cut[r + 1]);
        assert_int_equal(in.layer_first, cut[r] / 2);
        assert_int_equal(in.layer_last, (cut[r + 1] + 1) / 2);
        assert_int_equal(in.has_extras, r == 0);
        /* from the shard and from the whole-model file: the same values */
        for (int from = 0; from < 2; from++) {
            if (load_halves(x, from ? x->good : path, cut[r], cut[r + 1], &st, &err) != MDI_OK)
                fail_msg("load halves [%d, %d): %s", cut[r], cut[r + 1], err.msg);
            for (int32_t l = 0; l < mdi_stage_n_layers(&st); l++)
                for (int k = 0; k < MDI_T_COUNT; k++) {
                    size_t rows, cols;
                    float *t = mdi_stage_tensor(&st, (mdi_tensor_kind)k, l);
                    if (mdi_tensor_half((mdi_tensor_kind)k) < 0 || !t)
                        continue;
                    mdi_tensor_shape(&x->cfg, (mdi_tensor_kind)k, &rows, &cols);
                    float *w = mdi_stage_tensor(&whole, (mdi_tensor_kind)k,
                                                mdi_stage_first_layer(&st) + l);
                    assert_memory_equal(t, w, rows * cols * sizeof(float));
                }
            mdi_stage_free(&st);
        }
    }
    mdi_stage_free(&whole);

    /* shard 1 holds [3, 8): a stage of [2, 8) cannot load from it */
    assert_int_equal(mdi_shard_locate(dir, 1, path, sizeof path, &in, &err), MDI_OK);
    assert_int_equal(load_halves(x, path, 2, 8, &st, &err), MDI_ERR_MISMATCH);
    mdi_stage_free(&st);
    expect_msg(&err, path, "holds layer 1's MLP and layers 2-3 but this rank needs layers 1-3");
    /* shard 1 has no /layers/001/wq (it loaded above), but a held half's
     * dataset must be there */
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    assert_true(f >= 0);
    assert_int_equal(H5Lexists(f, "/layers/001/wq", H5P_DEFAULT), 0);
    assert_true(H5Lexists(f, "/layers/001/w2", H5P_DEFAULT) > 0);
    H5Fclose(f);
    snprintf(x->path, sizeof x->path, "%s/half-case.h5", x->dir);
    copy_file(path, x->path);
    del_link(x->path, "/layers/001/w2");
    assert_int_equal(load_halves(x, x->path, 3, 8, &st, &err), MDI_ERR_FORMAT);
    mdi_stage_free(&st);
    expect_msg(&err, x->path, "dataset '/layers/001/w2' is missing");
    /* half attributes that disagree with the layer range, or are missing */
    copy_file(path, x->path);
    put_int(x->path, "/", "half_first", 5);
    expect_probe(x->path, MDI_ERR_FORMAT,
                 "half-layer range [5, 8) disagrees with layer range [1, 4)");
    copy_file(path, x->path);
    put_int(x->path, "/", "half_last", 9);
    expect_probe(x->path, MDI_ERR_FORMAT, "disagrees with layer range [1, 4)");
    copy_file(path, x->path);
    put_int(x->path, "/", "half_first", -1);
    put_int(x->path, "/", "layer_first", 0);
    expect_probe(x->path, MDI_ERR_FORMAT, "half-layer range [-1, 8)");
    copy_file(path, x->path);
    del_attr(x->path, "/", "half_last");
    expect_probe(x->path, MDI_ERR_FORMAT, "attribute 'half_last' is missing");
    /* version 1 means whole layers, whatever half attributes it carries */
    copy_file(x->good, x->path);
    put_int(x->path, "/", "half_last", 7);
    assert_int_equal(mdi_shard_probe(x->path, &in, &err), MDI_OK);
    assert_int_equal(in.half_last, 8);
}

static void test_tokenizer(void **state)
{
    fx *x = *state;
    hsize_t d[1] = {100}, d2[2] = {2, 257};
    del_link(fresh(x, "notok.h5"), "/tokenizer");
    expect_vocab(x->path, MDI_ERR_FORMAT, "group '/tokenizer' is missing");
    del_link(fresh(x, "noscores.h5"), "/tokenizer/scores");
    expect_vocab(x->path, MDI_ERR_FORMAT, "dataset '/tokenizer/scores' is missing");
    put_dataset(fresh(x, "shortscores.h5"), "/tokenizer/scores", H5T_IEEE_F32LE, 1, d);
    expect_vocab(x->path, MDI_ERR_FORMAT, "tokenizer arrays disagree in length");
    put_dataset(fresh(x, "offsets2d.h5"), "/tokenizer/offsets", H5T_STD_U64LE, 2, d2);
    expect_vocab(x->path, MDI_ERR_FORMAT, "'/tokenizer/offsets' is not 1-D");
    del_attr(fresh(x, "nobos.h5"), "/tokenizer", "bos_id");
    expect_vocab(x->path, MDI_ERR_FORMAT, "attribute 'bos_id' is missing");
    put_int(fresh(x, "badeos.h5"), "/tokenizer", "eos_id", 9999);
    expect_vocab(x->path, MDI_ERR_FORMAT, "tokenizer: vocab: eos_id 9999 out of range");
    put_int(fresh(x, "prefix.h5"), "/tokenizer", "add_dummy_prefix", 7);
    expect_vocab(x->path, MDI_ERR_FORMAT, "add_dummy_prefix is 7");
    /* more pieces than rows of the embedding: their ids would index past it */
    put_int(fresh(x, "vocab.h5"), "/", "vocab_size", 300);
    expect_vocab(x->path, MDI_ERR_FORMAT, "tokenizer has 512 pieces, more than vocab_size 300");
    /* a shape that lies (no data behind it) is refused before any allocation */
    hsize_t huge[1] = {(hsize_t)1 << 40};
    put_dataset(fresh(x, "huge.h5"), "/tokenizer/bytes", H5T_STD_U8LE, 1, huge);
    expect_vocab(x->path, MDI_ERR_FORMAT, "'/tokenizer/bytes' has 1099511627776 elements");
}

/* A vocabulary of byte pieces only (no U+2581 piece): every space of a prompt
 * falls back to 3 byte pieces, so the ids outnumber the prompt's bytes. */
static void test_tokenize_byte_fallback(void **state)
{
    fx *x = *state;
    cv_source src;
    mdi_err err;
    char path[PATH_CAP], line[256] = "";
    if (cv_open_synthetic("tiny", 7, NULL, &src, &err) != MDI_OK)
        fail_msg("synthetic: %s", err.msg);
    mdi_vocab_free(&src.vocab);
    assert_int_equal(mdi_vocab_alloc(&src.vocab, 259, 3 + 256 * 6, &err), MDI_OK);
    for (int32_t i = 0, off = 0; i < 259; i++) {
        char piece[8];
        int len = i < 3 ? snprintf(piece, sizeof piece, "%c", "ube"[i])
                        : snprintf(piece, sizeof piece, "<0x%02X>", (unsigned)(i - 3));
        memcpy(src.vocab.bytes + off, piece, (size_t)len);
        src.vocab.offsets[i + 1] = (uint64_t)(off += len);
        src.vocab.types[i] = i == 0  ? MDI_PIECE_UNKNOWN
                             : i < 3 ? MDI_PIECE_CONTROL
                                     : MDI_PIECE_BYTE;
    }
    src.vocab.unk_id = 0, src.vocab.bos_id = 1, src.vocab.eos_id = 2;
    src.vocab.add_dummy_prefix = 0;
    snprintf(path, sizeof path, "%s/bytes.h5", x->dir);
    cv_write_opts one = {.dtype = CV_DTYPE_F32, .n_shards = 1, .quiet = 1};
    if (cv_write(&src, path, &one, &err) != MDI_OK)
        fail_msg("cv_write: %s", err.msg);
    cv_source_close(&src);
    FILE *f = tmpfile();
    assert_non_null(f);
    if (mdi_engine_tokenize(path, "a b c d", f, &err) != MDI_OK) /* 7 bytes, 14 ids */
        fail_msg("tokenize: %s", err.msg);
    rewind(f);
    assert_non_null(fgets(line, sizeof line, f));
    fclose(f);
    assert_string_equal(line, "1 100 229 153 132 101 229 153 132 102 229 153 132 103\n");
}

int main(void)
{
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_files),
        cmocka_unit_test(test_load_progress),
        cmocka_unit_test(test_not_a_model),
        cmocka_unit_test(test_truncated),
        cmocka_unit_test(test_unreadable),
        cmocka_unit_test(test_other_format_or_version),
        cmocka_unit_test(test_attribute_missing),
        cmocka_unit_test(test_attribute_wrong_type),
        cmocka_unit_test(test_attribute_values),
        cmocka_unit_test(test_dataset_missing),
        cmocka_unit_test(test_shape_contradicts),
        cmocka_unit_test(test_non_finite),
        cmocka_unit_test(test_shards),
        cmocka_unit_test(test_shard_directory_contents),
        cmocka_unit_test(test_half_layer_shards),
        cmocka_unit_test(test_tokenizer),
        cmocka_unit_test(test_tokenize_byte_fallback),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}

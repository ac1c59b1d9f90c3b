/* Converter: the HDF5 writer (one file, shards at whole and half layers,
 * dtypes, balance, failures leave nothing behind) and --inspect, checked by
 * reading the output back with HDF5 directly. */
#include "convert_util.h"

#include "inspect.h"
#include "mdi/plan.h"
#include "mdi/shard_loader.h"
#include "mdi/stage.h"

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

/* Number of links in group name of f. */
static hsize_t h5_members(hid_t f, const char *name)
{
    H5G_info_t info;
    if (H5Gget_info_by_name(f, name, &info, H5P_DEFAULT) < 0)
        fail_msg("group %s missing", name);
    return info.nlinks;
}

/* One written file holds exactly half-layers [first, last) of src (and, in
 * each layer group, only the datasets of the halves held) and says so:
 * version 1 for whole layers, 2 when an end splits a layer. */
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
    assert_int_equal(h5_int(f, "format_version"), first % 2 || last % 2 ? 2 : 1);
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
    assert_int_equal(h5_int(f, "half_first"), first);
    assert_int_equal(h5_int(f, "half_last"), last);
    assert_int_equal(h5_int(f, "layer_first"), first / 2);
    assert_int_equal(h5_int(f, "layer_last"), (last + 1) / 2);
    assert_int_equal(h5_int(f, "shard_index"), index);
    assert_int_equal(h5_int(f, "shard_count"), count);
    assert_int_equal(h5_members(f, "layers"), (hsize_t)((last + 1) / 2 - first / 2));
    for (int32_t l = first / 2; l < (last + 1) / 2; l++) {
        char group[32], name[64];
        hsize_t held = 0;
        snprintf(group, sizeof group, "/layers/%03d", (int)l);
        for (int k = 0; k < MDI_T_COUNT; k++) {
            int half = mdi_tensor_half((mdi_tensor_kind)k);
            snprintf(name, sizeof name, "%s/%s", group, mdi_tensor_name((mdi_tensor_kind)k));
            if (half >= 0 && 2 * l + half >= first && 2 * l + half < last) {
                check_tensor(f, src, (mdi_tensor_kind)k, l, dt);
                held++;
            } else if (h5_exists(f, name)) {
                fail_msg("%s: %s is outside half-layers [%d, %d)", path, name, first, last);
            }
        }
        assert_int_equal(h5_members(f, group), held);
    }
    for (int k = 0; k < MDI_T_COUNT; k++) {
        mdi_tensor_kind kind = (mdi_tensor_kind)k;
        if (mdi_tensor_scope_of(kind) == MDI_SCOPE_LAYER) {
            continue;
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

/* Name of shard i of n under half-layer bounds (docs/FORMAT.md), into buf. */
static void shard_name(char *buf, size_t cap, const char *dir, int32_t i, int32_t n,
                       const int32_t *bounds)
{
    int32_t first = bounds[i], last = bounds[i + 1];
    snprintf(buf, cap, "%s/model-%02d-of-%02d.L%03d%s-%03d%s.h5", dir, (int)i, (int)n,
             (int)(first / 2), first % 2 ? "m" : "", (int)((last - 1) / 2), last % 2 ? "a" : "");
}

/* Write src as o->n_shards shards into dir/name, then check names and every
 * file against the plan the engine makes (the split, or mdi_plan_balanced);
 * that plan goes to bounds (n + 1 entries). */
static void check_sharded(cv_source *src, const char *dir, const char *name, const cv_write_opts *o,
                          int32_t *bounds)
{
    char out[512], path[640];
    int tmp;
    int32_t n = o->n_shards;
    mdi_err err;
    snprintf(out, sizeof out, "%s/%s", dir, name);
    if (cv_write(src, out, o, &err))
        fail_msg("cv_write %s: %s", out, err.msg);
    if (o->split)
        assert_int_equal(mdi_plan_from_counts(&src->cfg, o->split, n, bounds, &err), MDI_OK);
    else
        assert_int_equal(mdi_plan_balanced(&src->cfg, n, o->balance, NULL, bounds, &err), MDI_OK);
    assert_int_equal(count_entries(out, &tmp), n);
    assert_int_equal(tmp, 0);
    for (int32_t i = 0; i < n; i++) {
        shard_name(path, sizeof path, out, i, n, bounds);
        check_file(path, src, bounds[i], bounds[i + 1], i, n, o->dtype);
    }
}

static void test_write_stories(void **state)
{
    (void)state;
    char dir[256], out[512];
    int32_t bounds[8];
    int tmp;
    cv_source src;
    mdi_err err;
    open_stories(&src);
    make_tmpdir(dir, sizeof dir);
    snprintf(out, sizeof out, "%s/one.h5", dir);
    if (write_opts(&src, out, CV_DTYPE_F32, 0, NULL, &err))
        fail_msg("cv_write: %s", err.msg);
    check_file(out, &src, 0, 10, 0, 1, CV_DTYPE_F32);
    cv_write_opts o = {.dtype = CV_DTYPE_F32, .n_shards = 2, .quiet = 1};
    check_sharded(&src, dir, "two", &o, bounds);
    o.n_shards = 5;
    check_sharded(&src, dir, "five", &o, bounds);
    const int32_t split[] = {2, 2, 6};
    o = (cv_write_opts){.dtype = CV_DTYPE_F16, .n_shards = 3, .split = split, .quiet = 1};
    check_sharded(&src, dir, "split-f16", &o, bounds);
    snprintf(out, sizeof out, "%s/bf16.h5", dir);
    assert_int_equal(write_opts(&src, out, CV_DTYPE_BF16, 1, NULL, &err), MDI_OK);
    check_file(out, &src, 0, 10, 0, 1, CV_DTYPE_BF16);
    assert_int_equal(count_entries(dir, &tmp), 5);
    assert_int_equal(tmp, 0);
    cv_source_close(&src);
    mdi_test_rm_tree(dir);
}

/* Dataset name of f read in its own file type: the stored bytes; malloc'd. */
static unsigned char *h5_raw(hid_t f, const char *name, size_t *n)
{
    hid_t d = H5Dopen2(f, name, H5P_DEFAULT);
    if (d < 0)
        fail_msg("dataset %s missing", name);
    hid_t t = H5Dget_type(d), sp = H5Dget_space(d);
    *n = H5Tget_size(t) * (size_t)H5Sget_simple_extent_npoints(sp);
    unsigned char *b = malloc(*n ? *n : 1);
    assert_non_null(b);
    assert_true(H5Dread(d, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, b) >= 0);
    H5Sclose(sp);
    H5Tclose(t);
    H5Dclose(d);
    return b;
}

/* Every tensor of shard, byte for byte as in the whole-model file. */
static void check_same_bytes(const char *shard, const char *whole, const mdi_config *c)
{
    char name[64];
    hid_t a = H5Fopen(shard, H5F_ACC_RDONLY, H5P_DEFAULT),
          b = H5Fopen(whole, H5F_ACC_RDONLY, H5P_DEFAULT);
    assert_true(a >= 0 && b >= 0);
    for (int32_t l = -1; l < c->n_layers; l++) {
        for (int k = 0; k < MDI_T_COUNT; k++) {
            if ((l < 0) != (mdi_tensor_half((mdi_tensor_kind)k) < 0))
                continue;
            if (l < 0)
                snprintf(name, sizeof name, "/%s", mdi_tensor_name((mdi_tensor_kind)k));
            else
                snprintf(name, sizeof name, "/layers/%03d/%s", (int)l,
                         mdi_tensor_name((mdi_tensor_kind)k));
            if (!h5_exists(a, name))
                continue;
            size_t na, nb;
            unsigned char *x = h5_raw(a, name, &na), *y = h5_raw(b, name, &nb);
            assert_int_equal(na, nb);
            if (memcmp(x, y, na) != 0)
                fail_msg("%s: %s differs from the whole-model file", shard, name);
            free(x);
            free(y);
        }
    }
    H5Fclose(b);
    H5Fclose(a);
}

/* --split in half-layers: file names, attributes, exactly the held halves'
 * datasets, every tensor as in the whole-model conversion, --inspect passes. */
static void test_write_halves(void **state)
{
    (void)state;
    static const struct {
        const char *split;
        int32_t n, bounds[4];
        const char *names[3];
    } cases[] = {
        {"2.5,2.5", 2, {0, 5, 10}, {"model-00-of-02.L000-002a.h5", "model-01-of-02.L002m-004.h5"}},
        {"0.5,4.5", 2, {0, 1, 10}, {"model-00-of-02.L000-000a.h5", "model-01-of-02.L000m-004.h5"}},
        {"1,3.5,0.5",
         3,
         {0, 2, 9, 10},
         {"model-00-of-03.L000-000.h5", "model-01-of-03.L001-004a.h5",
          "model-02-of-03.L004m-004.h5"}},
    };
    char dir[256], whole[512], name[32], out[512], path[640];
    int32_t counts[MDI_MAX_HALVES], n, bounds[4];
    cv_source src;
    mdi_err err;
    FILE *null = fopen("/dev/null", "w");
    assert_non_null(null);
    open_stories(&src);
    make_tmpdir(dir, sizeof dir);
    snprintf(whole, sizeof whole, "%s/whole.h5", dir);
    assert_int_equal(write_opts(&src, whole, CV_DTYPE_F32, 1, NULL, &err), MDI_OK);
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        assert_int_equal(mdi_plan_parse_split(cases[c].split, counts, MDI_MAX_HALVES, &n, &err),
                         MDI_OK);
        assert_int_equal(n, cases[c].n);
        snprintf(name, sizeof name, "split-%zu", c);
        snprintf(out, sizeof out, "%s/%s", dir, name);
        cv_write_opts o = {.dtype = CV_DTYPE_F32, .n_shards = n, .split = counts, .quiet = 1};
        check_sharded(&src, dir, name, &o, bounds); /* attributes and datasets per group */
        assert_memory_equal(bounds, cases[c].bounds, ((size_t)n + 1) * sizeof *bounds);
        for (int32_t i = 0; i < n; i++) {
            snprintf(path, sizeof path, "%s/%s", out, cases[c].names[i]);
            if (access(path, F_OK) != 0)
                fail_msg("%s was not written", path);
            check_same_bytes(path, whole, &src.cfg);
        }
        if (cv_inspect(out, null, &err) != MDI_OK)
            fail_msg("--inspect %s: %s", out, err.msg);
    }
    fclose(null);
    cv_source_close(&src);
    mdi_test_rm_tree(dir);
}

/* --shards N without --split: the plan is mdi_plan_balanced's for the balance
 * asked (zeroed options: MDI_BALANCE_DEFAULT), and time differs from memory
 * on a model with an untied head. */
static void test_write_balance(void **state)
{
    (void)state;
    char dir[256], name[32], bad_out[300];
    int32_t mem[8], tim[8];
    int differ = 0;
    cv_source src;
    mdi_err err;
    if (cv_open_synthetic("tiny", 1, NULL, &src, &err) != MDI_OK) /* 4 layers, untied */
        fail_msg("synthetic: %s", err.msg);
    make_tmpdir(dir, sizeof dir);
    for (int32_t n = 2; n <= 4; n++) {
        cv_write_opts o = {
            .dtype = CV_DTYPE_F32, .n_shards = n, .quiet = 1, .balance = MDI_BALANCE_MEMORY};
        snprintf(name, sizeof name, "memory-%d", (int)n);
        check_sharded(&src, dir, name, &o, mem);
        o.balance = MDI_BALANCE_TIME;
        snprintf(name, sizeof name, "time-%d", (int)n);
        check_sharded(&src, dir, name, &o, tim);
        differ += memcmp(mem, tim, ((size_t)n + 1) * sizeof *mem) != 0;
    }
    assert_true(differ > 0);
    cv_write_opts o = {.dtype = CV_DTYPE_F32, .n_shards = 2, .quiet = 1};
    check_sharded(&src, dir, "default", &o, mem);
    assert_int_equal(mdi_plan_balanced(&src.cfg, 2, MDI_BALANCE_DEFAULT, NULL, tim, &err), MDI_OK);
    assert_memory_equal(mem, tim, 3 * sizeof *mem);
    cv_write_opts bad = {.dtype = CV_DTYPE_F32, .n_shards = 2, .quiet = 1, .balance = 7};
    snprintf(bad_out, sizeof bad_out, "%s/bad", dir);
    assert_int_equal(cv_write(&src, bad_out, &bad, &err), MDI_ERR_ARG);
    assert_non_null(strstr(err.msg, "unknown balance 7"));
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
    const int32_t short_split[] = {3, 4}; /* 3.5 of 4 layers */
    assert_int_not_equal(write_opts(&src, out, CV_DTYPE_F32, 2, short_split, &err), MDI_OK);
    assert_non_null(strstr(err.msg, "split covers 3.5 layers but the model has 4"));
    const int32_t empty[] = {4, 0, 4};
    assert_int_not_equal(write_opts(&src, out, CV_DTYPE_F32, 3, empty, &err), MDI_OK);
    assert_non_null(strstr(err.msg, "at least half a layer"));
    assert_int_not_equal(write_opts(&src, out, CV_DTYPE_F32, 9, NULL, &err), MDI_OK);
    assert_non_null(strstr(err.msg, "--shards 9 but "));
    assert_non_null(strstr(err.msg, " has only 4 layers (8 half-layers)"));
    const int32_t nine[] = {1, 1, 1, 1, 1, 1, 1, 1, 1}; /* 9 entries of half a layer */
    assert_int_not_equal(write_opts(&src, out, CV_DTYPE_F32, 9, nine, &err), MDI_OK);
    assert_non_null(strstr(err.msg, "--split has 9 entries but "));
    assert_int_equal(count_entries(dir, &tmp), 0);

    /* a tokenizer that mdi-llm could not build (a piece twice) is refused
     * before anything is written */
    assert_int_equal(mdi_vocab_alloc(&src.vocab, 3, 3, &err), MDI_OK);
    memcpy(src.vocab.bytes, "aba", 3);
    for (int32_t i = 0; i < 3; i++) {
        src.vocab.offsets[i + 1] = (uint64_t)i + 1;
        src.vocab.types[i] = MDI_PIECE_NORMAL;
    }
    snprintf(out, sizeof out, "%s/dup.h5", dir);
    assert_int_not_equal(write_opts(&src, out, CV_DTYPE_F32, 1, NULL, &err), MDI_OK);
    assert_non_null(strstr(err.msg, "piece 2 duplicates piece 0"));
    assert_int_equal(count_entries(dir, &tmp), 0);
    mdi_vocab_free(&src.vocab);

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
    check_file(out, &src, 0, 8, 0, 1, CV_DTYPE_F16); /* /output present, no /tokenizer */
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
    src.path = "in/fake.bin";
    make_tmpdir(dir, sizeof dir);
    snprintf(out, sizeof out, "%s/bad", dir);
    for (int32_t n = 1; n <= 3; n++) {
        assert_int_equal(write_opts(&src, out, CV_DTYPE_F32, n, NULL, &err), MDI_ERR_FORMAT);
        assert_non_null(strstr(err.msg, "in/fake.bin: tensor w2 of layer 3"));
        assert_int_equal(count_entries(dir, &tmp), 0);
    }
    impl = (fake_impl){MDI_T_EMBED, 0, INFINITY};
    assert_int_equal(write_opts(&src, out, CV_DTYPE_BF16, 2, NULL, &err), MDI_ERR_FORMAT);
    assert_non_null(strstr(err.msg, "in/fake.bin: tensor token_embedding"));
    assert_int_equal(count_entries(dir, &tmp), 0);
    cv_source_close(&src);
    mdi_test_rm_tree(dir);
}

/* Overwrite int attribute name of f. */
static void h5_set_int(hid_t f, const char *name, int32_t v)
{
    hid_t a = H5Aopen(f, name, H5P_DEFAULT);
    if (a < 0)
        fail_msg("attribute %s missing", name);
    assert_true(H5Awrite(a, H5T_NATIVE_INT32, &v) >= 0);
    H5Aclose(a);
}

/* Copy file from to dir/name (dir created if needed); the copy's path into buf. */
static const char *copy_file(const char *from, const char *dir, const char *name, char *buf,
                             size_t cap)
{
    size_t n;
    mkdir(dir, 0755);
    snprintf(buf, cap, "%s/%s", dir, name);
    unsigned char *b = slurp(from, &n);
    spit(buf, b, n);
    free(b);
    return buf;
}

/* Copy from to dir/name and open the copy read-write. */
static hid_t copy_open(const char *from, const char *dir, const char *name)
{
    char path[1024];
    hid_t f = H5Fopen(copy_file(from, dir, name, path, sizeof path), H5F_ACC_RDWR, H5P_DEFAULT);
    assert_true(f >= 0);
    return f;
}

/* --inspect path fails with a message holding needle. */
static void expect_inspect(const char *path, const char *needle)
{
    mdi_err err;
    FILE *null = fopen("/dev/null", "w");
    assert_non_null(null);
    if (cv_inspect(path, null, &err) == MDI_OK)
        fail_msg("--inspect %s passed, expected '%s'", path, needle);
    fclose(null);
    if (!strstr(err.msg, needle))
        fail_msg("--inspect %s: '%s' lacks '%s'", path, err.msg, needle);
}

/* Write src split into n half-layer counts under dir/name; shard i's path into paths[i]. */
static void write_split(cv_source *src, const char *dir, const char *name, const int32_t *counts,
                        int32_t n, char (*paths)[640])
{
    char out[512];
    int32_t bounds[8];
    mdi_err err;
    snprintf(out, sizeof out, "%s/%s", dir, name);
    if (write_opts(src, out, CV_DTYPE_F32, n, counts, &err))
        fail_msg("cv_write %s: %s", out, err.msg);
    assert_int_equal(mdi_plan_from_counts(&src->cfg, counts, n, bounds, &err), MDI_OK);
    for (int32_t i = 0; i < n; i++)
        shard_name(paths[i], sizeof paths[i], out, i, n, bounds);
}

/* Version 2 shards: a pair passes and is described in half-layers; gaps,
 * overlaps, a short end, half attributes that disagree, a held half's
 * dataset missing or a dataset of a half not held are each reported. */
static void test_inspect_halves(void **state)
{
    (void)state;
    char dir[256], sub[300], ps[2][640], qs[2][640], rs[2][640], ss[3][640], path[1024];
    const int32_t p[] = {3, 5}, q[] = {4, 4}, r[] = {2, 6}, s[] = {3, 4, 1};
    const char *p0 = ps[0], *p1 = ps[1], *q0 = qs[0], *q1 = qs[1], *r1 = rs[1], *s0 = ss[0],
               *s1 = ss[1];
    cv_source src;
    fake_impl impl = {.bad_kind = MDI_T_COUNT};
    mdi_err err;
    make_fake(&src, &impl, 0); /* 4 layers, untied */
    make_tmpdir(dir, sizeof dir);
    write_split(&src, dir, "p", p, 2, ps); /* [0, 3) and [3, 8) */
    assert_non_null(strstr(p0, "/model-00-of-02.L000-001a.h5"));
    assert_non_null(strstr(p1, "/model-01-of-02.L001m-003.h5"));
    char *text = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&text, &len);
    assert_non_null(mem);
    snprintf(sub, sizeof sub, "%s/p", dir);
    if (cv_inspect(sub, mem, &err) != MDI_OK)
        fail_msg("--inspect %s: %s", sub, err.msg);
    fclose(mem);
    const char *want[] = {
        "format       mdi-llm, version 2",
        "layers       half-layers [0, 3): layer 0 and layer 1's attention "
        "(1.5 of 4)",
        "layers       half-layers [3, 8): layer 1's MLP and layers 2-3 (2.5 of 4)",
        "tokenizer    none", "2 shards, layers [0, 4), model_id"};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        if (!strstr(text, want[i]))
            fail_msg("--inspect output lacks '%s':\n%s", want[i], text);
    free(text);

    write_split(&src, dir, "q", q, 2, qs); /* [0, 4) and [4, 8): version 1 */
    write_split(&src, dir, "r", r, 2, rs); /* [0, 2) and [2, 8) */
    write_split(&src, dir, "s", s, 3, ss); /* [0, 3), [3, 7) and [7, 8) */
    snprintf(sub, sizeof sub, "%s/gap", dir);
    copy_file(p0, sub, "model-00-of-02.a.h5", path, sizeof path);
    copy_file(q1, sub, "model-01-of-02.b.h5", path, sizeof path);
    expect_inspect(sub, "no shard holds layer 1's MLP (a gap between shards 0 and 1)");
    snprintf(sub, sizeof sub, "%s/overlap", dir);
    copy_file(p0, sub, "model-00-of-02.a.h5", path, sizeof path);
    copy_file(r1, sub, "model-01-of-02.b.h5", path, sizeof path);
    expect_inspect(sub, "shards 0 and 1 both hold layer 1's attention (an overlap)");
    snprintf(sub, sizeof sub, "%s/short", dir); /* shards 0 and 1 of 3, told they are of 2 */
    hid_t f = copy_open(s0, sub, "model-00-of-02.a.h5");
    h5_set_int(f, "shard_count", 2);
    H5Fclose(f);
    f = copy_open(s1, sub, "model-01-of-02.b.h5");
    h5_set_int(f, "shard_count", 2);
    H5Fclose(f);
    expect_inspect(sub, "no shard holds layer 3's MLP (the shards stop short)");
    snprintf(sub, sizeof sub, "%s/late", dir); /* q's second shard, told it is the only one */
    f = copy_open(q1, sub, "model-00-of-01.a.h5");
    h5_set_int(f, "shard_index", 0);
    h5_set_int(f, "shard_count", 1);
    H5Fclose(f);
    expect_inspect(sub, "no shard holds layers 0-1 (shard 0 starts after it)");

    snprintf(sub, sizeof sub, "%s/bad", dir);
    f = copy_open(p1, sub, "disagree.h5");
    h5_set_int(f, "half_first", 5);
    H5Fclose(f);
    snprintf(path, sizeof path, "%s/disagree.h5", sub);
    expect_inspect(path, "half-layer range [5, 8) disagrees with layer range [1, 4)");
    f = copy_open(p0, sub, "no-half-attr.h5");
    assert_true(H5Adelete(f, "half_last") >= 0);
    H5Fclose(f);
    snprintf(path, sizeof path, "%s/no-half-attr.h5", sub);
    expect_inspect(path, "attribute half_last is missing");
    f = copy_open(q0, sub, "v1-half.h5"); /* version 1 must hold whole layers */
    h5_set_int(f, "half_last", 3);
    H5Fclose(f);
    snprintf(path, sizeof path, "%s/v1-half.h5", sub);
    expect_inspect(path, "half-layer range [0, 3) splits a layer, which format_version 1 cannot");
    f = copy_open(p0, sub, "missing.h5");
    assert_true(H5Ldelete(f, "/layers/001/wo", H5P_DEFAULT) >= 0);
    H5Fclose(f);
    snprintf(path, sizeof path, "%s/missing.h5", sub);
    expect_inspect(path, "dataset /layers/001/wo is missing");
    f = copy_open(p1, sub, "stray.h5"); /* attention of layer 1 in the shard of its MLP */
    hsize_t dims[1] = {16};
    static const float zeros[16];
    hid_t sp = H5Screate_simple(1, dims, NULL);
    hid_t d = H5Dcreate2(f, "/layers/001/attn_norm", H5T_IEEE_F32LE, sp, H5P_DEFAULT, H5P_DEFAULT,
                         H5P_DEFAULT);
    assert_true(sp >= 0 && d >= 0);
    assert_true(H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, zeros) >= 0);
    H5Dclose(d);
    H5Sclose(sp);
    H5Fclose(f);
    snprintf(path, sizeof path, "%s/stray.h5", sub);
    expect_inspect(path, "/layers/001/attn_norm should not be in this file, which holds layer 1's "
                         "MLP and layers 2-3");
    f = copy_open(p0, sub, "extra-group.h5");
    hid_t g = H5Gcreate2(f, "/layers/002", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    assert_true(g >= 0);
    H5Gclose(g);
    H5Fclose(f);
    snprintf(path, sizeof path, "%s/extra-group.h5", sub);
    expect_inspect(path, "group /layers has 3 members, expected the 2 groups of layers [0, 2)");
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
    const int32_t split[] = {2, 2, 4};
    assert_int_equal(write_opts(&src, out, CV_DTYPE_BF16, 3, split, &err), MDI_OK);
    assert_int_equal(cv_inspect(out, null, &err), MDI_OK);
    snprintf(shard, sizeof shard, "%s/model-01-of-03.L001-001.h5", out);
    assert_int_equal(cv_inspect(shard, null, &err), MDI_OK);
    hid_t f = H5Fopen(shard, H5F_ACC_RDWR, H5P_DEFAULT);
    assert_true(f >= 0);
    h5_set_int(f, "format_version", 3);
    H5Fclose(f);
    assert_int_equal(cv_inspect(out, null, &err), MDI_ERR_FORMAT);
    assert_non_null(
        strstr(err.msg, "format_version 3 is not supported (this tool knows version 2)"));
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

/* --inspect text of path (must pass); caller frees. */
static char *inspect_text(const char *path)
{
    mdi_err err;
    FILE *tf = tmpfile();
    assert_non_null(tf);
    if (cv_inspect(path, tf, &err) != MDI_OK)
        fail_msg("--inspect %s: %s", path, err.msg);
    long len = ftell(tf);
    assert_true(len >= 0);
    char *text = malloc((size_t)len + 1);
    assert_non_null(text);
    rewind(tf);
    assert_int_equal(fread(text, 1, (size_t)len, tf), (size_t)len);
    text[len] = '\0';
    fclose(tf);
    return text;
}

/* A directory's shards are told apart by their attributes, as the engine
 * does, not by their names: renamed shards pass and are listed in shard
 * order; two files with one index, a missing shard (in the middle or at the
 * end) and shards of two splits are each reported. */
static void test_inspect_names(void **state)
{
    (void)state;
    char dir[256], out[512], sub[640], path[1024], m[3][640], two[2][640];
    cv_source src;
    fake_impl impl = {.bad_kind = MDI_T_COUNT};
    make_fake(&src, &impl, 0);
    make_tmpdir(dir, sizeof dir);
    const int32_t split3[] = {2, 2, 4}, split2[] = {4, 4};
    write_split(&src, dir, "m", split3, 3, m);
    write_split(&src, dir, "two", split2, 2, two);
    snprintf(sub, sizeof sub, "%s/renamed", dir); /* name order is the reverse of shard order */
    copy_file(m[0], sub, "c.h5", path, sizeof path);
    copy_file(m[1], sub, "b.h5", path, sizeof path);
    copy_file(m[2], sub, "a.h5", path, sizeof path);
    copy_file(m[2], sub, "notes.txt", path, sizeof path); /* not *.h5: not looked at */
    char junk[640], bare[640]; /* *.h5 files that are not models: passed over, as mdi-llm does */
    snprintf(junk, sizeof junk, "%s/junk", dir);
    spit(junk, "hello\n", 6);
    snprintf(bare, sizeof bare, "%s/bare", dir);
    H5Fclose(H5Fcreate(bare, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT));
    copy_file(junk, sub, "notes.h5", path, sizeof path);
    snprintf(path, sizeof path, "%s/old.h5", sub);
    assert_int_equal(mkdir(path, 0755), 0);
    char *text = inspect_text(sub);
    const char *c = strstr(text, "/c.h5\n"), *b = strstr(text, "/b.h5\n"),
               *a = strstr(text, "/a.h5\n");
    if (!a || !b || !c || !(c < b && b < a) || !strstr(text, "3 shards, layers [0, 4)") ||
        !strstr(text, "skipped      ") || !strstr(text, "/notes.h5 is not an HDF5 file") ||
        !strstr(text, "/old.h5 is not a regular file"))
        fail_msg("renamed shards: --inspect should list c, b, a, skip two and pass:\n%s", text);
    free(text);
    /* directories of copies: {m[k], two[k - 3], junk (5) or bare (6), as name}, then the error */
    static const struct {
        const char *dir;
        int from[4];
        const char *names[4], *needle;
    } bad[] = {
        {"twin",
         {0, 0, 1, 2},
         {"x.h5", "y.h5", "z1.h5", "z2.h5"},
         "x.h5 and y.h5 both claim shard index 0; keep one conversion's shards"},
        {"hole", {0, 2}, {"p.h5", "q.h5"}, "no file is shard 1 of 3 (q.h5 is shard 2)"},
        {"tail", {0, 1}, {"p.h5", "q.h5"}, "no file is shard 2 of 3 (the last found is q.h5)"},
        {"mixed",
         {0, 4},
         {"p.h5", "q.h5"},
         "p.h5 is shard 0 of 3 but q.h5 is shard 1 of 2 (shards of two conversions?)"},
        {"empty", {0}, {"model.bin"}, "holds no *.h5 shard files"},
        {"foreign", {5, 6}, {"n.h5", "e.h5"}, "holds no mdi-llm shard files; "},
        {"only-bare", {6}, {"e.h5"}, "e.h5 is an HDF5 file but not an mdi-llm model"},
        {"damaged", {0, 5, 2}, {"p.h5", "q.h5", "r.h5"}, "q.h5 is not an HDF5 file"},
        {"damaged2",
         {0, 5, 2},
         {"p.h5", "q.h5", "r.h5"},
         "no file is shard 1 of 3 (r.h5 is shard 2); passed over: "},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(sub, sizeof sub, "%s/%s", dir, bad[i].dir);
        for (int k = 0; k < 4 && bad[i].names[k]; k++) {
            int f = bad[i].from[k];
            const char *from = f < 3 ? m[f] : f < 5 ? two[f - 3] : f == 5 ? junk : bare;
            copy_file(from, sub, bad[i].names[k], path, sizeof path);
        }
        expect_inspect(sub, bad[i].needle);
    }
    snprintf(out, sizeof out, "%s/m", dir);
    free(inspect_text(out));
    cv_source_close(&src);
    mdi_test_rm_tree(dir);
}

/* A filter that changes nothing, registered only while a test writes with it:
 * afterwards the file needs a filter this HDF5 library lacks. */
#define TEST_FILTER ((H5Z_filter_t)32123)
static size_t pass_filter(unsigned flags, size_t nv, const unsigned v[], size_t nbytes,
                          size_t *buf_size, void **buf)
{
    (void)flags, (void)nv, (void)v, (void)buf_size, (void)buf;
    return nbytes;
}

/* Rewrite every dataset under group g of f chunked and deflated (as h5repack
 * -f GZIP would), or through TEST_FILTER, with the same type and values. */
static void rechunk_group(hid_t f, const char *g, const char *const *names, size_t n,
                          int test_filter)
{
    for (size_t i = 0; i < n; i++) {
        char name[128];
        snprintf(name, sizeof name, "%s/%s", g, names[i]);
        hid_t d = H5Dopen2(f, name, H5P_DEFAULT);
        assert_true(d >= 0);
        hid_t sp = H5Dget_space(d), t = H5Dget_type(d);
        hsize_t dims[2] = {1, 1};
        int rank = H5Sget_simple_extent_ndims(sp);
        assert_true(rank >= 1 && rank <= 2 && H5Sget_simple_extent_dims(sp, dims, NULL) >= 0);
        size_t count = (size_t)dims[0] * (rank == 2 ? dims[1] : 1);
        float *v = malloc(count * sizeof *v);
        assert_non_null(v);
        assert_true(H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) >= 0);
        H5Dclose(d);
        assert_true(H5Ldelete(f, name, H5P_DEFAULT) >= 0);
        hid_t pl = H5Pcreate(H5P_DATASET_CREATE);
        hsize_t chunk[2] = {dims[0] > 3 ? dims[0] / 3 : 1, rank == 2 ? dims[1] : 1};
        assert_true(H5Pset_chunk(pl, rank, chunk) >= 0);
        if (test_filter)
            assert_true(H5Pset_filter(pl, TEST_FILTER, H5Z_FLAG_MANDATORY, 0, NULL) >= 0);
        else
            assert_true(H5Pset_deflate(pl, 6) >= 0);
        d = H5Dcreate2(f, name, t, sp, H5P_DEFAULT, pl, H5P_DEFAULT);
        assert_true(d >= 0);
        assert_true(H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) >= 0);
        H5Dclose(d);
        H5Pclose(pl);
        H5Tclose(t);
        H5Sclose(sp);
        free(v);
    }
}

/* Load path's whole model into st (freed by the caller, whatever the status). */
static mdi_status load_whole(const mdi_config *cfg, const char *path, mdi_stage *st, mdi_err *err)
{
    mdi_stage_params p = {.half_first = 0,
                          .half_last = 2 * cfg->n_layers,
                          .has_extras = 1,
                          .n_slots = 1,
                          .max_pos = 4,
                          .max_rows = 1,
                          .max_logit_rows = 1,
                          .n_threads = 1};
    if (mdi_stage_init(st, cfg, &p, err) != MDI_OK)
        fail_msg("mdi_stage_init: %s", err->msg);
    return mdi_shard_load(path, st, NULL, NULL, err);
}

/* A file whose datasets h5repack chunked and compressed is not what
 * mdi-convert writes, but HDF5 reads it: --inspect passes and says so, and
 * the engine's loader reads the same values (f32 and bf16 files). */
static void test_inspect_chunked(void **state)
{
    (void)state;
    static const char *const extras[] = {"token_embedding", "final_norm", "output"};
    static const char *const layer[] = {"attn_norm", "wq", "wk", "wv", "wo",
                                        "ffn_norm",  "w1", "w2", "w3"};
    char dir[256], out[512], sub[640], path[1024];
    cv_source src;
    fake_impl impl = {.bad_kind = MDI_T_COUNT};
    mdi_err err;
    make_fake(&src, &impl, 0);
    make_tmpdir(dir, sizeof dir);
    for (int bf16 = 0; bf16 <= 1; bf16++) {
        snprintf(out, sizeof out, "%s/m%d.h5", dir, bf16);
        assert_int_equal(write_opts(&src, out, bf16 ? CV_DTYPE_BF16 : CV_DTYPE_F32, 1, NULL, &err),
                         MDI_OK);
        snprintf(sub, sizeof sub, "%s/gz", dir);
        hid_t f = copy_open(out, sub, bf16 ? "m1.h5" : "m0.h5");
        rechunk_group(f, "", extras, 3, 0);
        for (int32_t l = 0; l < src.cfg.n_layers; l++) {
            char g[32];
            snprintf(g, sizeof g, "/layers/%03d", (int)l);
            rechunk_group(f, g, layer, 9, 0);
        }
        H5Fclose(f);
        snprintf(path, sizeof path, "%s/gz/m%d.h5", dir, bf16);
        char *want = inspect_text(out), *text = inspect_text(path);
        char tensors[128]; /* the same line: bytes as stored uncompressed */
        const char *t = strstr(want, "tensors");
        assert_non_null(t);
        snprintf(tensors, sizeof tensors, "%.*s", (int)strcspn(t, "\n"), t);
        if (!strstr(text,
                    "layout       39 datasets not contiguous (chunked, compressed or compact: "
                    "readable") ||
            !strstr(text, tensors) || strstr(want, "layout"))
            fail_msg("--inspect of the chunked copy:\n%s\nof the original:\n%s", text, want);
        free(want);
        free(text);
        mdi_stage a, b;
        if (load_whole(&src.cfg, out, &a, &err) || load_whole(&src.cfg, path, &b, &err))
            fail_msg("load: %s", err.msg);
        assert_memory_equal(a.embedding, b.embedding,
                            (size_t)src.cfg.vocab_size * src.cfg.dim * sizeof(float));
        assert_memory_equal(a.output, b.output,
                            (size_t)src.cfg.vocab_size * src.cfg.dim * sizeof(float));
        assert_memory_equal(a.final_norm, b.final_norm, (size_t)src.cfg.dim * sizeof(float));
        for (int32_t l = 0; l < src.cfg.n_layers; l++) {
            const mdi_layer_weights *x = &a.layers[l], *y = &b.layers[l];
            const float *xs[] = {x->attn_norm, x->wq, x->wk, x->wv, x->wo,
                                 x->ffn_norm,  x->w1, x->w2, x->w3};
            const float *ys[] = {y->attn_norm, y->wq, y->wk, y->wv, y->wo,
                                 y->ffn_norm,  y->w1, y->w2, y->w3};
            for (int k = 0; k < 9; k++) {
                size_t rows, cols;
                mdi_tensor_shape(&src.cfg, (mdi_tensor_kind)k, &rows, &cols);
                assert_memory_equal(xs[k], ys[k], rows * cols * sizeof(float));
            }
        }
        mdi_stage_free(&a);
        mdi_stage_free(&b);
    }
    /* a filter this library lacks: refused by --inspect, named by the loader */
    const H5Z_class2_t cls = {H5Z_CLASS_T_VERS, TEST_FILTER, 1,    1,
                              "mdi-test",       NULL,        NULL, pass_filter};
    assert_true(H5Zregister(&cls) >= 0);
    snprintf(out, sizeof out, "%s/m0.h5", dir);
    snprintf(sub, sizeof sub, "%s/plugin", dir);
    hid_t f = copy_open(out, sub, "m.h5");
    static const char *const wq[] = {"wq"};
    rechunk_group(f, "/layers/001", wq, 1, 1);
    H5Fclose(f);
    assert_true(H5Zunregister(TEST_FILTER) >= 0);
    snprintf(path, sizeof path, "%s/plugin/m.h5", dir);
    expect_inspect(path, "dataset /layers/001/wq needs HDF5 filter 32123 'mdi-test', which this "
                         "HDF5 library lacks");
    mdi_stage st;
    assert_int_equal(load_whole(&src.cfg, path, &st, &err), MDI_ERR_IO);
    if (!strstr(err.msg, "reading dataset '/layers/001/wq' failed (it needs HDF5 filter 32123 "
                         "'mdi-test', which this HDF5 library lacks)"))
        fail_msg("loader: %s", err.msg);
    mdi_stage_free(&st);
    cv_source_close(&src);
    mdi_test_rm_tree(dir);
}

int main(void)
{
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_write_stories),
        cmocka_unit_test(test_write_halves),
        cmocka_unit_test(test_write_balance),
        cmocka_unit_test(test_write_refusals),
        cmocka_unit_test(test_write_untied_without_tokenizer),
        cmocka_unit_test(test_write_nonfinite_leaves_nothing),
        cmocka_unit_test(test_inspect),
        cmocka_unit_test(test_inspect_halves),
        cmocka_unit_test(test_inspect_names),
        cmocka_unit_test(test_inspect_chunked),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

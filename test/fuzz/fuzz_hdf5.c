/* libFuzzer target: our validation of model files (mdi_shard_probe,
 * mdi_shard_load, mdi_shard_load_vocab), not libhdf5 itself.
 *
 * On first use a small valid model (synthetic weights, byte-level vocabulary)
 * is written with the converter, as one file and as two shards. Input byte 0
 * picks one of the three files; the rest is a list of edits applied to a copy
 * with the HDF5 API, each an opcode byte and its operands: set an attribute
 * to an int, float or string, give it an odd type or shape, delete it;
 * replace a dataset with one of another type and shape (storage left
 * unallocated above 1 MiB: a file that lies about its shapes); delete a
 * dataset or group. The copy is then read as the engine reads it: probe,
 * allocate a stage from the attributes, load; load the vocabulary. */
#include "fuzz_util.h"

#include <hdf5.h>

#include "mdi/shard_loader.h"
#include "mdi/stage.h"

#define FUZZ_H5_WRITE_MAX ((uint64_t)1 << 20)
#define FUZZ_H5_CONFIG                                                                       \
    "{\"dim\": 16, \"hidden_dim\": 32, \"n_layers\": 2, \"n_heads\": 2, \"n_kv_heads\": 1, " \
    "\"vocab_size\": 300, \"max_seq_len\": 32}"

/* Edit operands come from the input; past its end they read as zeros. */
typedef struct fuzz_h5_in {
    const uint8_t *p;
    size_t n;
} fuzz_h5_in;

static uint8_t fuzz_h5_u8(fuzz_h5_in *in)
{
    if (in->n == 0)
        return 0;
    in->n--;
    return *in->p++;
}

static uint32_t fuzz_h5_u32(fuzz_h5_in *in)
{
    uint32_t v = 0;
    for (int i = 0; i < 4; i++)
        v |= (uint32_t)fuzz_h5_u8(in) << (8 * i);
    return v;
}

/* n bytes for a value: taken from the input, repeated when it runs short. */
static void *fuzz_h5_fill(fuzz_h5_in *in, size_t n)
{
    uint8_t *b = calloc(n ? n : 1, 1);
    if (!b)
        fuzz_fail("out of memory");
    for (size_t i = 0; i < n && in->n > 0; i++)
        b[i] = in->p[i % in->n];
    size_t used = n < in->n ? n : in->n;
    in->p += used;
    in->n -= used;
    return b;
}

static const struct {
    const char *obj, *name;
} fuzz_h5_attrs[] = {
    {"/", "format"},          {"/", "format_version"},
    {"/", "model_id"},        {"/", "dim"},
    {"/", "hidden_dim"},      {"/", "n_layers"},
    {"/", "n_heads"},         {"/", "n_kv_heads"},
    {"/", "head_dim"},        {"/", "vocab_size"},
    {"/", "max_seq_len"},     {"/", "rope_theta"},
    {"/", "norm_eps"},        {"/", "tied_head"},
    {"/", "rope_layout"},     {"/", "layer_first"},
    {"/", "layer_last"},      {"/", "shard_index"},
    {"/", "shard_count"},     {"/", "dtype"},
    {"/tokenizer", "bos_id"}, {"/tokenizer", "eos_id"},
    {"/tokenizer", "unk_id"}, {"/tokenizer", "add_dummy_prefix"},
};
#define FUZZ_H5_N_ATTRS (sizeof fuzz_h5_attrs / sizeof fuzz_h5_attrs[0])

static const char *const fuzz_h5_extras[] = {
    "/token_embedding",   "/final_norm",       "/output",          "/tokenizer/bytes",
    "/tokenizer/offsets", "/tokenizer/scores", "/tokenizer/types", "/layers",
    "/layers/000",        "/layers/001",       "/tokenizer"};
#define FUZZ_H5_N_EXTRAS (sizeof fuzz_h5_extras / sizeof fuzz_h5_extras[0])
/* Links: 2 layers x 9 layer datasets, then the extras (datasets, then groups). */
#define FUZZ_H5_N_LINKS (18 + FUZZ_H5_N_EXTRAS)
#define FUZZ_H5_N_DSETS (FUZZ_H5_N_LINKS - 4)

/* Path of link i into buf (64 bytes). */
static const char *fuzz_h5_link(size_t i, char *buf)
{
    static const mdi_tensor_kind layer_kinds[9] = {MDI_T_ATTN_NORM, MDI_T_WQ, MDI_T_WK,
                                                   MDI_T_WV,        MDI_T_WO, MDI_T_FFN_NORM,
                                                   MDI_T_W1,        MDI_T_W2, MDI_T_W3};
    if (i >= 18)
        return fuzz_h5_extras[i - 18];
    snprintf(buf, 64, "/layers/%03d/%s", (int)(i / 9), mdi_tensor_name(layer_kinds[i % 9]));
    return buf;
}

/* Replace attribute (obj, name) by one of type t and space sp holding buf. */
static void fuzz_h5_put_attr(hid_t f, size_t idx, hid_t t, hid_t sp, const void *buf)
{
    const char *obj = fuzz_h5_attrs[idx].obj, *name = fuzz_h5_attrs[idx].name;
    hid_t o = H5Oopen(f, obj, H5P_DEFAULT);
    if (o < 0)
        return;
    if (H5Aexists(o, name) > 0)
        H5Adelete(o, name);
    hid_t a = t < 0 || sp < 0 ? -1 : H5Acreate2(o, name, t, sp, H5P_DEFAULT, H5P_DEFAULT);
    if (a >= 0 && buf)
        H5Awrite(a, t, buf);
    if (a >= 0)
        H5Aclose(a);
    H5Oclose(o);
}

/* A fixed-length string type of size bytes with padding pad (0-2). */
static hid_t fuzz_h5_str_type(size_t size, int pad)
{
    static const H5T_str_t pads[3] = {H5T_STR_NULLTERM, H5T_STR_NULLPAD, H5T_STR_SPACEPAD};
    hid_t t = H5Tcopy(H5T_C_S1);
    if (t >= 0 && (H5Tset_size(t, size) < 0 || H5Tset_strpad(t, pads[pad % 3]) < 0)) {
        H5Tclose(t);
        return -1;
    }
    return t;
}

/* Attribute of an odd type or shape: int64, float64, variable-length string,
 * a 1-D int32 or fixed-string array of `count` elements, a null dataspace. */
static void fuzz_h5_odd_attr(hid_t f, size_t idx, fuzz_h5_in *in)
{
    uint8_t kind = fuzz_h5_u8(in) % 6;
    hsize_t count = fuzz_h5_u8(in);
    size_t slen = 1 + fuzz_h5_u8(in);
    hid_t t = -1, sp = -1;
    void *buf = NULL;
    if (kind == 0 || kind == 1) {
        t = H5Tcopy(kind == 0 ? H5T_STD_I64LE : H5T_IEEE_F64LE);
        sp = H5Screate(H5S_SCALAR);
        buf = fuzz_h5_fill(in, 8);
    } else if (kind == 2) {
        const char *word = "mdi-llm";
        t = H5Tcopy(H5T_C_S1);
        sp = H5Screate(H5S_SCALAR);
        if (t >= 0 && H5Tset_size(t, H5T_VARIABLE) >= 0)
            fuzz_h5_put_attr(f, idx, t, sp, &word);
        H5Tclose(t);
        H5Sclose(sp);
        return;
    } else if (kind == 3 || kind == 4) {
        t = kind == 3 ? H5Tcopy(H5T_STD_I32LE) : fuzz_h5_str_type(slen, 0);
        sp = H5Screate_simple(1, &count, NULL);
        buf = fuzz_h5_fill(in, (size_t)count * (kind == 3 ? 4 : slen));
    } else {
        t = H5Tcopy(H5T_STD_I32LE);
        sp = H5Screate(H5S_NULL);
    }
    fuzz_h5_put_attr(f, idx, t, sp, buf);
    free(buf);
    if (t >= 0)
        H5Tclose(t);
    if (sp >= 0)
        H5Sclose(sp);
}

/* HDF5 type number i of the ones a replaced dataset may have. */
static hid_t fuzz_h5_type(uint8_t i)
{
    switch (i % 7) {
    case 0:
        return H5T_IEEE_F32LE;
    case 1:
        return H5T_IEEE_F64LE;
    case 2:
        return H5T_STD_I32LE;
    case 3:
        return H5T_STD_U8LE;
    case 4:
        return H5T_STD_U64LE;
    case 5:
        return H5T_STD_I8LE;
    default:
        return H5T_STD_I16LE;
    }
}

/* Replace dataset number which by one of another type, rank 1-3 and dims (16-bit,
 * or 32-bit when bit 7 of the rank byte is set); data from the input when it
 * takes at most 1 MiB, else no storage at all. */
static void fuzz_h5_put_dset(hid_t f, uint8_t which, fuzz_h5_in *in)
{
    char buf[64];
    const char *name = fuzz_h5_link(which % FUZZ_H5_N_DSETS, buf);
    hid_t t = fuzz_h5_type(fuzz_h5_u8(in));
    uint8_t rb = fuzz_h5_u8(in);
    int rank = 1 + rb % 3;
    hsize_t dims[3];
    uint64_t bytes = H5Tget_size(t);
    for (int i = 0; i < rank; i++) {
        dims[i] = rb & 0x80 ? fuzz_h5_u32(in) : (fuzz_h5_u32(in) & 0xffff);
        bytes = dims[i] && bytes > UINT64_MAX / dims[i] ? UINT64_MAX : bytes * dims[i];
    }
    H5Ldelete(f, name, H5P_DEFAULT);
    hid_t sp = H5Screate_simple(rank, dims, NULL);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    if (sp < 0 || dcpl < 0 || H5Pset_fill_time(dcpl, H5D_FILL_TIME_NEVER) < 0 ||
        H5Pset_alloc_time(dcpl, H5D_ALLOC_TIME_LATE) < 0)
        goto done;
    hid_t d = H5Dcreate2(f, name, t, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    if (d >= 0 && bytes > 0 && bytes <= FUZZ_H5_WRITE_MAX) {
        void *data = fuzz_h5_fill(in, (size_t)bytes);
        H5Dwrite(d, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, data);
        free(data);
    }
    if (d >= 0)
        H5Dclose(d);
done:
    if (dcpl >= 0)
        H5Pclose(dcpl);
    if (sp >= 0)
        H5Sclose(sp);
}

/* Apply the edits of in to the open file f. */
static void fuzz_h5_edit(hid_t f, fuzz_h5_in *in)
{
    while (in->n > 0) {
        uint8_t op = fuzz_h5_u8(in) % 7, arg = fuzz_h5_u8(in);
        size_t idx = arg % FUZZ_H5_N_ATTRS;
        char buf[64];
        if (op == 0 || op == 1) { /* int32 or float32 scalar */
            hid_t t = H5Tcopy(op == 0 ? H5T_STD_I32LE : H5T_IEEE_F32LE);
            hid_t sp = H5Screate(H5S_SCALAR);
            uint32_t v = fuzz_h5_u32(in);
            fuzz_h5_put_attr(f, idx, t, sp, &v);
            H5Tclose(t);
            H5Sclose(sp);
        } else if (op == 2) { /* fixed-length string: 1 pad byte, 2 length bytes, text */
            int pad = fuzz_h5_u8(in);
            size_t len = (fuzz_h5_u8(in) | (size_t)fuzz_h5_u8(in) << 8) % 400;
            hid_t t = fuzz_h5_str_type(len ? len : 1, pad);
            hid_t sp = H5Screate(H5S_SCALAR);
            void *text = fuzz_h5_fill(in, len ? len : 1);
            fuzz_h5_put_attr(f, idx, t, sp, text);
            free(text);
            if (t >= 0)
                H5Tclose(t);
            H5Sclose(sp);
        } else if (op == 3) {
            fuzz_h5_odd_attr(f, idx, in);
        } else if (op == 4) { /* delete */
            fuzz_h5_put_attr(f, idx, -1, -1, NULL);
        } else if (op == 5) {
            fuzz_h5_put_dset(f, arg, in);
        } else {
            H5Ldelete(f, fuzz_h5_link(arg % FUZZ_H5_N_LINKS, buf), H5P_DEFAULT);
        }
    }
}

/* The three valid files (whole model, shard 0, shard 1), written on first use. */
typedef struct fuzz_h5_base {
    uint8_t *data;
    size_t size;
} fuzz_h5_base;

static void fuzz_h5_slurp(const char *path, fuzz_h5_base *b)
{
    FILE *fp = fopen(path, "rb");
    struct stat st;
    if (!fp || stat(path, &st) != 0 || !(b->data = malloc((size_t)st.st_size)) ||
        fread(b->data, 1, (size_t)st.st_size, fp) != (size_t)st.st_size)
        fuzz_fail("cannot read a base model file");
    b->size = (size_t)st.st_size;
    fclose(fp);
}

static const fuzz_h5_base *fuzz_h5_bases(void)
{
    static fuzz_h5_base bases[3];
    char cfg[FUZZ_PATH_MAX], one[FUZZ_PATH_MAX], dir[FUZZ_PATH_MAX], path[FUZZ_PATH_MAX + 32];
    cv_source src;
    mdi_err err;
    if (bases[0].data)
        return bases;
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    fuzz_write("base.json", FUZZ_H5_CONFIG, strlen(FUZZ_H5_CONFIG), 0, cfg);
    static const int32_t halves[2] = {2, 2}; /* one layer per shard */
    cv_write_opts whole = {.dtype = CV_DTYPE_F32, .n_shards = 1, .quiet = 1};
    cv_write_opts split = {.dtype = CV_DTYPE_F32, .n_shards = 2, .split = halves, .quiet = 1};
    if (cv_open_synthetic(cfg, 1, NULL, &src, &err) != MDI_OK ||
        cv_write(&src, fuzz_path("base.h5", one), &whole, &err) != MDI_OK ||
        cv_write(&src, fuzz_path("base-shards", dir), &split, &err) != MDI_OK)
        fuzz_fail(err.msg);
    cv_source_close(&src);
    fuzz_h5_slurp(one, &bases[0]);
    snprintf(path, sizeof path, "%s/model-00-of-02.L000-000.h5", dir);
    fuzz_h5_slurp(path, &bases[1]);
    snprintf(path, sizeof path, "%s/model-01-of-02.L001-001.h5", dir);
    fuzz_h5_slurp(path, &bases[2]);
    return bases;
}

/* Probe, allocate a stage from the attributes and load it, as the engine does. */
static mdi_status fuzz_h5_load(const char *path, mdi_err *err)
{
    mdi_shard_info info;
    mdi_stage st;
    struct stat fs;
    mdi_status s = fuzz_result(mdi_shard_probe(path, &info, err), err);
    if (s != MDI_OK)
        return s;
    /* Datasets are contiguous, at least 2 bytes an element: attributes that promise
     * more weights than the file holds are a lie the stage must not be allocated for. */
    uint64_t elems =
        (uint64_t)(info.half_last - info.half_first) / 2 * mdi_config_layer_params(&info.cfg) +
        (info.has_extras ? mdi_config_extra_params(&info.cfg) : 0);
    if (stat(path, &fs) != 0 || elems > (uint64_t)fs.st_size / 2)
        fuzz_fail("probe accepted attributes that imply more weights than the file holds");
    mdi_stage_params p = {.half_first = info.half_first,
                          .half_last = info.half_last,
                          .has_extras = info.has_extras,
                          .n_slots = 1,
                          .max_pos = 1,
                          .max_rows = 1,
                          .max_logit_rows = 1,
                          .n_threads = 1};
    s = fuzz_result(mdi_stage_init(&st, &info.cfg, &p, err), err);
    if (s == MDI_OK) {
        s = fuzz_result(mdi_shard_load(path, &st, NULL, NULL, err), err);
        mdi_stage_free(&st);
    }
    return s;
}

mdi_status fuzz_hdf5(const uint8_t *data, size_t size)
{
    char path[FUZZ_PATH_MAX];
    mdi_err err, err2;
    mdi_vocab v = {0};
    mdi_err_clear(&err);
    mdi_err_clear(&err2);
    const fuzz_h5_base *b = &fuzz_h5_bases()[size > 0 ? data[0] % 3 : 0];
    fuzz_h5_in in = {size > 0 ? data + 1 : data, size > 0 ? size - 1 : 0};
    fuzz_write("edit.h5", b->data, b->size, 0, path);
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    if (f < 0)
        fuzz_fail("cannot open the copy of a base model file");
    fuzz_h5_edit(f, &in);
    H5Fclose(f);
    mdi_status s = fuzz_h5_load(path, &err);
    mdi_status sv = fuzz_result(mdi_shard_load_vocab(path, &v, &err2), &err2);
    if (sv == MDI_OK)
        fuzz_use_vocab(&v);
    mdi_vocab_free(&v);
    return s;
}

#ifndef MDI_FUZZ_NO_MAIN
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_hdf5(data, size);
    return 0;
}
#endif

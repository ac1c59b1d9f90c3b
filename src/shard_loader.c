/* HDF5 -> this rank's weights, attributes and tokenizer. */
#include "mdi/shard_loader.h"

#include <dirent.h>
#include <errno.h>
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "h5check.h"
#include "mdi/plan.h"

/* Quiet HDF5's own error stack printing: we report errors ourselves. */
static void h5_quiet(void)
{
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}

int mdi_h5_number_type_ok(hid_t t)
{
    size_t size = H5Tget_size(t), bits = 8 * size;
    H5T_order_t order = H5Tget_order(t);
    if (!(size == 1 || size == 2 || size == 4 || size == 8) || H5Tget_precision(t) != bits ||
        H5Tget_offset(t) != 0 || !(order == H5T_ORDER_LE || order == H5T_ORDER_BE || size == 1))
        return 0;
    H5T_class_t c = H5Tget_class(t);
    if (c == H5T_INTEGER)
        return 1;
    size_t spos, epos, esize, mpos, msize;
    if (c != H5T_FLOAT || size == 1 || H5Tget_fields(t, &spos, &epos, &esize, &mpos, &msize) < 0)
        return 0;
    return spos == bits - 1 && mpos == 0 && msize >= 1 && epos == msize && esize >= 2 &&
           esize <= 15 && epos + esize == spos &&
           H5Tget_ebias(t) == ((size_t)1 << (esize - 1)) - 1 && H5Tget_norm(t) == H5T_NORM_IMPLIED;
}

/* Little-endian unsigned integer of n <= 8 bytes. */
static uint64_t le_uint(const unsigned char *b, int n)
{
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--)
        v = v << 8 | b[i];
    return v;
}

/* mdi_h5_truncated's test: 1 if cut, with the file's size and the end of
 * file its superblock records (0 if the file ends inside the superblock). */
static int h5_cut(const char *path, uint64_t *size, uint64_t *eof)
{
    static const unsigned char sig[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};
    unsigned char b[64];
    struct stat sb;
    FILE *f = stat(path, &sb) == 0 && S_ISREG(sb.st_mode) ? fopen(path, "rb") : NULL;
    int cut = 0;
    *size = f ? (uint64_t)sb.st_size : 0;
    *eof = 0;
    for (uint64_t at = 0; f && at + sizeof sig <= *size; at = at ? 2 * at : 512) {
        size_t got = fseeko(f, (off_t)at, SEEK_SET) ? 0 : fread(b, 1, sizeof b, f);
        if (got < sizeof sig || memcmp(b, sig, sizeof sig))
            continue;
        if (got < 16) {
            cut = 1; /* the file ends inside the superblock */
            break;
        }
        /* version 0 and 1: offset and length sizes at bytes 13-14, base
         * address at 24 (28 in version 1, after two more fields), then the
         * free-space address and the end-of-file address; versions 2 and 3:
         * the sizes at 9-10, base address at 12, then the superblock
         * extension's address and the end-of-file address */
        int v = b[8], o = v < 2 ? b[13] : b[9], base_at = v == 0 ? 24 : v == 1 ? 28 : 12;
        if (v > 3 || (o != 2 && o != 4 && o != 8))
            break; /* not a superblock this reads: leave it to HDF5 */
        size_t need = (size_t)base_at + 3 * (size_t)o;
        if (got < need) {
            cut = 1; /* the file ends inside the superblock */
            break;
        }
        /* the end of file is stored as an absolute address (HDF5 adds the
         * base to it); undefined (all ones) says nothing */
        uint64_t end = le_uint(b + base_at + 2 * o, o);
        if (end != (o == 8 ? UINT64_MAX : ((uint64_t)1 << 8 * o) - 1) && end > *size) {
            *eof = end;
            cut = 1;
        }
        break;
    }
    if (f)
        fclose(f);
    return cut;
}

mdi_status mdi_h5_truncated(const char *path, mdi_err *err)
{
    uint64_t size, eof;
    if (!h5_cut(path, &size, &eof))
        return MDI_OK;
    if (eof)
        return mdi_errf(err, MDI_ERR_FORMAT,
                        "%s: truncated: it has %llu bytes, its HDF5 superblock records %llu (an "
                        "interrupted copy?)",
                        path, (unsigned long long)size, (unsigned long long)eof);
    return mdi_errf(err, MDI_ERR_FORMAT,
                    "%s: truncated: it ends inside its HDF5 superblock (%llu bytes)", path,
                    (unsigned long long)size);
}

/* An integer or float type that mdi_h5_number_type_ok refuses. */
static int h5_damaged_number(hid_t t)
{
    H5T_class_t c = t < 0 ? H5T_NO_CLASS : H5Tget_class(t);
    return (c == H5T_INTEGER || c == H5T_FLOAT) && !mdi_h5_number_type_ok(t);
}

/* Open an HDF5 file read-only, with a clear message for the usual failures. */
static mdi_status h5_open(const char *path, hid_t *out, mdi_err *err)
{
    struct stat sb;
    h5_quiet();
    if (stat(path, &sb) != 0)
        return mdi_errf(err, MDI_ERR_IO, "%s: %s", path, strerror(errno));
    if (!S_ISREG(sb.st_mode))
        return mdi_errf(err, MDI_ERR_IO, "%s: not a regular file", path);
    FILE *f = fopen(path, "rb");
    if (!f)
        return mdi_errf(err, MDI_ERR_IO, "%s: cannot be read: %s", path, strerror(errno));
    fclose(f);
    if (H5Fis_hdf5(path) <= 0)
        return mdi_errf(err, MDI_ERR_FORMAT,
                        "%s: not an HDF5 file (convert models with mdi-convert)", path);
    hid_t f5 = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    mdi_status s;
    if (f5 < 0 && (s = mdi_h5_truncated(path, err)) != MDI_OK)
        return s;
    if (f5 < 0)
        return mdi_errf(err, MDI_ERR_FORMAT, "%s: HDF5 library cannot open it", path);
    *out = f5;
    return MDI_OK;
}

static mdi_status attr_read(hid_t loc, const char *path, const char *name, hid_t mem_type,
                            void *out, mdi_err *err)
{
    if (H5Aexists(loc, name) <= 0)
        return mdi_errf(err, MDI_ERR_FORMAT, "%s: attribute '%s' is missing", path, name);
    hid_t a = H5Aopen(loc, name, H5P_DEFAULT);
    hid_t sp = a < 0 ? -1 : H5Aget_space(a), ty = a < 0 ? -1 : H5Aget_type(a);
    hssize_t n = sp < 0 ? -1 : H5Sget_simple_extent_npoints(sp);
    int damaged = h5_damaged_number(ty);
    herr_t rc = n == 1 && !damaged ? H5Aread(a, mem_type, out) : -1;
    if (ty >= 0)
        H5Tclose(ty);
    if (sp >= 0)
        H5Sclose(sp);
    if (a >= 0)
        H5Aclose(a);
    if (n == 1 && damaged)
        return mdi_errf(err, MDI_ERR_FORMAT,
                        "%s: attribute '%s' has a damaged or unsupported number type", path, name);
    if (rc < 0)
        return mdi_errf(err, MDI_ERR_FORMAT, "%s: attribute '%s' is not a single %s", path, name,
                        mem_type == H5T_NATIVE_FLOAT ? "number" : "integer");
    return MDI_OK;
}

static mdi_status attr_int(hid_t loc, const char *path, const char *name, int32_t *v, mdi_err *err)
{
    return attr_read(loc, path, name, H5T_NATIVE_INT32, v, err);
}

/* Fixed- or variable-length string attribute into buf (cap bytes). */
static mdi_status attr_str(hid_t loc, const char *path, const char *name, char *buf, size_t cap,
                           mdi_err *err)
{
    if (H5Aexists(loc, name) <= 0)
        return mdi_errf(err, MDI_ERR_FORMAT, "%s: attribute '%s' is missing", path, name);
    mdi_status s = MDI_OK;
    hid_t a = H5Aopen(loc, name, H5P_DEFAULT);
    hid_t ft = a < 0 ? -1 : H5Aget_type(a);
    hid_t sp = a < 0 ? -1 : H5Aget_space(a); /* one string: H5Aread fills all of them into tmp */
    if (ft < 0 || sp < 0 || H5Sget_simple_extent_npoints(sp) != 1 ||
        H5Tget_class(ft) != H5T_STRING || H5Tis_variable_str(ft) > 0) {
        s = mdi_errf(err, MDI_ERR_FORMAT, "%s: attribute '%s' is not a fixed-length string", path,
                     name);
    } else {
        size_t len = H5Tget_size(ft);
        hid_t mt = H5Tcopy(H5T_C_S1);
        char tmp[256] = {0};
        if (len >= sizeof tmp || H5Tset_size(mt, len + 1) < 0 || H5Aread(a, mt, tmp) < 0 ||
            strlen(tmp) >= cap)
            s = mdi_errf(err, MDI_ERR_FORMAT, "%s: attribute '%s' is too long or unreadable", path,
                         name);
        else
            snprintf(buf, cap, "%s", tmp);
        H5Tclose(mt);
    }
    if (sp >= 0)
        H5Sclose(sp);
    if (ft >= 0)
        H5Tclose(ft);
    if (a >= 0)
        H5Aclose(a);
    return s;
}

static mdi_status read_info(hid_t f, const char *path, mdi_shard_info *in, mdi_err *err)
{
    char fmt[64] = "";
    mdi_status s;
    memset(in, 0, sizeof *in);
    if (H5Aexists(f, "format") <= 0)
        return mdi_errf(err, MDI_ERR_FORMAT, "%s: not an mdi-llm model (no 'format' attribute)",
                        path);
    if ((s = attr_str(f, path, "format", fmt, sizeof fmt, err)))
        return s;
    if (strcmp(fmt, MDI_FORMAT_NAME) != 0)
        return mdi_errf(err, MDI_ERR_FORMAT, "%s: format is '%s', expected '%s'", path, fmt,
                        MDI_FORMAT_NAME);
    if ((s = attr_int(f, path, "format_version", &in->format_version, err)))
        return s;
    if (in->format_version < 1 || in->format_version > MDI_FORMAT_VERSION)
        return mdi_errf(err, MDI_ERR_UNSUPPORTED,
                        "%s: format version %d is not supported (this build reads up to %d)", path,
                        in->format_version, MDI_FORMAT_VERSION);
    mdi_config *c = &in->cfg;
    struct {
        const char *name;
        int32_t *dst;
    } ints[] = {{"dim", &c->dim},
                {"hidden_dim", &c->hidden_dim},
                {"n_layers", &c->n_layers},
                {"n_heads", &c->n_heads},
                {"n_kv_heads", &c->n_kv_heads},
                {"head_dim", &c->head_dim},
                {"vocab_size", &c->vocab_size},
                {"max_seq_len", &c->max_seq_len},
                {"tied_head", &c->tied_head},
                {"layer_first", &in->layer_first},
                {"layer_last", &in->layer_last},
                {"shard_index", &in->shard_index},
                {"shard_count", &in->shard_count}};
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++)
        if ((s = attr_int(f, path, ints[i].name, ints[i].dst, err)))
            return s;
    char rope[32] = "";
    if ((s = attr_read(f, path, "rope_theta", H5T_NATIVE_FLOAT, &c->rope_theta, err)) ||
        (s = attr_read(f, path, "norm_eps", H5T_NATIVE_FLOAT, &c->norm_eps, err)) ||
        (s = attr_str(f, path, "model_id", in->model_id, sizeof in->model_id, err)) ||
        (s = attr_str(f, path, "dtype", in->dtype, sizeof in->dtype, err)) ||
        (s = attr_str(f, path, "rope_layout", rope, sizeof rope, err)))
        return s;
    if (strcmp(rope, "interleaved") != 0)
        return mdi_errf(err, MDI_ERR_UNSUPPORTED, "%s: rope_layout '%s' is not supported", path,
                        rope);
    mdi_err e2;
    if (mdi_config_validate(c, &e2))
        return mdi_errf(err, MDI_ERR_FORMAT, "%s: %s", path, e2.msg);
    if (in->layer_first < 0 || in->layer_first >= in->layer_last || in->layer_last > c->n_layers)
        return mdi_errf(err, MDI_ERR_FORMAT, "%s: layer range [%d, %d) is invalid for %d layers",
                        path, in->layer_first, in->layer_last, c->n_layers);
    /* Version 2 may hold half a layer at either end; version 1 holds whole layers. */
    in->half_first = 2 * in->layer_first;
    in->half_last = 2 * in->layer_last;
    if (in->format_version >= 2 && ((s = attr_int(f, path, "half_first", &in->half_first, err)) ||
                                    (s = attr_int(f, path, "half_last", &in->half_last, err))))
        return s;
    if (in->half_first < 0 || in->half_first >= in->half_last ||
        in->half_first / 2 != in->layer_first || (in->half_last + 1) / 2 != in->layer_last)
        return mdi_errf(err, MDI_ERR_FORMAT,
                        "%s: half-layer range [%d, %d) disagrees with layer range [%d, %d)", path,
                        in->half_first, in->half_last, in->layer_first, in->layer_last);
    if (in->shard_count < 1 || in->shard_index < 0 || in->shard_index >= in->shard_count)
        return mdi_errf(err, MDI_ERR_FORMAT, "%s: shard %d of %d is invalid", path, in->shard_index,
                        in->shard_count);
    /* Datasets are contiguous, at least 2 bytes an element: the weights the attributes
     * describe must fit in the file, or a rank would allocate them for a lie. */
    hsize_t size = 0;
    uint64_t n = (uint64_t)(in->half_last - in->half_first) / 2 * mdi_config_layer_params(c) +
                 (in->half_first == 0 ? mdi_config_extra_params(c) : 0);
    if (H5Fget_filesize(f, &size) < 0 || n > size / 2)
        return mdi_errf(err, MDI_ERR_FORMAT,
                        "%s: %llu bytes cannot hold the %llu weights its attributes describe", path,
                        (unsigned long long)size, (unsigned long long)n);
    in->has_extras = in->half_first == 0;
    return MDI_OK;
}

mdi_status mdi_shard_probe(const char *path, mdi_shard_info *info, mdi_err *err)
{
    hid_t f;
    mdi_status s = h5_open(path, &f, err);
    if (s)
        return s;
    s = read_info(f, path, info, err);
    H5Fclose(f);
    return s;
}

static int cmp_names(const void *x, const void *y)
{
    return strcmp(*(char *const *)x, *(char *const *)y);
}

void mdi_shard_names_free(char **names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

mdi_status mdi_shard_list(const char *dir, char ***names, size_t *n, mdi_err *err)
{
    DIR *d = opendir(dir);
    size_t cap = 0;
    int nomem = 0;
    *names = NULL;
    *n = 0;
    if (!d)
        return mdi_errf(err, MDI_ERR_IO, "%s: cannot open directory: %s", dir, strerror(errno));
    for (struct dirent *e; !nomem && (e = readdir(d)) != NULL;) {
        size_t len = strlen(e->d_name);
        if (len < 4 || strcmp(e->d_name + len - 3, ".h5") != 0)
            continue;
        if (*n == cap) {
            size_t grown_cap = cap ? 2 * cap : 16;
            char **grown = realloc(*names, grown_cap * sizeof *grown);
            if (!grown) {
                nomem = 1;
                break;
            }
            *names = grown;
            cap = grown_cap;
        }
        if (!((*names)[*n] = strdup(e->d_name)))
            nomem = 1;
        else
            (*n)++;
    }
    closedir(d);
    if (nomem) {
        mdi_shard_names_free(*names, *n);
        *names = NULL;
        *n = 0;
        return mdi_errf(err, MDI_ERR_NOMEM, "%s: out of memory listing the directory", dir);
    }
    if (*n > 1)
        qsort(*names, *n, sizeof **names, cmp_names);
    return MDI_OK;
}

mdi_status mdi_shard_locate(const char *model_path, int32_t rank, char *out, size_t cap,
                            mdi_shard_info *info, mdi_err *err)
{
    struct stat sb;
    if (stat(model_path, &sb) != 0)
        return mdi_errf(err, MDI_ERR_IO, "%s: %s", model_path, strerror(errno));
    if (!S_ISDIR(sb.st_mode)) {
        snprintf(out, cap, "%s", model_path);
        return mdi_shard_probe(model_path, info, err);
    }
    char **names;
    size_t n;
    mdi_status s = mdi_shard_list(model_path, &names, &n, err);
    if (s)
        return s;
    /* Every *.h5 file is probed: the attributes, not the name, say which
     * shard a file is. Two files that claim this rank's index are an error
     * (a whole-model file left beside shards is shard 0 of 1, say), not a
     * choice by directory order. */
    const char *found = NULL, *twin = NULL;
    int32_t seen_count = 0; /* shard_count of another rank's shard */
    mdi_err probe_err;
    int probe_failed = 0;
    for (size_t i = 0; i < n; i++) {
        char path[4096];
        mdi_shard_info in;
        mdi_err e2;
        if ((size_t)snprintf(path, sizeof path, "%s/%s", model_path, names[i]) >= sizeof path)
            continue;
        if (mdi_shard_probe(path, &in, &e2) != MDI_OK) {
            if (!probe_failed++)
                probe_err = e2;
        } else if (in.shard_index != rank) {
            seen_count = in.shard_count;
        } else if (found) {
            twin = twin ? twin : names[i];
        } else {
            found = names[i];
            snprintf(out, cap, "%s", path);
            *info = in;
        }
    }
    if (twin)
        s = mdi_errf(err, MDI_ERR_MISMATCH,
                     "%s: %s and %s both claim shard index %d; keep one conversion's shards "
                     "in a directory",
                     model_path, found, twin, rank);
    else if (found)
        s = MDI_OK;
    else if (probe_failed) /* the unreadable file may be this rank's shard */
        s = mdi_errf(err, probe_err.status, "%s: no readable shard with index %d; %s", model_path,
                     rank, probe_err.msg);
    else if (seen_count > 0 && rank >= seen_count)
        s = mdi_errf(err, MDI_ERR_MISMATCH,
                     "%s holds a %d-way split but this is rank %d: run with -np %d or convert "
                     "again with --shards N",
                     model_path, seen_count, rank, seen_count);
    else
        s = mdi_errf(err, MDI_ERR_IO, "%s: no shard with index %d (*.h5) on this host", model_path,
                     rank);
    mdi_shard_names_free(names, n);
    return s;
}

int mdi_h5_missing_filter(hid_t pl, char *what, size_t cap)
{
    int nf = pl < 0 ? 0 : H5Pget_nfilters(pl);
    for (int i = 0; i < nf; i++) {
        unsigned flags = 0, conf;
        size_t nv = 0;
        char name[64] = "";
        H5Z_filter_t id =
            H5Pget_filter2(pl, (unsigned)i, &flags, &nv, NULL, sizeof name, name, &conf);
        if (id < 0 || (!(flags & H5Z_FLAG_OPTIONAL) && H5Zfilter_avail(id) <= 0)) {
            snprintf(what, cap, "HDF5 filter %d '%s'", (int)id, name);
            return 1;
        }
    }
    return 0;
}

/* Why dataset ds cannot be read, when the reason is a filter (a compressor
 * such as blosc or zstd, through a plugin) that this HDF5 library lacks:
 * into why (empty when all its filters are there). */
static void missing_filter(hid_t ds, char *why, size_t cap)
{
    hid_t pl = H5Dget_create_plist(ds);
    char what[96];
    why[0] = '\0';
    if (mdi_h5_missing_filter(pl, what, sizeof what))
        snprintf(why, cap, " (it needs %s, which this HDF5 library lacks)", what);
    if (pl >= 0)
        H5Pclose(pl);
}

/* Read dataset `name` (relative to loc) of shape (rows[, cols]) as float32 into dst. */
static mdi_status read_tensor(hid_t loc, const char *path, const char *name, size_t rows,
                              size_t cols, int is_matrix, float *dst, mdi_err *err)
{
    if (H5Lexists(loc, name, H5P_DEFAULT) <= 0)
        return mdi_errf(err, MDI_ERR_FORMAT, "%s: dataset '%s' is missing", path, name);
    mdi_status s = MDI_OK;
    hid_t ds = H5Dopen2(loc, name, H5P_DEFAULT);
    hid_t sp = ds < 0 ? -1 : H5Dget_space(ds);
    hid_t ty = ds < 0 ? -1 : H5Dget_type(ds);
    hsize_t dims[3] = {0, 0, 0};
    int nd = sp < 0 ? -1 : H5Sget_simple_extent_ndims(sp);
    if (ds < 0 || sp < 0 || ty < 0 || nd < 1 || nd > 2) {
        s = mdi_errf(err, MDI_ERR_FORMAT, "%s: dataset '%s' is unreadable or not 1-/2-D", path,
                     name);
        goto done;
    }
    H5Sget_simple_extent_dims(sp, dims, NULL);
    if (nd != (is_matrix ? 2 : 1) || dims[0] != rows || (is_matrix && dims[1] != cols)) {
        char has[48], want[48];
        if (nd == 2)
            snprintf(has, sizeof has, "(%llu, %llu)", (unsigned long long)dims[0],
                     (unsigned long long)dims[1]);
        else
            snprintf(has, sizeof has, "(%llu)", (unsigned long long)dims[0]);
        if (is_matrix)
            snprintf(want, sizeof want, "(%zu, %zu)", rows, cols);
        else
            snprintf(want, sizeof want, "(%zu)", rows);
        s = mdi_errf(err, MDI_ERR_FORMAT, "%s: dataset '%s' has shape %s, the attributes imply %s",
                     path, name, has, want);
        goto done;
    }
    if (H5Tget_class(ty) != H5T_FLOAT) {
        s = mdi_errf(err, MDI_ERR_FORMAT, "%s: dataset '%s' is not floating point", path, name);
        goto done;
    }
    if (h5_damaged_number(ty)) {
        s = mdi_errf(err, MDI_ERR_FORMAT, "%s: dataset '%s' has a damaged or unsupported type",
                     path, name);
        goto done;
    }
    if (H5Dread(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, dst) < 0) {
        char why[160];
        missing_filter(ds, why, sizeof why);
        s = mdi_errf(err, MDI_ERR_IO, "%s: reading dataset '%s' failed%s", path, name, why);
        goto done;
    }
    size_t n = rows * cols;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(dst[i])) {
            s = mdi_errf(err, MDI_ERR_FORMAT,
                         "%s: dataset '%s' holds a non-finite value (%g) "
                         "at element %zu",
                         path, name, (double)dst[i], i);
            break;
        }
    }
done:
    if (ty >= 0)
        H5Tclose(ty);
    if (sp >= 0)
        H5Sclose(sp);
    if (ds >= 0)
        H5Dclose(ds);
    return s;
}

/* Read one tensor kind into the stage (layer = global index for layer tensors). */
static mdi_status load_one(hid_t f, const char *path, mdi_stage *st, mdi_tensor_kind k,
                           int32_t layer, mdi_err *err)
{
    size_t rows, cols;
    char name[64];
    mdi_tensor_shape(&st->cfg, k, &rows, &cols);
    if (mdi_tensor_scope_of(k) == MDI_SCOPE_LAYER)
        snprintf(name, sizeof name, "/layers/%03d/%s", layer, mdi_tensor_name(k));
    else
        snprintf(name, sizeof name, "/%s", mdi_tensor_name(k));
    float *dst = mdi_stage_tensor(st, k, layer - mdi_stage_first_layer(st));
    if (H5Lexists(f, "/layers", H5P_DEFAULT) <= 0)
        return mdi_errf(err, MDI_ERR_FORMAT, "%s: group '/layers' is missing", path);
    if (mdi_tensor_scope_of(k) == MDI_SCOPE_LAYER) {
        char group[32];
        snprintf(group, sizeof group, "/layers/%03d", layer);
        if (H5Lexists(f, group, H5P_DEFAULT) <= 0)
            return mdi_errf(err, MDI_ERR_FORMAT, "%s: group '%s' is missing", path, group);
    }
    return read_tensor(f, path, name, rows, cols, mdi_tensor_is_matrix(k), dst, err);
}

/* Bytes of tensor k as the stage holds it (f32). */
static uint64_t tensor_bytes(const mdi_stage *st, mdi_tensor_kind k)
{
    size_t rows, cols;
    mdi_tensor_shape(&st->cfg, k, &rows, &cols);
    return (uint64_t)rows * (mdi_tensor_is_matrix(k) ? cols : 1) * sizeof(float);
}

/* Read the stage's tensors in file order, each layer's, then the extras,
 * telling progress the bytes loaded so far of mdi_stage_weight_bytes. */
static mdi_status load_tensors(hid_t f, const char *path, mdi_stage *st,
                               mdi_shard_progress_fn progress, void *ctx, mdi_err *err)
{
    int32_t first = mdi_stage_first_layer(st), last = first + mdi_stage_n_layers(st);
    uint64_t total = mdi_stage_weight_bytes(st), got = 0;
    mdi_status s = MDI_OK;
    for (int32_t l = first; l <= last && !s; l++) /* l == last: the extras */
        for (int k = 0; k < MDI_T_COUNT && !s; k++) {
            mdi_tensor_kind kind = (mdi_tensor_kind)k;
            int held = l < last
                           ? mdi_tensor_scope_of(kind) == MDI_SCOPE_LAYER &&
                                 mdi_stage_tensor(st, kind, l - first)
                           : st->p.has_extras && mdi_tensor_scope_of(kind) == MDI_SCOPE_EXTRA &&
                                 mdi_tensor_present(&st->cfg, kind);
            if (!held)
                continue;
            if ((s = load_one(f, path, st, kind, l < last ? l : 0, err)))
                break;
            got += tensor_bytes(st, kind);
            if (progress)
                progress(ctx, got, total);
        }
    return s;
}

mdi_status mdi_shard_load(const char *path, mdi_stage *st, mdi_shard_progress_fn progress,
                          void *ctx, mdi_err *err)
{
    hid_t f;
    mdi_shard_info in;
    mdi_status s = h5_open(path, &f, err);
    if (s)
        return s;
    if ((s = read_info(f, path, &in, err)))
        goto done;
    if (!mdi_config_equal(&in.cfg, &st->cfg)) {
        s = mdi_errf(err, MDI_ERR_MISMATCH, "%s: geometry differs from the model's", path);
        goto done;
    }
    if (st->p.half_first < in.half_first || st->p.half_last > in.half_last) {
        char has[96], needs[96];
        mdi_plan_describe(in.half_first, in.half_last, has, sizeof has);
        mdi_plan_describe(st->p.half_first, st->p.half_last, needs, sizeof needs);
        s = mdi_errf(err, MDI_ERR_MISMATCH, "%s: holds %s but this rank needs %s", path, has,
                     needs);
        goto done;
    }
    s = load_tensors(f, path, st, progress, ctx, err);
done:
    H5Fclose(f);
    return s;
}

/* Read a 1-D dataset of n (<= max_n) elements of mem_type under the tokenizer group. */
static mdi_status read_vec(hid_t g, const char *path, const char *name, hid_t mem_type,
                           hsize_t max_n, hsize_t *n, void **out, size_t elem, mdi_err *err)
{
    if (H5Lexists(g, name, H5P_DEFAULT) <= 0)
        return mdi_errf(err, MDI_ERR_FORMAT, "%s: dataset '/tokenizer/%s' is missing", path, name);
    mdi_status s = MDI_OK;
    hid_t ds = H5Dopen2(g, name, H5P_DEFAULT);
    hid_t sp = ds < 0 ? -1 : H5Dget_space(ds), ty = ds < 0 ? -1 : H5Dget_type(ds);
    if (sp < 0 || H5Sget_simple_extent_ndims(sp) != 1) {
        s = mdi_errf(err, MDI_ERR_FORMAT, "%s: '/tokenizer/%s' is not 1-D", path, name);
        goto done;
    }
    if (h5_damaged_number(ty)) {
        s = mdi_errf(err, MDI_ERR_FORMAT,
                     "%s: '/tokenizer/%s' has a damaged or unsupported number type", path, name);
        goto done;
    }
    H5Sget_simple_extent_dims(sp, n, NULL);
    if (*n > max_n) { /* a shape that lies must not become a huge allocation */
        s = mdi_errf(err, MDI_ERR_FORMAT, "%s: '/tokenizer/%s' has %llu elements, more than %llu",
                     path, name, (unsigned long long)*n, (unsigned long long)max_n);
        goto done;
    }
    if (!(*out = malloc((size_t)(*n ? *n : 1) * elem)) ||
        H5Dread(ds, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, *out) < 0) {
        char why[160];
        missing_filter(ds, why, sizeof why);
        s = mdi_errf(err, MDI_ERR_FORMAT, "%s: cannot read '/tokenizer/%s'%s", path, name, why);
    }
done:
    if (ty >= 0)
        H5Tclose(ty);
    if (sp >= 0)
        H5Sclose(sp);
    if (ds >= 0)
        H5Dclose(ds);
    return s;
}

mdi_status mdi_shard_load_vocab(const char *path, mdi_vocab *v, mdi_err *err)
{
    hid_t f, g = -1;
    mdi_status s = h5_open(path, &f, err);
    if (s)
        return s;
    hsize_t nb = 0, no = 0, ns = 0, nt = 0;
    memset(v, 0, sizeof *v);
    if (H5Lexists(f, "/tokenizer", H5P_DEFAULT) <= 0 ||
        (g = H5Gopen2(f, "/tokenizer", H5P_DEFAULT)) < 0) {
        s = mdi_errf(err, MDI_ERR_FORMAT, "%s: group '/tokenizer' is missing", path);
        goto done;
    }
    const hsize_t max_n = (hsize_t)MDI_MAX_VOCAB + 1, max_bytes = (hsize_t)MDI_MAX_VOCAB * 64;
    if ((s = read_vec(g, path, "bytes", H5T_NATIVE_UINT8, max_bytes, &nb, (void **)&v->bytes, 1,
                      err)) ||
        (s = read_vec(g, path, "offsets", H5T_NATIVE_UINT64, max_n, &no, (void **)&v->offsets, 8,
                      err)) ||
        (s = read_vec(g, path, "scores", H5T_NATIVE_FLOAT, max_n, &ns, (void **)&v->scores, 4,
                      err)) ||
        (s = read_vec(g, path, "types", H5T_NATIVE_INT32, max_n, &nt, (void **)&v->types, 4,
                      err)) ||
        (s = attr_int(g, path, "bos_id", &v->bos_id, err)) ||
        (s = attr_int(g, path, "eos_id", &v->eos_id, err)) ||
        (s = attr_int(g, path, "unk_id", &v->unk_id, err)) ||
        (s = attr_int(g, path, "add_dummy_prefix", &v->add_dummy_prefix, err)))
        goto done;
    if (no < 1 || ns != no - 1 || nt != ns || ns > (hsize_t)INT32_MAX || v->offsets[no - 1] != nb) {
        s = mdi_errf(err, MDI_ERR_FORMAT, "%s: tokenizer arrays disagree in length", path);
        goto done;
    }
    v->n = (int32_t)ns;
    mdi_err e2;
    int32_t vocab_size = 0;
    if (mdi_vocab_validate(v, &e2))
        s = mdi_errf(err, MDI_ERR_FORMAT, "%s: tokenizer: %s", path, e2.msg);
    else if (!(s = attr_int(f, path, "vocab_size", &vocab_size, err)) && v->n > vocab_size)
        s = mdi_errf(err, MDI_ERR_FORMAT, /* its ids would index past the embedding */
                     "%s: tokenizer has %d pieces, more than vocab_size %d", path, v->n,
                     vocab_size);
done:
    if (s)
        mdi_vocab_free(v);
    if (g >= 0)
        H5Gclose(g);
    H5Fclose(f);
    return s;
}

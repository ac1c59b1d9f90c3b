/* mdi-convert --inspect: read a model file's attributes and datasets with
 * HDF5 directly, validate them against docs/FORMAT.md, and print a summary. */
#include "inspect.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <hdf5.h>

#include "mdi/model_config.h"
#include "mdi/plan.h"
#include "mdi/shard_loader.h"
#include "h5check.h"

#define IN_FORMAT_VERSION 2
#define IN_PATH_MAX 4096
#define IN_DESCRIBE_MAX 128

/* What one file says about itself. */
typedef struct in_info {
    mdi_config cfg;
    char model_id[32], dtype[8], rope_layout[16];
    int32_t version, first, last, index, count;
    int32_t hfirst, hlast;           /* half-layers [hfirst, hlast) held */
    int32_t n_pieces, bos, eos, unk; /* n_pieces -1: no tokenizer group */
    size_t n_datasets, n_chunked;    /* n_chunked: not contiguous, or filtered (as h5repack may) */
    uint64_t bytes;                  /* bytes of every dataset's data, as stored uncompressed */
    int foreign; /* with an error: not an mdi-llm file at all (not HDF5, another format) */
} in_info;

/* Open attribute name of loc, checking it is a scalar of class cls. */
static hid_t open_attr(hid_t loc, const char *name, H5T_class_t cls, const char *path, mdi_err *err)
{
    if (H5Aexists(loc, name) <= 0) {
        mdi_errf(err, MDI_ERR_FORMAT, "%s: attribute %s is missing", path, name);
        return -1;
    }
    hid_t a = H5Aopen(loc, name, H5P_DEFAULT);
    if (a < 0) {
        mdi_errf(err, MDI_ERR_FORMAT, "%s: cannot open attribute %s", path, name);
        return -1;
    }
    hid_t t = H5Aget_type(a), sp = H5Aget_space(a);
    int ok = t >= 0 && sp >= 0 && H5Tget_class(t) == cls && H5Sget_simple_extent_npoints(sp) == 1;
    if (ok && cls == H5T_STRING)
        ok = H5Tis_variable_str(t) == 0;
    int damaged = ok && cls != H5T_STRING && !mdi_h5_number_type_ok(t);
    if (sp >= 0)
        H5Sclose(sp);
    if (t >= 0)
        H5Tclose(t);
    if (!ok || damaged) {
        H5Aclose(a);
        mdi_errf(err, MDI_ERR_FORMAT, "%s: attribute %s has %s", path, name,
                 damaged ? "a damaged or unsupported number type" : "the wrong type or shape");
        return -1;
    }
    return a;
}

/* A one-element attribute of class cls, read as the memory type mem into v. */
static mdi_status read_scalar(hid_t loc, const char *name, H5T_class_t cls, hid_t mem, void *v,
                              const char *path, mdi_err *err)
{
    hid_t a = open_attr(loc, name, cls, path, err);
    if (a < 0)
        return MDI_ERR_FORMAT;
    herr_t r = H5Aread(a, mem, v);
    H5Aclose(a);
    return r < 0 ? mdi_errf(err, MDI_ERR_FORMAT, "%s: cannot read attribute %s", path, name)
                 : MDI_OK;
}

static mdi_status read_int(hid_t loc, const char *name, int32_t *v, const char *path, mdi_err *err)
{
    return read_scalar(loc, name, H5T_INTEGER, H5T_NATIVE_INT32, v, path, err);
}

static mdi_status read_float(hid_t loc, const char *name, float *v, const char *path, mdi_err *err)
{
    return read_scalar(loc, name, H5T_FLOAT, H5T_NATIVE_FLOAT, v, path, err);
}

/* Fixed-length string attribute into buf (cap bytes, always terminated). */
static mdi_status read_str(hid_t loc, const char *name, char *buf, size_t cap, const char *path,
                           mdi_err *err)
{
    mdi_status s = MDI_OK;
    hid_t a = open_attr(loc, name, H5T_STRING, path, err), ft = -1, mt = -1;
    if (a < 0)
        return MDI_ERR_FORMAT;
    if ((ft = H5Aget_type(a)) < 0 || (mt = H5Tcopy(ft)) < 0) {
        s = mdi_errf(err, MDI_ERR_FORMAT, "%s: cannot read the type of attribute %s", path, name);
        goto done;
    }
    size_t size = H5Tget_size(ft);
    if (size == 0 || size >= cap) {
        s = mdi_errf(err, MDI_ERR_FORMAT, "%s: attribute %s is %zu bytes long (at most %zu)", path,
                     name, size, cap - 1);
        goto done;
    }
    memset(buf, 0, cap);
    if (H5Aread(a, mt, buf) < 0)
        s = mdi_errf(err, MDI_ERR_FORMAT, "%s: cannot read attribute %s", path, name);
done:
    if (mt >= 0)
        H5Tclose(mt);
    if (ft >= 0)
        H5Tclose(ft);
    H5Aclose(a);
    return s;
}

/* format, format_version: the first checks, with a message fit for a foreign file. */
static mdi_status read_format(hid_t f, in_info *in, const char *path, mdi_err *err)
{
    char fmt[64];
    in->foreign = 1; /* until the format says mdi-llm */
    if (H5Aexists(f, "format") <= 0)
        return mdi_errf(err, MDI_ERR_FORMAT,
                        "%s is an HDF5 file but not an mdi-llm model (no 'format' attribute)",
                        path);
    if (read_str(f, "format", fmt, sizeof fmt, path, err))
        return MDI_ERR_FORMAT;
    if (strcmp(fmt, "mdi-llm") != 0)
        return mdi_errf(err, MDI_ERR_FORMAT, "%s: format is '%s', expected 'mdi-llm'", path, fmt);
    in->foreign = 0;
    if (read_int(f, "format_version", &in->version, path, err))
        return MDI_ERR_FORMAT;
    if (in->version < 1 || in->version > IN_FORMAT_VERSION)
        return mdi_errf(err, MDI_ERR_FORMAT,
                        "%s: format_version %d is not supported (this tool knows version %d)", path,
                        (int)in->version, IN_FORMAT_VERSION);
    return MDI_OK;
}

/* half_first, half_last: read in version 2, whole layers in version 1 (which
 * may carry them too, for whole layers only); checked against layer_first/last. */
static mdi_status read_halves(hid_t f, in_info *in, const char *path, mdi_err *err)
{
    mdi_status s;
    in->hfirst = 2 * in->first;
    in->hlast = 2 * in->last;
    if ((in->version >= 2 || H5Aexists(f, "half_first") > 0 || H5Aexists(f, "half_last") > 0) &&
        ((s = read_int(f, "half_first", &in->hfirst, path, err)) ||
         (s = read_int(f, "half_last", &in->hlast, path, err))))
        return s;
    if (in->hfirst < 0 || in->hfirst >= in->hlast || in->hfirst / 2 != in->first ||
        (in->hlast + 1) / 2 != in->last)
        return mdi_errf(err, MDI_ERR_FORMAT,
                        "%s: half-layer range [%d, %d) disagrees with layer range [%d, %d)", path,
                        (int)in->hfirst, (int)in->hlast, (int)in->first, (int)in->last);
    if (in->version < 2 && (in->hfirst % 2 || in->hlast % 2))
        return mdi_errf(err, MDI_ERR_FORMAT,
                        "%s: half-layer range [%d, %d) splits a layer, which format_version %d "
                        "cannot hold (version 2 can)",
                        path, (int)in->hfirst, (int)in->hlast, (int)in->version);
    return MDI_OK;
}

/* Every root attribute, then the consistency checks between them. */
static mdi_status read_root(hid_t f, in_info *in, const char *path, mdi_err *err)
{
    mdi_config *c = &in->cfg;
    mdi_status s;
    if ((s = read_format(f, in, path, err)) ||
        (s = read_str(f, "model_id", in->model_id, sizeof in->model_id, path, err)) ||
        (s = read_int(f, "dim", &c->dim, path, err)) ||
        (s = read_int(f, "hidden_dim", &c->hidden_dim, path, err)) ||
        (s = read_int(f, "n_layers", &c->n_layers, path, err)) ||
        (s = read_int(f, "n_heads", &c->n_heads, path, err)) ||
        (s = read_int(f, "n_kv_heads", &c->n_kv_heads, path, err)) ||
        (s = read_int(f, "head_dim", &c->head_dim, path, err)) ||
        (s = read_int(f, "vocab_size", &c->vocab_size, path, err)) ||
        (s = read_int(f, "max_seq_len", &c->max_seq_len, path, err)) ||
        (s = read_float(f, "rope_theta", &c->rope_theta, path, err)) ||
        (s = read_float(f, "norm_eps", &c->norm_eps, path, err)) ||
        (s = read_int(f, "tied_head", &c->tied_head, path, err)) ||
        (s = read_str(f, "rope_layout", in->rope_layout, sizeof in->rope_layout, path, err)) ||
        (s = read_int(f, "layer_first", &in->first, path, err)) ||
        (s = read_int(f, "layer_last", &in->last, path, err)) ||
        (s = read_int(f, "shard_index", &in->index, path, err)) ||
        (s = read_int(f, "shard_count", &in->count, path, err)) ||
        (s = read_str(f, "dtype", in->dtype, sizeof in->dtype, path, err)))
        return s;
    if ((s = mdi_config_validate(c, err))) {
        char msg[MDI_ERR_MSG_MAX];
        snprintf(msg, sizeof msg, "%s", err ? err->msg : "");
        return mdi_errf(err, MDI_ERR_FORMAT, "%s: %s", path, msg);
    }
    if (strlen(in->model_id) != 16 || strspn(in->model_id, "0123456789abcdef") != 16)
        return mdi_errf(err, MDI_ERR_FORMAT, "%s: model_id '%s' is not 16 hex digits", path,
                        in->model_id);
    if (strcmp(in->rope_layout, "interleaved") != 0)
        return mdi_errf(err, MDI_ERR_FORMAT, "%s: rope_layout '%s' is not 'interleaved'", path,
                        in->rope_layout);
    if (strcmp(in->dtype, "f32") && strcmp(in->dtype, "f16") && strcmp(in->dtype, "bf16"))
        return mdi_errf(err, MDI_ERR_FORMAT, "%s: dtype '%s' is not f32, f16 or bf16", path,
                        in->dtype);
    if (in->first < 0 || in->first >= in->last || in->last > c->n_layers)
        return mdi_errf(err, MDI_ERR_FORMAT, "%s: layer range [%d, %d) is not inside [0, %d)", path,
                        (int)in->first, (int)in->last, (int)c->n_layers);
    if ((s = read_halves(f, in, path, err)))
        return s;
    if (in->count < 1 || in->index < 0 || in->index >= in->count)
        return mdi_errf(err, MDI_ERR_FORMAT, "%s: shard_index %d / shard_count %d is invalid", path,
                        (int)in->index, (int)in->count);
    return MDI_OK;
}

/* Check dataset `name` under loc: shape and float type of 4 (or 2, for
 * matrices) bytes; count its bytes, and whether it is chunked or filtered
 * (mdi-convert writes contiguous datasets; HDF5 reads either). */
static mdi_status check_dataset(hid_t loc, const char *name, int rank, const hsize_t *dims,
                                int allow16, in_info *in, const char *path, mdi_err *err)
{
    hsize_t got[2] = {0, 0};
    mdi_status s = MDI_OK;
    if (H5Lexists(loc, name, H5P_DEFAULT) <= 0)
        return mdi_errf(err, MDI_ERR_FORMAT, "%s: dataset %s is missing", path, name);
    hid_t d = H5Dopen2(loc, name, H5P_DEFAULT);
    if (d < 0)
        return mdi_errf(err, MDI_ERR_FORMAT, "%s: %s is not a dataset", path, name);
    hid_t sp = H5Dget_space(d), t = H5Dget_type(d), pl = H5Dget_create_plist(d);
    if (sp < 0 || t < 0 || pl < 0) {
        s = mdi_errf(err, MDI_ERR_FORMAT, "%s: cannot query dataset %s", path, name);
        goto done;
    }
    if (H5Sget_simple_extent_ndims(sp) != rank || H5Sget_simple_extent_dims(sp, got, NULL) < 0 ||
        got[0] != dims[0] || (rank == 2 && got[1] != dims[1])) {
        s = mdi_errf(err, MDI_ERR_FORMAT, "%s: dataset %s has the wrong shape", path, name);
        goto done;
    }
    size_t size = H5Tget_size(t);
    if (H5Tget_class(t) != H5T_FLOAT || !(size == 4 || (allow16 && size == 2))) {
        s = mdi_errf(err, MDI_ERR_FORMAT, "%s: dataset %s has type class %d size %zu", path, name,
                     (int)H5Tget_class(t), size);
        goto done;
    }
    if (!mdi_h5_number_type_ok(t)) {
        s = mdi_errf(err, MDI_ERR_FORMAT, "%s: dataset %s has a damaged or unsupported type", path,
                     name);
        goto done;
    }
    char what[96];
    if (mdi_h5_missing_filter(pl, what, sizeof what)) { /* a filter plugin that is not here */
        s = mdi_errf(err, MDI_ERR_UNSUPPORTED,
                     "%s: dataset %s needs %s, which this HDF5 library lacks (mdi-llm could not "
                     "read it)",
                     path, name, what);
        goto done;
    }
    in->n_chunked += H5Pget_layout(pl) != H5D_CONTIGUOUS; /* filters need chunks */
    in->bytes += (uint64_t)dims[0] * (rank == 2 ? dims[1] : 1) * size;
    in->n_datasets++;
done:
    if (pl >= 0)
        H5Pclose(pl);
    if (t >= 0)
        H5Tclose(t);
    if (sp >= 0)
        H5Sclose(sp);
    H5Dclose(d);
    return s;
}

/* Check tensor kind exists under loc (a path prefix like "/layers/003/") with its shape. */
static mdi_status check_tensor(hid_t f, const char *prefix, mdi_tensor_kind k, in_info *in,
                               const char *path, mdi_err *err)
{
    char name[64];
    size_t rows, cols;
    mdi_tensor_shape(&in->cfg, k, &rows, &cols);
    hsize_t dims[2] = {(hsize_t)rows, (hsize_t)cols};
    int matrix = mdi_tensor_is_matrix(k);
    snprintf(name, sizeof name, "%s%s", prefix, mdi_tensor_name(k));
    return check_dataset(f, name, matrix ? 2 : 1, dims, matrix, in, path, err);
}

/* Tokenizer group: piece count and ids (layer-0 shard only). */
static mdi_status check_tokenizer(hid_t f, in_info *in, const char *path, mdi_err *err)
{
    in->n_pieces = -1;
    int has = H5Lexists(f, "tokenizer", H5P_DEFAULT) > 0;
    if (has && in->hfirst != 0)
        return mdi_errf(err, MDI_ERR_FORMAT, "%s: /tokenizer present outside the layer-0 shard",
                        path);
    if (!has)
        return MDI_OK;
    hid_t d = H5Dopen2(f, "tokenizer/scores", H5P_DEFAULT);
    if (d < 0)
        return mdi_errf(err, MDI_ERR_FORMAT, "%s: /tokenizer/scores is missing", path);
    hid_t sp = H5Dget_space(d);
    hsize_t n = 0;
    int ok = sp >= 0 && H5Sget_simple_extent_ndims(sp) == 1 &&
             H5Sget_simple_extent_dims(sp, &n, NULL) >= 0;
    if (sp >= 0)
        H5Sclose(sp);
    H5Dclose(d);
    if (!ok || n > (hsize_t)in->cfg.vocab_size)
        return mdi_errf(err, MDI_ERR_FORMAT, "%s: /tokenizer/scores has a bad shape", path);
    in->n_pieces = (int32_t)n;
    hid_t g = H5Gopen2(f, "tokenizer", H5P_DEFAULT);
    if (g < 0)
        return mdi_errf(err, MDI_ERR_FORMAT, "%s: cannot open group /tokenizer", path);
    mdi_status s;
    if (!(s = read_int(g, "bos_id", &in->bos, path, err)) &&
        !(s = read_int(g, "eos_id", &in->eos, path, err)))
        s = read_int(g, "unk_id", &in->unk, path, err);
    H5Gclose(g);
    return s;
}

/* Group /layers/NNN of layer l: exactly the datasets of the halves held. */
static mdi_status check_layer(hid_t f, int32_t l, in_info *in, const char *path, mdi_err *err)
{
    char prefix[48], group[32], name[64], held[IN_DESCRIBE_MAX];
    mdi_status s;
    snprintf(group, sizeof group, "/layers/%03d", (int)l);
    snprintf(prefix, sizeof prefix, "%s/", group);
    if (H5Lexists(f, group, H5P_DEFAULT) <= 0)
        return mdi_errf(err, MDI_ERR_FORMAT, "%s: group %s is missing", path, group);
    for (int k = 0; k < MDI_T_COUNT; k++) {
        int half = mdi_tensor_half((mdi_tensor_kind)k);
        if (half < 0)
            continue;
        if (2 * l + half >= in->hfirst && 2 * l + half < in->hlast) {
            if ((s = check_tensor(f, prefix, (mdi_tensor_kind)k, in, path, err)))
                return s;
            continue;
        }
        snprintf(name, sizeof name, "%s%s", prefix, mdi_tensor_name((mdi_tensor_kind)k));
        if (H5Lexists(f, name, H5P_DEFAULT) > 0) {
            mdi_plan_describe(in->hfirst, in->hlast, held, sizeof held);
            return mdi_errf(err, MDI_ERR_FORMAT,
                            "%s: %s should not be in this file, which holds %s", path, name, held);
        }
    }
    return MDI_OK;
}

/* Every dataset this file must hold, given its half-layer range. */
static mdi_status check_tensors(hid_t f, in_info *in, const char *path, mdi_err *err)
{
    mdi_status s;
    H5G_info_t info;
    for (int k = 0; k < MDI_T_COUNT; k++) {
        mdi_tensor_kind kind = (mdi_tensor_kind)k;
        if (mdi_tensor_scope_of(kind) != MDI_SCOPE_EXTRA)
            continue;
        int want = in->hfirst == 0 && mdi_tensor_present(&in->cfg, kind);
        if (want && (s = check_tensor(f, "/", kind, in, path, err)))
            return s;
        if (!want && H5Lexists(f, mdi_tensor_name(kind), H5P_DEFAULT) > 0)
            return mdi_errf(err, MDI_ERR_FORMAT, "%s: /%s should not be in this file", path,
                            mdi_tensor_name(kind));
    }
    if (H5Lexists(f, "layers", H5P_DEFAULT) <= 0)
        return mdi_errf(err, MDI_ERR_FORMAT, "%s: group /layers is missing", path);
    for (int32_t l = in->first; l < in->last; l++)
        if ((s = check_layer(f, l, in, path, err)))
            return s;
    if (H5Gget_info_by_name(f, "layers", &info, H5P_DEFAULT) < 0)
        return mdi_errf(err, MDI_ERR_FORMAT, "%s: cannot list group /layers", path);
    if (info.nlinks != (hsize_t)(in->last - in->first))
        return mdi_errf(err, MDI_ERR_FORMAT,
                        "%s: group /layers has %llu members, expected the %d groups of layers "
                        "[%d, %d)",
                        path, (unsigned long long)info.nlinks, (int)(in->last - in->first),
                        (int)in->first, (int)in->last);
    return check_tokenizer(f, in, path, err);
}

/* Open, read and validate one file into in. */
static mdi_status inspect_file(const char *path, in_info *in, mdi_err *err)
{
    struct stat st;
    memset(in, 0, sizeof *in);
    in->foreign = 1;
    if (stat(path, &st) != 0)
        return mdi_errf(err, MDI_ERR_IO, "%s: %s", path, strerror(errno));
    if (!S_ISREG(st.st_mode))
        return mdi_errf(err, MDI_ERR_FORMAT, "%s is not a regular file", path);
    if (H5Fis_hdf5(path) <= 0)
        return mdi_errf(err, MDI_ERR_FORMAT, "%s is not an HDF5 file (not an mdi-llm model)", path);
    in->foreign = 0;
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    mdi_status s = f < 0 ? mdi_h5_truncated(path, err) : MDI_OK;
    if (s != MDI_OK)
        return s;
    if (f < 0)
        return mdi_errf(err, MDI_ERR_IO, "%s: HDF5 cannot open the file", path);
    s = read_root(f, in, path, err);
    if (!s)
        s = check_tensors(f, in, path, err);
    H5Fclose(f);
    return s;
}

/* inspect_file in a child process. libhdf5 itself can crash on a damaged
 * file: one bad byte in an object header (H5Aexists, parsing attribute
 * messages) or in a type the checks above do not reach, and --inspect is
 * the tool people run on files they doubt. The child sends its result back
 * through a pipe; a child that ends without sending it was killed by what
 * it read, and that is the file's fault. Without a pipe or a process, the
 * check runs here, unprotected. */
static mdi_status inspect_file_isolated(const char *path, in_info *in, mdi_err *err)
{
    struct {
        mdi_status s;
        in_info in;
        mdi_err err;
    } r;
    int fd[2];
    if (pipe(fd) != 0)
        return inspect_file(path, in, err);
    fflush(NULL); /* nothing buffered is written twice */
    pid_t pid = fork();
    if (pid < 0) {
        close(fd[0]);
        close(fd[1]);
        return inspect_file(path, in, err);
    }
    if (pid == 0) {
        close(fd[0]);
        memset(&r, 0, sizeof r);
        r.s = inspect_file(path, &r.in, &r.err);
        const char *p = (const char *)&r;
        for (size_t left = sizeof r; left > 0;) {
            ssize_t k = write(fd[1], p, left);
            if (k < 0 && errno == EINTR)
                continue;
            if (k <= 0)
                _exit(1);
            p += k;
            left -= (size_t)k;
        }
        _exit(0); /* not exit: the parent owns stdio's buffers and HDF5's files */
    }
    close(fd[1]);
    size_t got = 0;
    while (got < sizeof r) {
        ssize_t k = read(fd[0], (char *)&r + got, sizeof r - got);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            break;
        got += (size_t)k;
    }
    close(fd[0]);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    memset(in, 0, sizeof *in);
    if (got == sizeof r && WIFEXITED(status) && WEXITSTATUS(status) == 0) {
        *in = r.in;
        if (err)
            *err = r.err;
        return r.s;
    }
    if (WIFSIGNALED(status))
        return mdi_errf(err, MDI_ERR_FORMAT,
                        "%s is damaged: the HDF5 library crashed reading it (signal %d)", path,
                        WTERMSIG(status));
    return mdi_errf(err, MDI_ERR_FORMAT, "%s is damaged: the HDF5 library failed reading it", path);
}

static void print_info(FILE *out, const char *path, const in_info *in)
{
    const mdi_config *c = &in->cfg;
    fprintf(out, "file         %s\n", path);
    fprintf(out, "format       mdi-llm, version %d\n", (int)in->version);
    fprintf(out, "model_id     %s\n", in->model_id);
    fprintf(out,
            "geometry     dim %d, hidden_dim %d, n_layers %d, n_heads %d, n_kv_heads %d, "
            "head_dim %d\n",
            (int)c->dim, (int)c->hidden_dim, (int)c->n_layers, (int)c->n_heads, (int)c->n_kv_heads,
            (int)c->head_dim);
    fprintf(out, "vocab        vocab_size %d, max_seq_len %d, tied_head %d\n", (int)c->vocab_size,
            (int)c->max_seq_len, (int)c->tied_head);
    fprintf(out, "rope         %s, theta %g; norm_eps %g\n", in->rope_layout, (double)c->rope_theta,
            (double)c->norm_eps);
    fprintf(out, "dtype        %s\n", in->dtype);
    if (in->hfirst % 2 == 0 && in->hlast % 2 == 0) {
        fprintf(out, "layers       [%d, %d) (%d of %d)\n", (int)in->first, (int)in->last,
                (int)(in->last - in->first), (int)c->n_layers);
    } else {
        char held[IN_DESCRIBE_MAX];
        mdi_plan_describe(in->hfirst, in->hlast, held, sizeof held);
        fprintf(out, "layers       half-layers [%d, %d): %s (%g of %d)\n", (int)in->hfirst,
                (int)in->hlast, held, (in->hlast - in->hfirst) / 2.0, (int)c->n_layers);
    }
    fprintf(out, "shard        %d of %d\n", (int)in->index, (int)in->count);
    if (in->n_pieces >= 0)
        fprintf(out, "tokenizer    %d pieces (bos %d, eos %d, unk %d)\n", (int)in->n_pieces,
                (int)in->bos, (int)in->eos, (int)in->unk);
    else
        fprintf(out, "tokenizer    %s\n", in->hfirst == 0 ? "none" : "(in the layer-0 shard)");
    fprintf(out, "tensors      %zu datasets, %llu bytes\n", in->n_datasets,
            (unsigned long long)in->bytes);
    if (in->n_chunked)
        fprintf(out,
                "layout       %zu dataset%s not contiguous (chunked, compressed or compact: "
                "readable; mdi-convert writes contiguous ones, which load faster)\n",
                in->n_chunked, in->n_chunked == 1 ? "" : "s");
}

/* A file of a directory and what it says of itself. */
typedef struct in_entry {
    const char *name;
    in_info info;
    char why[MDI_ERR_MSG_MAX]; /* info.foreign: why it is passed over */
} in_entry;

/* Entry i (in shard_index order) must be shard i of the same count as
 * entry 0, and continue entry i-1's conversion half-layer for half-layer. */
static mdi_status check_sequence(const char *dir, const in_entry *e, size_t i, mdi_err *err)
{
    char what[IN_DESCRIBE_MAX];
    const in_info *cur = &e[i].info, *prev = i ? &e[i - 1].info : NULL;
    if (cur->count != e[0].info.count)
        return mdi_errf(err, MDI_ERR_FORMAT,
                        "%s: %s is shard %d of %d but %s is shard %d of %d (shards of two "
                        "conversions?)",
                        dir, e[0].name, (int)e[0].info.index, (int)e[0].info.count, e[i].name,
                        (int)cur->index, (int)cur->count);
    if (cur->index != (int32_t)i) /* indices are sorted and distinct: shard i is missing */
        return mdi_errf(err, MDI_ERR_FORMAT, "%s: no file is shard %zu of %d (%s is shard %d)", dir,
                        i, (int)cur->count, e[i].name, (int)cur->index);
    if (i == 0) {
        if (cur->hfirst == 0)
            return MDI_OK;
        mdi_plan_describe(0, cur->hfirst, what, sizeof what);
        return mdi_errf(err, MDI_ERR_FORMAT, "%s: no shard holds %s (shard 0 starts after it)", dir,
                        what);
    }
    if (strcmp(prev->model_id, cur->model_id) || !mdi_config_equal(&prev->cfg, &cur->cfg))
        return mdi_errf(err, MDI_ERR_FORMAT,
                        "%s: %s (shard %zu) comes from a different model than %s", dir, e[i].name,
                        i, e[i - 1].name);
    if (cur->hfirst > prev->hlast) {
        mdi_plan_describe(prev->hlast, cur->hfirst, what, sizeof what);
        return mdi_errf(err, MDI_ERR_FORMAT,
                        "%s: no shard holds %s (a gap between shards %zu and %zu)", dir, what,
                        i - 1, i);
    }
    if (cur->hfirst < prev->hlast) {
        mdi_plan_describe(cur->hfirst, prev->hlast, what, sizeof what);
        return mdi_errf(err, MDI_ERR_FORMAT, "%s: shards %zu and %zu both hold %s (an overlap)",
                        dir, i - 1, i, what);
    }
    return MDI_OK;
}

static int cmp_entries(const void *a, const void *b)
{
    const in_entry *x = a, *y = b;
    if (x->info.index != y->info.index)
        return x->info.index < y->info.index ? -1 : 1;
    return strcmp(x->name, y->name);
}

/* Every shard of a directory, in shard_index order, then the coverage check. */
static mdi_status inspect_dir(const char *dir, FILE *out, mdi_err *err)
{
    char **names = NULL, path[IN_PATH_MAX];
    size_t n = 0, m = 0, n_skip = 0; /* m mdi-llm files from e[0]; the skipped from e[n - 1] down */
    in_entry *e = NULL;
    uint64_t total = 0;
    mdi_status s = mdi_shard_list(dir, &names, &n, err); /* as the engine reads them */
    if (!s && n == 0)
        s = mdi_errf(err, MDI_ERR_FORMAT, "%s holds no *.h5 shard files", dir);
    if (!s && !(e = calloc(n, sizeof *e)))
        s = mdi_errf(err, MDI_ERR_NOMEM, "%s: out of memory for %zu shards", dir, n);
    /* Other *.h5 files (not HDF5, another format) are passed over and listed,
     * as the engine passes them over; an mdi-llm file with a fault fails. */
    for (size_t i = 0; i < n && !s; i++) {
        in_entry *x = &e[m];
        mdi_err fe;
        x->name = names[i];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        if ((s = inspect_file_isolated(path, &x->info, &fe)) == MDI_OK) {
            m++;
        } else if (x->info.foreign) {
            snprintf(e[n - 1 - n_skip].why, sizeof x->why, "%s", fe.msg);
            n_skip++;
            s = MDI_OK;
        } else {
            *err = fe;
        }
    }
    if (!s && m == 0)
        s = mdi_errf(err, MDI_ERR_FORMAT, "%s holds no mdi-llm shard files; %s", dir, e[n - 1].why);
    if (!s)
        qsort(e, m, sizeof *e, cmp_entries);
    for (size_t i = 1; i < m && !s; i++)
        if (e[i].info.index == e[i - 1].info.index)
            s = mdi_errf(err, MDI_ERR_FORMAT,
                         "%s: %s and %s both claim shard index %d; keep one conversion's shards "
                         "in a directory",
                         dir, e[i - 1].name, e[i].name, (int)e[i].info.index);
    for (size_t i = 0; i < m && !s; i++) {
        if ((s = check_sequence(dir, e, i, err)))
            break;
        if (i > 0)
            fputc('\n', out);
        snprintf(path, sizeof path, "%s/%s", dir, e[i].name);
        print_info(out, path, &e[i].info);
        total += e[i].info.bytes;
    }
    const in_info *last = !s ? &e[m - 1].info : NULL;
    if (last && (size_t)last->count > m)
        s = mdi_errf(err, MDI_ERR_FORMAT, "%s: no file is shard %zu of %d (the last found is %s)",
                     dir, m, (int)last->count, e[m - 1].name);
    else if (last && last->hlast != 2 * last->cfg.n_layers) {
        char what[IN_DESCRIBE_MAX];
        mdi_plan_describe(last->hlast, 2 * last->cfg.n_layers, what, sizeof what);
        s = mdi_errf(err, MDI_ERR_FORMAT, "%s: no shard holds %s (the shards stop short)", dir,
                     what);
    }
    if (s && m > 0 && n_skip) { /* the shard that is missing may be a damaged file */
        char msg[MDI_ERR_MSG_MAX];
        snprintf(msg, sizeof msg, "%s", err->msg);
        mdi_errf(err, s, "%s; passed over: %s", msg, e[n - 1].why);
    }
    for (size_t k = 0; !s && k < n_skip; k++)
        fprintf(out, "%sskipped      %s\n", k ? "" : "\n", e[n - 1 - k].why);
    if (!s)
        fprintf(out, "\n%s: %zu shards, layers [0, %d), model_id %s, %llu tensor bytes: ok\n", dir,
                m, (int)last->cfg.n_layers, last->model_id, (unsigned long long)total);
    free(e);
    mdi_shard_names_free(names, n);
    return s;
}

mdi_status cv_inspect(const char *path, FILE *out, mdi_err *err)
{
    struct stat st;
    in_info in;
    if (!path || !out)
        return mdi_errf(err, MDI_ERR_ARG, "cv_inspect: path and out are required");
    if (stat(path, &st) != 0)
        return mdi_errf(err, MDI_ERR_IO, "%s: %s", path, strerror(errno));
    if (S_ISDIR(st.st_mode))
        return inspect_dir(path, out, err);
    mdi_status s = inspect_file_isolated(path, &in, err);
    if (!s)
        print_info(out, path, &in);
    return s;
}

/* The HDF5 writer: any cv_source -> one model file or a directory of shards,
 * laid out exactly as docs/FORMAT.md says.
 *
 * Tensors stream one at a time through a single buffer sized for the largest
 * tensor, so memory stays far below the model size. Output goes to a
 * temporary name ("OUT.tmp-PID", a file or a directory) that is renamed to OUT
 * only when everything is written; on failure, or when a signal such as SIGINT
 * or SIGTERM ends the process, the temporary output is removed. */
#include "convert.h"
#include "mdi/tokenizer.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <hdf5.h>

#include "mdi/plan.h"

#define WR_PATH_MAX 4096
/* format_version of a file holding whole layers (readable by version-1 readers)
 * and of one that starts or ends with half a layer. */
#define WR_FORMAT_WHOLE 1
#define WR_FORMAT_HALF 2

/* Progress over layers, on stderr: a redrawn bar on a terminal, else a line per
 * ~5%. A layer counts once its MLP, the later half, is written. */
typedef struct wr_progress {
    int enabled, tty, drawn;
    int32_t done, total, next_pct;
} wr_progress;

typedef struct wr_ctx {
    cv_source *src;
    cv_dtype dtype;
    hid_t mat_type;   /* file (and memory) type of matrices: F32LE or a 16-bit float */
    float *buf;       /* (largest tensor) reusable staging buffer */
    const char *path; /* file being written, for messages */
    wr_progress prog;
} wr_ctx;

/* What this run has created, for removal when a signal ends the process mid-
 * write. The handler calls only unlink, rmdir and raise (async-signal-safe);
 * a path is copied into its buffer before the count that publishes it grows,
 * and buffers are allocated before any handler is installed. The hooked
 * signals are held from each create until its path is recorded. Signals that
 * were ignored or handled when the write began are left alone. */
static const int wr_signals[] = {SIGHUP,  SIGINT,  SIGQUIT, SIGPIPE, SIGTERM,
                                 SIGXFSZ, SIGUSR1, SIGUSR2, SIGALRM, SIGVTALRM};
#define WR_N_SIGNALS ((int)(sizeof wr_signals / sizeof wr_signals[0]))
static struct {
    char (*files)[WR_PATH_MAX]; /* created files, [cap] */
    int32_t cap;
    volatile sig_atomic_t n_files;
    char dir[WR_PATH_MAX]; /* the created directory, once has_dir */
    volatile sig_atomic_t has_dir;
    struct sigaction old[WR_N_SIGNALS];
    int hooked[WR_N_SIGNALS];
} wr_made;

static void wr_on_signal(int sig)
{
    int saved = errno;
    for (sig_atomic_t i = wr_made.n_files; i > 0; i--)
        unlink(wr_made.files[i - 1]);
    if (wr_made.has_dir)
        rmdir(wr_made.dir);
    errno = saved;
    raise(sig); /* SA_RESETHAND: delivered with the default action on return */
}

/* Room for n created files, then the handlers (only over default actions). */
static mdi_status wr_made_arm(int32_t n, mdi_err *err)
{
    if (!(wr_made.files = malloc((size_t)n * sizeof *wr_made.files)))
        return mdi_errf(err, MDI_ERR_NOMEM, "out of memory for %d output paths", (int)n);
    wr_made.cap = n;
    wr_made.n_files = 0;
    wr_made.has_dir = 0;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = wr_on_signal;
    sa.sa_flags = SA_RESETHAND;
    sigemptyset(&sa.sa_mask);
    for (int i = 0; i < WR_N_SIGNALS; i++) {
        wr_made.hooked[i] = 0;
        if (sigaction(wr_signals[i], NULL, &wr_made.old[i]) == 0 &&
            !(wr_made.old[i].sa_flags & SA_SIGINFO) && wr_made.old[i].sa_handler == SIG_DFL)
            wr_made.hooked[i] = sigaction(wr_signals[i], &sa, NULL) == 0;
    }
    return MDI_OK;
}

static void wr_made_disarm(void)
{
    for (int i = 0; i < WR_N_SIGNALS; i++)
        if (wr_made.hooked[i])
            sigaction(wr_signals[i], &wr_made.old[i], NULL);
    wr_made.n_files = 0;
    wr_made.has_dir = 0;
    free(wr_made.files);
    wr_made.files = NULL;
    wr_made.cap = 0;
}

/* Hold the hooked signals (into *old) while something is created and
 * recorded, so that none lands between the two: delivered on release. */
static void wr_made_hold(sigset_t *old)
{
    sigset_t set;
    sigemptyset(&set);
    for (int i = 0; i < WR_N_SIGNALS; i++)
        if (wr_made.hooked[i])
            sigaddset(&set, wr_signals[i]);
    sigprocmask(SIG_BLOCK, &set, old);
}

static void wr_made_release(const sigset_t *old)
{
    int saved = errno;
    sigprocmask(SIG_SETMASK, old, NULL);
    errno = saved;
}

/* Record path (just created by this run). */
static void wr_made_file(const char *path)
{
    if (wr_made.n_files < wr_made.cap) {
        snprintf(wr_made.files[wr_made.n_files], WR_PATH_MAX, "%s", path);
        atomic_signal_fence(memory_order_seq_cst); /* the path, then the count */
        wr_made.n_files = wr_made.n_files + 1;
    }
}

static void progress_step(wr_progress *p)
{
    p->done++;
    if (!p->enabled || p->total <= 0)
        return;
    int pct = (int)((int64_t)p->done * 100 / p->total);
    if (p->tty) {
        int fill = pct / 5;
        char bar[21];
        for (int i = 0; i < 20; i++)
            bar[i] = i < fill ? '#' : '-';
        bar[20] = '\0';
        fprintf(stderr, "\rmdi-convert: [%s] %3d%% (%d/%d layers)", bar, pct, (int)p->done,
                (int)p->total);
        p->drawn = 1;
        if (p->done == p->total) {
            fputc('\n', stderr);
            p->drawn = 0;
        }
    } else if (pct >= p->next_pct) {
        fprintf(stderr, "mdi-convert: %d%% (%d/%d layers)\n", pct, (int)p->done, (int)p->total);
        p->next_pct = (pct / 5 + 1) * 5;
    }
    fflush(stderr);
}

/* The 16-bit float type of dtype (IEEE half or bfloat16), little-endian. */
static mdi_status make_half_type(cv_dtype dtype, hid_t *out, mdi_err *err)
{
    int is_bf = dtype == CV_DTYPE_BF16;
    size_t epos = is_bf ? 7 : 10, esize = is_bf ? 8 : 5, msize = is_bf ? 7 : 10;
    size_t ebias = is_bf ? 127 : 15;
    hid_t t = H5Tcopy(H5T_IEEE_F32LE);
    if (t < 0)
        return mdi_errf(err, MDI_ERR_INTERNAL, "HDF5: cannot copy the float32 type");
    if (H5Tset_fields(t, 15, epos, esize, 0, msize) < 0 || H5Tset_size(t, 2) < 0 ||
        H5Tset_precision(t, 16) < 0 || H5Tset_offset(t, 0) < 0 || H5Tset_ebias(t, ebias) < 0) {
        H5Tclose(t);
        return mdi_errf(err, MDI_ERR_INTERNAL, "HDF5: cannot build the %s type",
                        is_bf ? "bf16" : "f16");
    }
    *out = t;
    return MDI_OK;
}

/* Write a scalar attribute `name` of file type ftype from *val (memory type mtype). */
static mdi_status write_attr(hid_t loc, const char *name, hid_t ftype, hid_t mtype, const void *val,
                             const char *path, mdi_err *err)
{
    mdi_status s = MDI_OK;
    hid_t space = H5Screate(H5S_SCALAR), attr = -1;
    if (space < 0)
        return mdi_errf(err, MDI_ERR_INTERNAL, "HDF5: cannot create a scalar dataspace");
    attr = H5Acreate2(loc, name, ftype, space, H5P_DEFAULT, H5P_DEFAULT);
    if (attr < 0) {
        s = mdi_errf(err, MDI_ERR_IO, "%s: cannot create attribute %s", path, name);
        goto fail_space;
    }
    if (H5Awrite(attr, mtype, val) < 0)
        s = mdi_errf(err, MDI_ERR_IO, "%s: cannot write attribute %s", path, name);
    if (H5Aclose(attr) < 0 && !s)
        s = mdi_errf(err, MDI_ERR_IO, "%s: cannot close attribute %s", path, name);
fail_space:
    H5Sclose(space);
    return s;
}

static mdi_status attr_int(hid_t loc, const char *name, int32_t v, const char *path, mdi_err *err)
{
    return write_attr(loc, name, H5T_STD_I32LE, H5T_NATIVE_INT32, &v, path, err);
}

static mdi_status attr_float(hid_t loc, const char *name, float v, const char *path, mdi_err *err)
{
    return write_attr(loc, name, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, &v, path, err);
}

/* Fixed-length, null-terminated ASCII string attribute (size = length + 1). */
static mdi_status attr_str(hid_t loc, const char *name, const char *v, const char *path,
                           mdi_err *err)
{
    hid_t t = H5Tcopy(H5T_C_S1);
    if (t < 0 || H5Tset_size(t, strlen(v) + 1) < 0 || H5Tset_strpad(t, H5T_STR_NULLTERM) < 0) {
        if (t >= 0)
            H5Tclose(t);
        return mdi_errf(err, MDI_ERR_INTERNAL, "HDF5: cannot build a string type for %s", name);
    }
    mdi_status s = write_attr(loc, name, t, t, v, path, err);
    H5Tclose(t);
    return s;
}

/* Create a contiguous dataset `name` under loc with file type ftype and shape
 * dims (rank 1 or 2), and write data (memory type mtype; NULL only if empty). */
static mdi_status write_dataset(hid_t loc, const char *name, hid_t ftype, hid_t mtype, int rank,
                                const hsize_t *dims, const void *data, const char *where,
                                const char *path, mdi_err *err)
{
    mdi_status s = MDI_OK;
    hid_t space = -1, dcpl = -1, dset = -1;
    if ((space = H5Screate_simple(rank, dims, NULL)) < 0) {
        s = mdi_errf(err, MDI_ERR_INTERNAL, "HDF5: cannot create the dataspace of %s%s", where,
                     name);
        goto fail;
    }
    if ((dcpl = H5Pcreate(H5P_DATASET_CREATE)) < 0 || H5Pset_layout(dcpl, H5D_CONTIGUOUS) < 0 ||
        H5Pset_fill_time(dcpl, H5D_FILL_TIME_NEVER) < 0 || H5Pset_obj_track_times(dcpl, 0) < 0) {
        s = mdi_errf(err, MDI_ERR_INTERNAL, "HDF5: cannot set up the layout of %s%s", where, name);
        goto fail;
    }
    if ((dset = H5Dcreate2(loc, name, ftype, space, H5P_DEFAULT, dcpl, H5P_DEFAULT)) < 0) {
        s = mdi_errf(err, MDI_ERR_IO, "%s: cannot create dataset %s%s", path, where, name);
        goto fail;
    }
    hsize_t n = 1;
    for (int i = 0; i < rank; i++)
        n *= dims[i];
    if (n > 0 && H5Dwrite(dset, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0) {
        s = mdi_errf(err, MDI_ERR_IO, "%s: cannot write dataset %s%s (disk full?)", path, where,
                     name);
        goto fail;
    }
fail:
    if (dset >= 0 && H5Dclose(dset) < 0 && !s)
        s = mdi_errf(err, MDI_ERR_IO, "%s: cannot close dataset %s%s (disk full?)", path, where,
                     name);
    if (dcpl >= 0)
        H5Pclose(dcpl);
    if (space >= 0)
        H5Sclose(space);
    return s;
}

/* Create group name under loc without modification times (as for datasets), so
 * that converting the same source twice gives byte-identical files. */
static hid_t create_group(hid_t loc, const char *name)
{
    hid_t gcpl = H5Pcreate(H5P_GROUP_CREATE), g = -1;
    if (gcpl < 0)
        return -1;
    if (H5Pset_obj_track_times(gcpl, 0) >= 0)
        g = H5Gcreate2(loc, name, H5P_DEFAULT, gcpl, H5P_DEFAULT);
    H5Pclose(gcpl);
    return g;
}

/* The error for value v at index i of tensor kind (of layer, or an extra when
 * layer < 0) of input from: "holds <what> (v) at index i". */
static mdi_status bad_value(mdi_err *err, const char *from, mdi_tensor_kind kind, int32_t layer,
                            const char *what, float v, size_t i, const char *hint)
{
    char of_layer[32] = "";
    if (layer >= 0)
        snprintf(of_layer, sizeof of_layer, " of layer %d", (int)layer);
    return mdi_errf(err, MDI_ERR_FORMAT, "%s: tensor %s%s holds %s (%g) at index %zu%s", from,
                    mdi_tensor_name(kind), of_layer, what, (double)v, i, hint);
}

/* Read tensor kind (of layer, or an extra when layer < 0), check it is finite,
 * convert matrices to the storage dtype in place (refusing values beyond its
 * range), and write it under loc. */
static mdi_status write_tensor(wr_ctx *w, hid_t loc, mdi_tensor_kind kind, int32_t layer,
                               const char *where, mdi_err *err)
{
    size_t rows, cols;
    mdi_status s;
    mdi_tensor_shape(&w->src->cfg, kind, &rows, &cols);
    size_t n = rows * cols;
    if ((s = w->src->read(w->src, kind, layer < 0 ? 0 : layer, w->buf, err)))
        return s;
    const char *from = w->src->path ? w->src->path : w->src->kind ? w->src->kind : "input";
    for (size_t i = 0; i < n; i++)
        if (!isfinite(w->buf[i]))
            return bad_value(err, from, kind, layer, "a non-finite value", w->buf[i], i, "");
    int matrix = mdi_tensor_is_matrix(kind);
    hsize_t dims[2] = {(hsize_t)rows, (hsize_t)cols};
    hid_t t = H5T_IEEE_F32LE, mt = H5T_NATIVE_FLOAT;
    if (matrix && w->dtype != CV_DTYPE_F32) {
        unsigned char *b = (unsigned char *)w->buf;
        int f16 = w->dtype == CV_DTYPE_F16;
        uint16_t inf_bits = f16 ? 0x7C00 : 0x7F80; /* all-ones exponent: the value overflowed */
        for (size_t i = 0; i < n; i++) {
            float f;
            memcpy(&f, b + 4 * i, sizeof f);
            uint16_t h = f16 ? cv_f32_to_f16(f) : cv_f32_to_bf16(f);
            if ((h & inf_bits) == inf_bits)
                return bad_value(
                    err, from, kind, layer,
                    f16 ? "a value beyond f16's range of +-65504" : "a value beyond bf16's range",
                    f, i,
                    f16 ? "; convert with --dtype bf16 or f32" : "; convert with --dtype f32");
            memcpy(b + 2 * i, &h, sizeof h);
        }
        t = mt = w->mat_type;
    }
    return write_dataset(loc, mdi_tensor_name(kind), t, mt, matrix ? 2 : 1, dims, w->buf, where,
                         w->path, err);
}

/* Root attributes of one shard holding half-layers [first, last): layer_first
 * and layer_last name the layers it holds all or half of. */
static mdi_status write_root_attrs(wr_ctx *w, hid_t f, int32_t first, int32_t last, int32_t index,
                                   int32_t count, mdi_err *err)
{
    static const char *const dtypes[] = {"f32", "f16", "bf16"};
    const mdi_config *c = &w->src->cfg;
    const char *p = w->path;
    int32_t version = first % 2 == 0 && last % 2 == 0 ? WR_FORMAT_WHOLE : WR_FORMAT_HALF;
    mdi_status s;
    if ((s = attr_str(f, "format", "mdi-llm", p, err)) ||
        (s = attr_int(f, "format_version", version, p, err)) ||
        (s = attr_str(f, "model_id", w->src->model_id, p, err)) ||
        (s = attr_int(f, "dim", c->dim, p, err)) ||
        (s = attr_int(f, "hidden_dim", c->hidden_dim, p, err)) ||
        (s = attr_int(f, "n_layers", c->n_layers, p, err)) ||
        (s = attr_int(f, "n_heads", c->n_heads, p, err)) ||
        (s = attr_int(f, "n_kv_heads", c->n_kv_heads, p, err)) ||
        (s = attr_int(f, "head_dim", c->head_dim, p, err)) ||
        (s = attr_int(f, "vocab_size", c->vocab_size, p, err)) ||
        (s = attr_int(f, "max_seq_len", c->max_seq_len, p, err)) ||
        (s = attr_float(f, "rope_theta", c->rope_theta, p, err)) ||
        (s = attr_float(f, "norm_eps", c->norm_eps, p, err)) ||
        (s = attr_int(f, "tied_head", c->tied_head, p, err)) ||
        (s = attr_str(f, "rope_layout", "interleaved", p, err)) ||
        (s = attr_int(f, "layer_first", first / 2, p, err)) ||
        (s = attr_int(f, "layer_last", (last + 1) / 2, p, err)) ||
        (s = attr_int(f, "half_first", first, p, err)) ||
        (s = attr_int(f, "half_last", last, p, err)) ||
        (s = attr_int(f, "shard_index", index, p, err)) ||
        (s = attr_int(f, "shard_count", count, p, err)) ||
        (s = attr_str(f, "dtype", dtypes[w->dtype], p, err)))
        return s;
    return MDI_OK;
}

/* Group /tokenizer: bytes, offsets, scores, types and the id attributes. */
static mdi_status write_tokenizer(wr_ctx *w, hid_t f, mdi_err *err)
{
    const mdi_vocab *v = &w->src->vocab;
    const char *p = w->path, *at = "/tokenizer/";
    hsize_t n = (hsize_t)v->n, total = (hsize_t)v->offsets[v->n], n1 = n + 1;
    mdi_status s;
    hid_t g = create_group(f, "tokenizer");
    if (g < 0)
        return mdi_errf(err, MDI_ERR_IO, "%s: cannot create group /tokenizer", p);
    s = write_dataset(g, "bytes", H5T_STD_U8LE, H5T_NATIVE_UINT8, 1, &total, v->bytes, at, p, err);
    if (!s)
        s = write_dataset(g, "offsets", H5T_STD_U64LE, H5T_NATIVE_UINT64, 1, &n1, v->offsets, at, p,
                          err);
    if (!s)
        s = write_dataset(g, "scores", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 1, &n, v->scores, at, p,
                          err);
    if (!s)
        s = write_dataset(g, "types", H5T_STD_I32LE, H5T_NATIVE_INT32, 1, &n, v->types, at, p, err);
    if (!s && !(s = attr_int(g, "bos_id", v->bos_id, p, err)) &&
        !(s = attr_int(g, "eos_id", v->eos_id, p, err)) &&
        !(s = attr_int(g, "unk_id", v->unk_id, p, err)))
        s = attr_int(g, "add_dummy_prefix", v->add_dummy_prefix, p, err);
    if (H5Gclose(g) < 0 && !s)
        s = mdi_errf(err, MDI_ERR_IO, "%s: cannot close group /tokenizer", p);
    return s;
}

/* Extras of the layer-0 shard: embedding, final norm, untied output head. */
static mdi_status write_extras(wr_ctx *w, hid_t f, mdi_err *err)
{
    mdi_status s;
    for (int k = 0; k < MDI_T_COUNT; k++) {
        if (mdi_tensor_scope_of((mdi_tensor_kind)k) != MDI_SCOPE_EXTRA ||
            !mdi_tensor_present(&w->src->cfg, (mdi_tensor_kind)k))
            continue;
        if ((s = write_tensor(w, f, (mdi_tensor_kind)k, -1, "/", err)))
            return s;
    }
    if (w->src->vocab.n > 0 && (s = write_tokenizer(w, f, err)))
        return s;
    return MDI_OK;
}

/* Group /layers/NNN with the tensors of layer l's halves inside half-layers
 * [first, last): all nine, or only the attention's or the MLP's. */
static mdi_status write_layer(wr_ctx *w, hid_t layers, int32_t l, int32_t first, int32_t last,
                              mdi_err *err)
{
    char name[16], where[32];
    mdi_status s = MDI_OK;
    snprintf(name, sizeof name, "%03d", (int)l);
    snprintf(where, sizeof where, "/layers/%s/", name);
    hid_t g = create_group(layers, name);
    if (g < 0)
        return mdi_errf(err, MDI_ERR_IO, "%s: cannot create group /layers/%s", w->path, name);
    for (int k = 0; k < MDI_T_COUNT && !s; k++) {
        int half = mdi_tensor_half((mdi_tensor_kind)k);
        if (half >= 0 && 2 * l + half >= first && 2 * l + half < last)
            s = write_tensor(w, g, (mdi_tensor_kind)k, l, where, err);
    }
    if (H5Gclose(g) < 0 && !s)
        s = mdi_errf(err, MDI_ERR_IO, "%s: cannot close group /layers/%s", w->path, name);
    return s;
}

/* Create path (which must not exist) and write half-layers [first, last) into it. */
static mdi_status write_shard(wr_ctx *w, const char *path, int32_t index, int32_t count,
                              int32_t first, int32_t last, mdi_err *err)
{
    mdi_status s = MDI_OK;
    hid_t f = -1, layers = -1;
    w->path = path;
    /* Create the file ourselves first: errno gives a better message than HDF5. */
    sigset_t held;
    wr_made_hold(&held);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0644);
    if (fd >= 0)
        wr_made_file(path);
    wr_made_release(&held);
    if (fd < 0)
        return mdi_errf(err, MDI_ERR_IO, "cannot create %s: %s", path, strerror(errno));
    close(fd);
    if ((f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT)) < 0) {
        unlink(path);
        return mdi_errf(err, MDI_ERR_IO, "%s: HDF5 cannot create the file", path);
    }
    if ((s = write_root_attrs(w, f, first, last, index, count, err)))
        goto fail_file;
    if (first == 0 && (s = write_extras(w, f, err)))
        goto fail_file;
    if ((layers = create_group(f, "layers")) < 0) {
        s = mdi_errf(err, MDI_ERR_IO, "%s: cannot create group /layers", path);
        goto fail_file;
    }
    for (int32_t l = first / 2; l < (last + 1) / 2 && !s; l++) {
        if (!(s = write_layer(w, layers, l, first, last, err)) && 2 * l + 2 <= last)
            progress_step(&w->prog); /* layer l is complete */
    }
    if (H5Gclose(layers) < 0 && !s)
        s = mdi_errf(err, MDI_ERR_IO, "%s: cannot close group /layers", path);
fail_file:
    if (H5Fclose(f) < 0 && !s)
        s = mdi_errf(err, MDI_ERR_IO, "%s: cannot finish the file (disk full?)", path);
    if (s)
        unlink(path);
    return s;
}

/* Elements of the largest tensor src will hand us. */
static size_t largest_tensor(const mdi_config *c)
{
    size_t best = 0, rows, cols;
    for (int k = 0; k < MDI_T_COUNT; k++) {
        if (!mdi_tensor_present(c, (mdi_tensor_kind)k))
            continue;
        mdi_tensor_shape(c, (mdi_tensor_kind)k, &rows, &cols);
        if (rows * cols > best)
            best = rows * cols;
    }
    return best;
}

/* Check the source and options before touching the file system. */
static mdi_status check_inputs(const cv_source *src, const char *out, const cv_write_opts *o,
                               mdi_err *err)
{
    mdi_status s;
    struct stat st;
    if (!src || !src->read || !out || !*out || !o)
        return mdi_errf(err, MDI_ERR_ARG, "cv_write: source, output path and options are required");
    if ((int)o->dtype < CV_DTYPE_F32 || o->dtype > CV_DTYPE_BF16)
        return mdi_errf(err, MDI_ERR_ARG, "unknown dtype %d", (int)o->dtype);
    if (o->n_shards < 0 || o->n_shards > MDI_MAX_HALVES)
        return mdi_errf(err, MDI_ERR_ARG, "shard count %d is out of range", (int)o->n_shards);
    if (o->balance != MDI_BALANCE_MEMORY && o->balance != MDI_BALANCE_TIME)
        return mdi_errf(err, MDI_ERR_ARG, "unknown balance %d", (int)o->balance);
    if ((s = mdi_config_validate(&src->cfg, err)))
        return s;
    if (strlen(src->model_id) != 16 || strspn(src->model_id, "0123456789abcdef") != 16)
        return mdi_errf(err, MDI_ERR_INTERNAL, "model id '%s' is not 16 lower-case hex digits",
                        src->model_id);
    if (src->vocab.n > 0) {
        mdi_tokenizer *tok = NULL; /* what every mdi-llm run will build from it */
        if ((s = mdi_vocab_validate(&src->vocab, err)) ||
            (s = mdi_tokenizer_create(&src->vocab, &tok, err)))
            return s;
        mdi_tokenizer_free(tok);
        if (src->vocab.n > src->cfg.vocab_size)
            return mdi_errf(err, MDI_ERR_MISMATCH, "tokenizer has %d pieces but vocab_size is %d",
                            (int)src->vocab.n, (int)src->cfg.vocab_size);
    }
    if (lstat(out, &st) == 0)
        return mdi_errf(err, MDI_ERR_ARG, "%s exists; remove it first", out);
    if (strlen(out) + 64 > WR_PATH_MAX)
        return mdi_errf(err, MDI_ERR_ARG, "output path is too long");
    return MDI_OK;
}

/* Half-layer bounds for n shards: the explicit split, or balanced as the
 * engine would balance n ranks. */
static mdi_status plan_bounds(const cv_source *src, const cv_write_opts *o, int32_t n,
                              int32_t *bounds, mdi_err *err)
{
    int32_t layers = src->cfg.n_layers;
    if (n > 2 * layers)
        return mdi_errf(err, MDI_ERR_RANGE,
                        "%s %d %sbut %s has only %d layer%s (%d half-layers): every shard "
                        "needs at least half a layer",
                        o->split ? "--split has" : "--shards", (int)n, o->split ? "entries " : "",
                        src->path ? src->path : src->kind, (int)layers, layers == 1 ? "" : "s",
                        (int)(2 * layers));
    if (o->split)
        return mdi_plan_from_counts(&src->cfg, o->split, n, bounds, err);
    return mdi_plan_balanced(&src->cfg, n, o->balance, NULL, bounds, err);
}

/* Move tmp to out, refusing to replace something that appeared meanwhile: a
 * file by link + unlink (link never replaces; filesystems without hard links
 * fall back to a check and rename), a directory by rename, which never
 * replaces a directory that holds anything. */
static mdi_status publish(const char *tmp, const char *out, int is_dir, mdi_err *err)
{
    struct stat st;
    if (!is_dir) {
        if (link(tmp, out) == 0) {
            unlink(tmp);
            return MDI_OK;
        }
        if (errno == EEXIST)
            return mdi_errf(err, MDI_ERR_ARG, "%s exists; remove it first", out);
    }
    if (lstat(out, &st) == 0)
        return mdi_errf(err, MDI_ERR_ARG, "%s exists; remove it first", out);
    if (rename(tmp, out) != 0)
        return mdi_errf(err, MDI_ERR_IO, "cannot rename %s to %s: %s", tmp, out, strerror(errno));
    return MDI_OK;
}

/* Path of shard i of n inside dir (docs/FORMAT.md names): first and last
 * layer inclusive, "m" after the first when it starts with that layer's MLP,
 * "a" after the last when it ends with that layer's attention. */
static mdi_status shard_path(char *buf, size_t cap, const char *dir, int32_t i, int32_t n,
                             const int32_t *bounds, mdi_err *err)
{
    int32_t first = bounds[i], last = bounds[i + 1];
    int len = snprintf(buf, cap, "%s/model-%02d-of-%02d.L%03d%s-%03d%s.h5", dir, (int)i, (int)n,
                       (int)(first / 2), first % 2 ? "m" : "", (int)((last - 1) / 2),
                       last % 2 ? "a" : "");
    if (len < 0 || (size_t)len >= cap)
        return mdi_errf(err, MDI_ERR_ARG, "output path %s is too long", dir);
    return MDI_OK;
}

/* n shards into directory tmp, then rename it to out; on failure remove them. */
static mdi_status write_sharded(wr_ctx *w, const char *tmp, const char *out, const int32_t *bounds,
                                int32_t n, mdi_err *err)
{
    char path[WR_PATH_MAX];
    mdi_status s = MDI_OK;
    int32_t i = 0;
    sigset_t held;
    wr_made_hold(&held);
    int made = mkdir(tmp, 0755) == 0;
    if (made) {
        snprintf(wr_made.dir, sizeof wr_made.dir, "%s", tmp);
        atomic_signal_fence(memory_order_seq_cst);
        wr_made.has_dir = 1;
    }
    wr_made_release(&held);
    if (!made)
        return mdi_errf(err, MDI_ERR_IO, "cannot create directory %s: %s", tmp, strerror(errno));
    for (i = 0; i < n && !s; i++) {
        if (!(s = shard_path(path, sizeof path, tmp, i, n, bounds, err)))
            s = write_shard(w, path, i, n, bounds[i], bounds[i + 1], err);
    }
    if (!s && !(s = publish(tmp, out, 1, err)))
        return MDI_OK;
    for (int32_t j = 0; j < i; j++) { /* a failed shard has removed itself already */
        if (!shard_path(path, sizeof path, tmp, j, n, bounds, NULL))
            unlink(path);
    }
    rmdir(tmp);
    return s;
}

mdi_status cv_write(cv_source *src, const char *out_arg, const cv_write_opts *opts, mdi_err *err)
{
    char tmp[WR_PATH_MAX], out[WR_PATH_MAX - 63]; /* check_inputs: strlen(out_arg) + 64 <= max */
    mdi_status s;
    if ((s = check_inputs(src, out_arg, opts, err)))
        return s;
    /* "dir/" names dir: its temporary twin is "dir.tmp-PID", not "dir/.tmp-PID". */
    size_t len = strlen(out_arg);
    while (len > 1 && out_arg[len - 1] == '/')
        len--;
    memcpy(out, out_arg, len);
    out[len] = '\0';
    wr_ctx w = {.src = src, .dtype = opts->dtype, .mat_type = -1, .path = out};
    w.prog = (wr_progress){
        .enabled = !opts->quiet, .tty = isatty(2), .total = src->cfg.n_layers, .next_pct = 5};
    int32_t n = opts->n_shards > 1 ? opts->n_shards : 1;
    if (n == 1 && len < strlen(out_arg))
        return mdi_errf(err, MDI_ERR_ARG,
                        "%s ends in '/' but the output is one file (a directory of shards needs "
                        "--shards N)",
                        out_arg);
    int32_t *bounds = malloc(((size_t)n + 1) * sizeof *bounds);
    if (!bounds)
        return mdi_errf(err, MDI_ERR_NOMEM, "out of memory for %d shard bounds", (int)n);
    if ((s = plan_bounds(src, opts, n, bounds, err)))
        goto fail_bounds;
    if (opts->dtype != CV_DTYPE_F32 && (s = make_half_type(opts->dtype, &w.mat_type, err)))
        goto fail_bounds;
    size_t elems = largest_tensor(&src->cfg);
    if (!(w.buf = malloc(elems * sizeof(float)))) {
        s = mdi_errf(err, MDI_ERR_NOMEM, "out of memory for a %zu-byte tensor buffer",
                     elems * sizeof(float));
        goto fail_type;
    }
    snprintf(tmp, sizeof tmp, "%s.tmp-%ld", out, (long)getpid());
    if ((s = wr_made_arm(n, err)))
        goto fail_buf;
    if (n == 1) {
        if (!(s = write_shard(&w, tmp, 0, 1, 0, 2 * src->cfg.n_layers, err)) &&
            (s = publish(tmp, out, 0, err)))
            unlink(tmp);
    } else {
        s = write_sharded(&w, tmp, out, bounds, n, err);
    }
    wr_made_disarm();
    if (s && w.prog.drawn)
        fputc('\n', stderr);
fail_buf:
    free(w.buf);
fail_type:
    if (w.mat_type >= 0)
        H5Tclose(w.mat_type);
fail_bounds:
    free(bounds);
    return s;
}

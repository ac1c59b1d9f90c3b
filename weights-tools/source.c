/* Shared converter pieces: closing a source, detecting the input kind from
 * its content, FNV-1a model ids, and float32 <-> f16/bf16 conversion. */
#include "convert.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void cv_source_close(cv_source *src)
{
    if (!src)
        return;
    if (src->close)
        src->close(src);
    src->close = NULL;
    src->impl = NULL;
    src->read = NULL;
    mdi_vocab_free(&src->vocab);
}

/* ---- input detection ------------------------------------------------------ */

int cv_fits_float(double x)
{
    float f = (float)x;
    return x == 0.0 || !isfinite(x) || (f != 0.0f && isfinite(f));
}

int32_t cv_le_i32(const unsigned char *p)
{
    uint32_t u = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
    int32_t v;
    memcpy(&v, &u, sizeof v);
    return v;
}

mdi_status cv_pread_full(int fd, void *buf, size_t n, uint64_t off, const char *path, mdi_err *err)
{
    unsigned char *p = buf;
    while (n > 0) {
        size_t want = n < ((size_t)1 << 30) ? n : ((size_t)1 << 30);
        ssize_t got = pread(fd, p, want, (off_t)off);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0)
            return mdi_errf(err, MDI_ERR_IO, "%s: read at offset %llu failed: %s", path,
                            (unsigned long long)off, strerror(errno));
        if (got == 0)
            return mdi_errf(err, MDI_ERR_FORMAT, "%s: unexpected end of file at offset %llu", path,
                            (unsigned long long)off);
        p += got;
        n -= (size_t)got;
        off += (uint64_t)got;
    }
    return MDI_OK;
}

#define CV_HASH_CHUNK ((size_t)1 << 20)

mdi_status cv_hash_fd(int fd, uint64_t size, const char *path, uint64_t *h, mdi_err *err)
{
    unsigned char *buf = malloc(CV_HASH_CHUNK);
    if (!buf)
        return mdi_errf(err, MDI_ERR_NOMEM, "%s: no memory for a 1 MiB hash buffer", path);
    mdi_status s = MDI_OK;
    for (uint64_t off = 0; off < size && !s; off += CV_HASH_CHUNK) {
        size_t n = size - off < CV_HASH_CHUNK ? (size_t)(size - off) : CV_HASH_CHUNK;
        if (!(s = cv_pread_full(fd, buf, n, off, path, err)))
            *h = mdi_fnv1a(*h, buf, n);
    }
    free(buf);
    return s;
}

const char *cv_layer_suffix(const char *name, const char *prefix, int32_t n_layers, int32_t *layer)
{
    size_t n = strlen(prefix);
    if (strncmp(name, prefix, n) != 0)
        return NULL;
    const char *p = name + n;
    int64_t l = 0;
    if (*p < '0' || *p > '9' || (*p == '0' && p[1] != '.'))
        return NULL;
    for (; *p >= '0' && *p <= '9' && l <= MDI_MAX_LAYERS; p++)
        l = l * 10 + (*p - '0');
    if (*p != '.' || l >= n_layers)
        return NULL;
    *layer = (int32_t)l;
    return p + 1;
}

static int cmp_extent(const void *pa, const void *pb)
{
    const cv_extent *a = pa, *b = pb;
    if (a->file != b->file)
        return a->file < b->file ? -1 : 1;
    return a->off < b->off ? -1 : a->off > b->off;
}

int cv_find_overlap(cv_extent *ext, size_t n, const cv_extent **a, const cv_extent **b)
{
    qsort(ext, n, sizeof *ext, cmp_extent);
    const cv_extent *last = NULL; /* of this file, the one that ends furthest */
    for (size_t i = 0; i < n; i++) {
        if (ext[i].bytes == 0)
            continue;
        if (last && last->file == ext[i].file && ext[i].off < last->off + last->bytes) {
            *a = last;
            *b = &ext[i];
            return 1;
        }
        if (!last || last->file != ext[i].file ||
            ext[i].off + ext[i].bytes > last->off + last->bytes)
            last = &ext[i];
    }
    return 0;
}

int cv_check_overlap(const mdi_config *cfg, cv_extent_fn get, const void *ctx, cv_extent *a,
                     cv_extent *b)
{
    size_t cap = ((size_t)cfg->n_layers + 1) * MDI_T_COUNT, n = 0;
    cv_extent *ext = malloc(cap * sizeof *ext);
    const cv_extent *pa, *pb;
    if (!ext)
        return -1;
    for (int32_t l = 0; l <= cfg->n_layers; l++)
        for (int k = 0; k < MDI_T_COUNT; k++) {
            if ((mdi_tensor_scope_of((mdi_tensor_kind)k) == MDI_SCOPE_LAYER) != (l < cfg->n_layers))
                continue; /* the extras once, in their row */
            ext[n] = (cv_extent){0, 0, 0, k, l};
            n += get(ctx, (mdi_tensor_kind)k, l, &ext[n]) != 0;
        }
    int found = cv_find_overlap(ext, n, &pa, &pb);
    if (found) {
        *a = *pa;
        *b = *pb;
    }
    free(ext);
    return found;
}

void cv_model_id(uint64_t h, char id[17])
{
    snprintf(id, 17, "%016llx", (unsigned long long)h);
}

static int in_range(int32_t v, int32_t hi)
{
    return v >= 1 && v <= hi;
}

/* 1 if the 28-byte header hdr describes a llama2.c v0 checkpoint of exactly
 * file_size bytes (float32, legacy RoPE tables present or not, classifier
 * appended when vocab_size < 0). */
static int llama2c_plausible(const unsigned char hdr[28], uint64_t file_size)
{
    int32_t dim = cv_le_i32(hdr), hidden = cv_le_i32(hdr + 4), L = cv_le_i32(hdr + 8);
    int32_t heads = cv_le_i32(hdr + 12), kv = cv_le_i32(hdr + 16), vocab = cv_le_i32(hdr + 20);
    int32_t seq = cv_le_i32(hdr + 24);
    if (!in_range(dim, MDI_MAX_DIM) || !in_range(hidden, MDI_MAX_HIDDEN) ||
        !in_range(L, MDI_MAX_LAYERS) || !in_range(heads, MDI_MAX_HEADS) || !in_range(kv, heads) ||
        !in_range(seq, MDI_MAX_SEQ) || vocab == 0 || vocab < -MDI_MAX_VOCAB ||
        vocab > MDI_MAX_VOCAB)
        return 0;
    if (heads % kv != 0 || dim % heads != 0)
        return 0;
    uint64_t d = (uint64_t)dim, h = (uint64_t)hidden, l = (uint64_t)L;
    uint64_t hs = d / (uint64_t)heads, kvd = hs * (uint64_t)kv;
    uint64_t v = (uint64_t)(vocab < 0 ? -(int64_t)vocab : vocab);
    uint64_t per_layer = 2 * d + 2 * d * d + 2 * kvd * d + 3 * h * d;
    uint64_t floats = v * d + l * per_layer + d + (vocab < 0 ? v * d : 0);
    uint64_t rope = (uint64_t)seq * hs;
    uint64_t plain = 28 + 4 * floats;
    return file_size == plain || file_size == plain + 4 * rope;
}

/* Whether dir/config.json exists as a regular file. */
static int has_config_json(const char *dir)
{
    char path[4096];
    struct stat st;
    int n = snprintf(path, sizeof path, "%s/config.json", dir);
    if (n < 0 || (size_t)n >= sizeof path)
        return 0;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

cv_input_kind cv_detect(const char *path)
{
    struct stat st;
    unsigned char hdr[28];
    if (!path || stat(path, &st) != 0)
        return CV_INPUT_UNKNOWN;
    if (S_ISDIR(st.st_mode))
        return has_config_json(path) ? CV_INPUT_HF_DIR : CV_INPUT_UNKNOWN;
    if (!S_ISREG(st.st_mode))
        return CV_INPUT_UNKNOWN;
    int fd = open(path, O_RDONLY | O_NONBLOCK); /* a FIFO is not waited on */
    if (fd < 0)
        return CV_INPUT_UNKNOWN;
    ssize_t got;
    do {
        got = pread(fd, hdr, sizeof hdr, 0);
    } while (got < 0 && errno == EINTR);
    close(fd);
    if (got >= 4 && memcmp(hdr, "GGUF", 4) == 0)
        return CV_INPUT_GGUF;
    if (got >= 8 && memcmp(hdr, "24ka", 4) == 0) /* uint32 0x616b3432, little-endian */
        return CV_INPUT_LLAMA2C_AK42;
    if (got == (ssize_t)sizeof hdr && llama2c_plausible(hdr, (uint64_t)st.st_size))
        return CV_INPUT_LLAMA2C;
    return CV_INPUT_UNKNOWN;
}

/* ---- 16-bit floats ---------------------------------------------------------- */

static uint32_t f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static float bits_f32(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* Shift m right by s (1..31) rounding to nearest, ties to even. */
static uint32_t shift_rne(uint32_t m, unsigned s)
{
    uint32_t q = m >> s, rem = m & ((1u << s) - 1), half = 1u << (s - 1);
    if (rem > half || (rem == half && (q & 1u)))
        q++;
    return q;
}

uint16_t cv_f32_to_f16(float f)
{
    uint32_t x = f32_bits(f), sign = (x >> 16) & 0x8000u, ax = x & 0x7fffffffu;
    uint32_t e = ax >> 23, mant = ax & 0x7fffffu;
    if (ax > 0x7f800000u) /* NaN: keep the top payload bits, force quiet */
        return (uint16_t)(sign | 0x7e00u | (mant >> 13));
    if (e >= 143) /* |f| >= 65536 (or inf) */
        return (uint16_t)(sign | 0x7c00u);
    if (e >= 113) /* normal half; a carry out of the mantissa bumps the exponent (to inf at most) */
        return (uint16_t)(sign | shift_rne(((e - 112) << 23) | mant, 13));
    if (e < 102) /* below half the smallest subnormal: rounds to zero */
        return (uint16_t)sign;
    /* subnormal half: value = (mant | implicit) * 2^(e-150) = m * 2^-24 */
    return (uint16_t)(sign | shift_rne(mant | 0x800000u, 126 - e));
}

float cv_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
    if (e == 31) /* inf or NaN, payload kept */
        return bits_f32(sign | 0x7f800000u | (m << 13));
    if (e == 0) {
        if (m == 0)
            return bits_f32(sign);
        /* subnormal: m * 2^-24, exact in float32 */
        float v = (float)m * bits_f32(0x33800000u);
        return sign ? -v : v;
    }
    return bits_f32(sign | ((e + 112) << 23) | (m << 13));
}

uint16_t cv_f32_to_bf16(float f)
{
    uint32_t x = f32_bits(f);
    if ((x & 0x7fffffffu) > 0x7f800000u) /* NaN: truncate, force quiet */
        return (uint16_t)((x >> 16) | 0x40u);
    return (uint16_t)((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}

float cv_bf16_to_f32(uint16_t h)
{
    return bits_f32((uint32_t)h << 16);
}

/* Tokenizer files into an mdi_vocab: llama2.c tokenizer.bin and SentencePiece
 * tokenizer.model (the ModelProto protobuf, parsed here without libprotobuf).
 *
 * Both readers load the whole file, validate every count and length against
 * its size in a first pass, and only then allocate the vocab and fill it in a
 * second pass, so a corrupt header can never cause a huge allocation. */
#include "convert.h"
#include "json.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Tokenizer files are a few MB at most; refuse anything absurd before reading it. */
#define RT_MAX_FILE ((size_t)1 << 30)
/* tokenizer.bin is recognised by a max_token_length in [1, RT_L2C_MAX_TOKEN_LEN]. */
#define RT_L2C_MAX_TOKEN_LEN 1024
#define RT_PB_MAX_DEPTH 32
#define RT_SPACE "\xe2\x96\x81"

typedef struct {
    const char *path;
    uint8_t *data;
    size_t size;
} rt_file;

static mdi_status read_file(const char *path, rt_file *f, mdi_err *err)
{
    struct stat st;
    memset(f, 0, sizeof *f);
    f->path = path;
    if (!path)
        return mdi_errf(err, MDI_ERR_ARG, "tokenizer path is NULL");
    if (stat(path, &st) == 0 && !S_ISREG(st.st_mode)) /* before a FIFO's open could wait */
        return mdi_errf(err, MDI_ERR_IO, "%s: not a regular file", path);
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return mdi_errf(err, MDI_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    mdi_status s = MDI_OK;
    if (fstat(fileno(fp), &st) != 0 || !S_ISREG(st.st_mode))
        s = mdi_errf(err, MDI_ERR_IO, "%s: not a regular file", path);
    else if (st.st_size == 0)
        s = mdi_errf(err, MDI_ERR_FORMAT, "%s: empty file", path);
    else if ((uint64_t)st.st_size > RT_MAX_FILE)
        s = mdi_errf(err, MDI_ERR_FORMAT, "%s: %lld bytes is too large for a tokenizer file", path,
                     (long long)st.st_size);
    if (s == MDI_OK) {
        f->size = (size_t)st.st_size;
        f->data = malloc(f->size);
        if (!f->data)
            s = mdi_errf(err, MDI_ERR_NOMEM, "%s: out of memory for %zu bytes", path, f->size);
        else if (fread(f->data, 1, f->size, fp) != f->size)
            s = mdi_errf(err, MDI_ERR_IO, "%s: short read (expected %zu bytes)", path, f->size);
    }
    fclose(fp);
    if (s != MDI_OK) {
        free(f->data);
        f->data = NULL;
    }
    return s;
}

static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static float f32_from_bits(uint32_t u)
{
    float x;
    memcpy(&x, &u, sizeof x);
    return x;
}

int cv_is_byte_piece(const uint8_t *p, size_t len)
{
    static const char hex[] = "0123456789ABCDEF";
    return len == 6 && memcmp(p, "<0x", 3) == 0 && p[5] == '>' && p[3] && strchr(hex, p[3]) &&
           p[4] && strchr(hex, p[4]);
}

/* ---- llama2.c tokenizer.bin ------------------------------------------------ */

/* Stored form of token id: "\n<s>\n" -> "<s>" for ids 1 and 2, ' ' -> U+2581.
 * Writes to out when non-NULL; returns the stored length. */
static size_t l2c_piece(int32_t id, const uint8_t *p, size_t len, uint8_t *out)
{
    size_t n = 0;
    if ((id == 1 || id == 2) && len >= 2 && p[0] == '\n' && p[len - 1] == '\n') {
        p++;
        len -= 2;
    }
    for (size_t i = 0; i < len; i++) {
        if (p[i] == ' ') {
            if (out)
                memcpy(out + n, RT_SPACE, 3);
            n += 3;
        } else {
            if (out)
                out[n] = p[i];
            n++;
        }
    }
    return n;
}

/* One pass over tokenizer.bin: validates and counts; fills v when v->offsets is set. */
static mdi_status l2c_scan(const rt_file *f, int32_t want, mdi_vocab *v, int32_t *n_out,
                           uint64_t *bytes_out, mdi_err *err)
{
    if (f->size < 4)
        return mdi_errf(err, MDI_ERR_FORMAT,
                        "%s: max_token_length runs past end of file (size %zu)", f->path, f->size);
    int32_t max_len = (int32_t)le32(f->data);
    if (max_len <= 0)
        return mdi_errf(err, MDI_ERR_FORMAT, "%s: max_token_length %d is not positive", f->path,
                        (int)max_len);
    size_t pos = 4;
    uint64_t total = 0;
    int32_t i = 0;
    for (; want > 0 ? i < want : pos < f->size; i++) {
        if (f->size - pos < 8)
            return mdi_errf(err, MDI_ERR_FORMAT,
                            "%s: token %d score and length run past end of file (size %zu)",
                            f->path, (int)i, f->size);
        float score = f32_from_bits(le32(f->data + pos));
        int32_t len = (int32_t)le32(f->data + pos + 4);
        pos += 8;
        if (len < 0 || (size_t)len > f->size - pos)
            return mdi_errf(err, MDI_ERR_FORMAT,
                            "%s: token %d length %d runs past end of file (size %zu)", f->path,
                            (int)i, (int)len, f->size);
        const uint8_t *p = f->data + pos;
        pos += (size_t)len;
        if (v && v->offsets) {
            int32_t type = MDI_PIECE_NORMAL;
            if (i == 0)
                type = MDI_PIECE_UNKNOWN;
            else if (i == 1 || i == 2)
                type = MDI_PIECE_CONTROL;
            else if (cv_is_byte_piece(p, (size_t)len))
                type = MDI_PIECE_BYTE;
            v->types[i] = type;
            v->scores[i] = score;
            total += l2c_piece(i, p, (size_t)len, v->bytes + total);
            v->offsets[i + 1] = total;
        } else {
            total += l2c_piece(i, p, (size_t)len, NULL);
        }
    }
    if (i == 0)
        return mdi_errf(err, MDI_ERR_FORMAT, "%s: no tokens", f->path);
    *n_out = i;
    *bytes_out = total;
    return MDI_OK;
}

/* mdi_vocab_validate, its message prefixed with the file's name. */
static mdi_status validate_in(const rt_file *f, const mdi_vocab *v, mdi_err *err)
{
    mdi_err e;
    mdi_status s = mdi_vocab_validate(v, &e);
    return s ? mdi_errf(err, s, "%s: %s", f->path, e.msg) : MDI_OK;
}

static mdi_status l2c_parse(const rt_file *f, int32_t vocab_size, mdi_vocab *out, mdi_err *err)
{
    int32_t n;
    uint64_t total;
    mdi_status s = l2c_scan(f, vocab_size, NULL, &n, &total, err);
    if (s == MDI_OK && vocab_size > 0) { /* the file has no count: it must end there */
        int32_t n_all = 0;
        uint64_t all_bytes;
        mdi_err whole;
        if (l2c_scan(f, 0, NULL, &n_all, &all_bytes, &whole) == MDI_OK && n_all != vocab_size)
            s = mdi_errf(err, MDI_ERR_MISMATCH,
                         "%s holds %d pieces but the model's vocabulary has %d: a tokenizer of "
                         "another model",
                         f->path, (int)n_all, (int)vocab_size);
        else if (n_all != vocab_size)
            s = mdi_errf(err, MDI_ERR_MISMATCH,
                         "%s goes on after the model's %d pieces: a tokenizer of another model",
                         f->path, (int)vocab_size);
    }
    if (s == MDI_OK)
        s = mdi_vocab_alloc(out, n, total, err);
    if (s == MDI_OK)
        s = l2c_scan(f, vocab_size, out, &n, &total, err);
    if (s == MDI_OK) {
        out->unk_id = 0;
        out->bos_id = n > 1 ? 1 : -1;
        out->eos_id = n > 2 ? 2 : -1;
        out->add_dummy_prefix = 1;
        s = validate_in(f, out, err);
    }
    if (s != MDI_OK)
        mdi_vocab_free(out);
    return s;
}

mdi_status cv_read_llama2c_tokenizer(const char *path, int32_t vocab_size, mdi_vocab *out,
                                     mdi_err *err)
{
    rt_file f;
    if (!out)
        return mdi_errf(err, MDI_ERR_ARG, "cv_read_llama2c_tokenizer: out is NULL");
    memset(out, 0, sizeof *out);
    mdi_status s = read_file(path, &f, err);
    if (s == MDI_OK)
        s = l2c_parse(&f, vocab_size, out, err);
    free(f.data);
    return s;
}

/* ---- SentencePiece ModelProto ---------------------------------------------- */

/* A protobuf message being read: bytes [p, end) of file f. */
typedef struct {
    const rt_file *f;
    const uint8_t *p, *end;
    const char *name; /* "model", "piece", "trainer_spec", "normalizer_spec" */
    int32_t index;    /* piece number for "piece" and for fields of "model" */
} pb_msg;

typedef struct {
    uint32_t field, wire;
    uint64_t u;          /* varint, fixed32 or fixed64 value */
    const uint8_t *data; /* wire type 2: payload */
    size_t len;
} pb_field;

enum { PB_VARINT = 0, PB_I64 = 1, PB_LEN = 2, PB_SGROUP = 3, PB_EGROUP = 4, PB_I32 = 5 };

/* Where a field is, for messages: "piece 17" or "trainer_spec field 40". */
static void pb_where(const pb_msg *m, uint32_t field, char *buf, size_t cap)
{
    int is_piece = strcmp(m->name, "piece") == 0, is_model = strcmp(m->name, "model") == 0;
    if ((is_model && field == 1) || (is_piece && field == 0))
        snprintf(buf, cap, "piece %d", (int)m->index);
    else if (is_model && (field == 2 || field == 3))
        snprintf(buf, cap, "%s", field == 2 ? "trainer_spec" : "normalizer_spec");
    else if (is_piece)
        snprintf(buf, cap, "piece %d field %u", (int)m->index, (unsigned)field);
    else if (field == 0)
        snprintf(buf, cap, "%s", m->name);
    else
        snprintf(buf, cap, "%s field %u", m->name, (unsigned)field);
}

static mdi_status pb_fail(const pb_msg *m, uint32_t field, const char *what, mdi_err *err)
{
    char where[64];
    pb_where(m, field, where, sizeof where);
    const char *box = m->end == m->f->data + m->f->size ? "file" : "its message";
    return mdi_errf(err, MDI_ERR_FORMAT, "%s: %s %s past end of %s (offset %zu, size %zu)",
                    m->f->path, where, what, box, (size_t)(m->p - m->f->data), m->f->size);
}

/* Reads a varint; 0 on success, -1 if truncated or longer than 10 bytes. */
static int pb_varint(pb_msg *m, uint64_t *v)
{
    uint64_t r = 0;
    for (int shift = 0; shift < 70; shift += 7) {
        if (m->p >= m->end)
            return -1;
        uint8_t c = *m->p++;
        r |= (uint64_t)(c & 0x7f) << shift;
        if (c < 0x80) {
            *v = r;
            return 0;
        }
    }
    return -1;
}

static mdi_status pb_next(pb_msg *m, pb_field *fd, int depth, mdi_err *err);

/* Skips a group whose start tag (field) has just been read. */
static mdi_status pb_skip_group(pb_msg *m, uint32_t field, int depth, mdi_err *err)
{
    pb_field fd;
    if (depth >= RT_PB_MAX_DEPTH)
        return mdi_errf(err, MDI_ERR_FORMAT, "%s: %s field %u: groups nested too deeply",
                        m->f->path, m->name, (unsigned)field);
    for (;;) {
        if (m->p >= m->end)
            return pb_fail(m, field, "group runs", err);
        mdi_status s = pb_next(m, &fd, depth + 1, err);
        if (s != MDI_OK)
            return s;
        if (fd.wire == PB_EGROUP)
            return fd.field == field
                       ? MDI_OK
                       : mdi_errf(err, MDI_ERR_FORMAT, "%s: %s field %u: group ended by field %u",
                                  m->f->path, m->name, (unsigned)field, (unsigned)fd.field);
    }
}

/* Reads the next field of m (tag and value); groups are skipped whole. */
static mdi_status pb_next(pb_msg *m, pb_field *fd, int depth, mdi_err *err)
{
    uint64_t tag;
    memset(fd, 0, sizeof *fd);
    if (pb_varint(m, &tag) != 0)
        return pb_fail(m, 0, "tag runs", err);
    if (tag >> 3 == 0 || tag >> 3 > 0x1fffffff)
        return mdi_errf(err, MDI_ERR_FORMAT, "%s: %s: bad field number %llu at offset %zu",
                        m->f->path, m->name, (unsigned long long)(tag >> 3),
                        (size_t)(m->p - m->f->data));
    fd->field = (uint32_t)(tag >> 3);
    fd->wire = (uint32_t)(tag & 7);
    size_t left = (size_t)(m->end - m->p);
    switch (fd->wire) {
    case PB_VARINT:
        return pb_varint(m, &fd->u) == 0 ? MDI_OK : pb_fail(m, fd->field, "varint runs", err);
    case PB_I64:
    case PB_I32: {
        size_t w = fd->wire == PB_I64 ? 8 : 4;
        if (left < w)
            return pb_fail(m, fd->field, "value runs", err);
        fd->u = le32(m->p);
        if (w == 8)
            fd->u |= (uint64_t)le32(m->p + 4) << 32;
        m->p += w;
        return MDI_OK;
    }
    case PB_LEN: {
        uint64_t len;
        if (pb_varint(m, &len) != 0)
            return pb_fail(m, fd->field, "length runs", err);
        if (len > (uint64_t)(m->end - m->p)) {
            char what[64];
            snprintf(what, sizeof what, "length %llu runs", (unsigned long long)len);
            return pb_fail(m, fd->field, what, err);
        }
        fd->data = m->p;
        fd->len = (size_t)len;
        m->p += len;
        return MDI_OK;
    }
    case PB_SGROUP:
        return pb_skip_group(m, fd->field, depth, err);
    case PB_EGROUP:
        if (depth == 0)
            return mdi_errf(err, MDI_ERR_FORMAT, "%s: %s field %u: end of a group never started",
                            m->f->path, m->name, (unsigned)fd->field);
        return MDI_OK;
    default:
        return mdi_errf(err, MDI_ERR_FORMAT, "%s: %s field %u has unknown wire type %u", m->f->path,
                        m->name, (unsigned)fd->field, (unsigned)fd->wire);
    }
}

static mdi_status pb_want_wire(const pb_msg *m, const pb_field *fd, uint32_t wire, mdi_err *err)
{
    if (fd->wire == wire)
        return MDI_OK;
    char where[64];
    pb_where(m, fd->field, where, sizeof where);
    return mdi_errf(err, MDI_ERR_FORMAT, "%s: %s has wire type %u, expected %u", m->f->path, where,
                    (unsigned)fd->wire, (unsigned)wire);
}

/* What the first pass learns about a ModelProto. */
typedef struct {
    int32_t n, n_byte;
    uint64_t bytes;
    uint64_t model_type; /* 1 unigram (default), 2 BPE */
    int64_t unk_id, bos_id, eos_id;
    int byte_fallback, treat_ws_as_suffix;
    int add_dummy_prefix, remove_extra_ws, escape_ws;
    size_t charsmap_len;
} spm_info;

/* Parses SentencePiece message i; when v->offsets is set, stores it as piece i. */
static mdi_status spm_piece(const rt_file *f, const pb_field *outer, int32_t i, spm_info *info,
                            mdi_vocab *v, mdi_err *err)
{
    pb_msg m = {f, outer->data, outer->data + outer->len, "piece", i};
    pb_field fd, piece = {0};
    float score = 0.0f;
    uint64_t type = MDI_PIECE_NORMAL;
    while (m.p < m.end) {
        mdi_status s = pb_next(&m, &fd, 0, err);
        if (s == MDI_OK && fd.field >= 1 && fd.field <= 3)
            s = pb_want_wire(&m, &fd,
                             fd.field == 1   ? PB_LEN
                             : fd.field == 2 ? PB_I32
                                             : PB_VARINT,
                             err);
        if (s != MDI_OK)
            return s;
        if (fd.field == 1)
            piece = fd;
        else if (fd.field == 2)
            score = f32_from_bits((uint32_t)fd.u);
        else if (fd.field == 3)
            type = fd.u;
    }
    if (piece.len == 0)
        return mdi_errf(err, MDI_ERR_FORMAT, "%s: piece %d is empty", f->path, (int)i);
    if (type < MDI_PIECE_NORMAL || type > MDI_PIECE_BYTE)
        return mdi_errf(err, MDI_ERR_FORMAT, "%s: piece %d has unknown type %llu", f->path, (int)i,
                        (unsigned long long)type);
    if (type == MDI_PIECE_BYTE && !cv_is_byte_piece(piece.data, piece.len))
        return mdi_errf(err, MDI_ERR_FORMAT, "%s: byte piece %d is not spelled <0xHH>", f->path,
                        (int)i);
    info->n_byte += type == MDI_PIECE_BYTE;
    if (v->offsets) {
        memcpy(v->bytes + v->offsets[i], piece.data, piece.len);
        v->offsets[i + 1] = v->offsets[i] + piece.len;
        v->scores[i] = score;
        v->types[i] = (int32_t)type;
    }
    info->bytes += piece.len;
    return MDI_OK;
}

/* A varint that must be an int32 (negative values are sign-extended to 64 bits). */
static mdi_status spm_int32(const pb_msg *m, const pb_field *fd, int64_t *out, mdi_err *err)
{
    int64_t x = (int64_t)fd->u;
    if (x < INT32_MIN || x > INT32_MAX)
        return mdi_errf(err, MDI_ERR_FORMAT, "%s: %s field %u value %lld is not an int32",
                        m->f->path, m->name, (unsigned)fd->field, (long long)x);
    *out = x;
    return MDI_OK;
}

static mdi_status spm_trainer(const rt_file *f, const pb_field *outer, spm_info *info, mdi_err *err)
{
    pb_msg m = {f, outer->data, outer->data + outer->len, "trainer_spec", -1};
    pb_field fd;
    while (m.p < m.end) {
        mdi_status s = pb_next(&m, &fd, 0, err);
        int known =
            fd.field == 3 || fd.field == 24 || fd.field == 35 || (fd.field >= 40 && fd.field <= 42);
        if (s == MDI_OK && known)
            s = pb_want_wire(&m, &fd, PB_VARINT, err);
        if (s == MDI_OK && fd.field == 40)
            s = spm_int32(&m, &fd, &info->unk_id, err);
        else if (s == MDI_OK && fd.field == 41)
            s = spm_int32(&m, &fd, &info->bos_id, err);
        else if (s == MDI_OK && fd.field == 42)
            s = spm_int32(&m, &fd, &info->eos_id, err);
        if (s != MDI_OK)
            return s;
        if (fd.field == 3)
            info->model_type = fd.u;
        else if (fd.field == 24)
            info->treat_ws_as_suffix = fd.u != 0;
        else if (fd.field == 35)
            info->byte_fallback = fd.u != 0;
    }
    return MDI_OK;
}

static mdi_status spm_normalizer(const rt_file *f, const pb_field *outer, spm_info *info,
                                 mdi_err *err)
{
    pb_msg m = {f, outer->data, outer->data + outer->len, "normalizer_spec", -1};
    pb_field fd;
    while (m.p < m.end) {
        mdi_status s = pb_next(&m, &fd, 0, err);
        if (s == MDI_OK && fd.field >= 2 && fd.field <= 5)
            s = pb_want_wire(&m, &fd, fd.field == 2 ? PB_LEN : PB_VARINT, err);
        if (s != MDI_OK)
            return s;
        if (fd.field == 2)
            info->charsmap_len = fd.len;
        else if (fd.field == 3)
            info->add_dummy_prefix = fd.u != 0;
        else if (fd.field == 4)
            info->remove_extra_ws = fd.u != 0;
        else if (fd.field == 5)
            info->escape_ws = fd.u != 0;
    }
    return MDI_OK;
}

/* One pass over the ModelProto: validates and measures; fills v when v->offsets is set. */
static mdi_status spm_scan(const rt_file *f, spm_info *info, mdi_vocab *v, mdi_err *err)
{
    pb_msg m = {f, f->data, f->data + f->size, "model", 0};
    pb_field fd;
    *info = (spm_info){.model_type = 1,
                       .unk_id = 0,
                       .bos_id = 1,
                       .eos_id = 2,
                       .add_dummy_prefix = 1,
                       .remove_extra_ws = 1,
                       .escape_ws = 1};
    while (m.p < m.end) {
        mdi_status s = pb_next(&m, &fd, 0, err);
        if (s == MDI_OK && fd.field >= 1 && fd.field <= 3)
            s = pb_want_wire(&m, &fd, PB_LEN, err);
        if (s != MDI_OK)
            return s;
        if (fd.field == 1) {
            if (m.index == INT32_MAX - 1)
                return mdi_errf(err, MDI_ERR_FORMAT, "%s: too many pieces", f->path);
            s = spm_piece(f, &fd, m.index++, info, v, err);
        } else if (fd.field == 2) {
            s = spm_trainer(f, &fd, info, err);
        } else if (fd.field == 3) {
            s = spm_normalizer(f, &fd, info, err);
        }
        if (s != MDI_OK)
            return s;
    }
    info->n = m.index;
    return MDI_OK;
}

/* Refuses models our encoder would not reproduce exactly. */
static mdi_status spm_check_supported(const rt_file *f, const spm_info *in, mdi_err *err)
{
    const char *why = NULL;
    if (in->n == 0)
        return mdi_errf(err, MDI_ERR_FORMAT, "%s: no pieces", f->path);
    if (in->model_type != 2)
        return mdi_errf(err, MDI_ERR_UNSUPPORTED, "%s: trainer_spec model_type %llu is not BPE (2)",
                        f->path, (unsigned long long)in->model_type);
    if (in->charsmap_len > 0)
        why = "normalizer_spec has a precompiled_charsmap (only identity is supported)";
    else if (in->remove_extra_ws)
        why = "normalizer_spec remove_extra_whitespaces is set";
    else if (!in->escape_ws)
        why = "normalizer_spec escape_whitespaces is off";
    else if (in->treat_ws_as_suffix)
        why = "trainer_spec treat_whitespace_as_suffix is set";
    else if (in->n_byte > 0 && !in->byte_fallback)
        why = "byte pieces without trainer_spec byte_fallback";
    if (why)
        return mdi_errf(err, MDI_ERR_UNSUPPORTED, "%s: %s", f->path, why);
    const int64_t ids[3] = {in->unk_id, in->bos_id, in->eos_id};
    const char *names[3] = {"unk_id", "bos_id", "eos_id"};
    for (int k = 0; k < 3; k++)
        if (ids[k] < -1 || ids[k] >= in->n)
            return mdi_errf(err, MDI_ERR_FORMAT,
                            "%s: trainer_spec %s %lld out of range (%d pieces)", f->path, names[k],
                            (long long)ids[k], (int)in->n);
    return MDI_OK;
}

static mdi_status spm_parse(const rt_file *f, mdi_vocab *out, mdi_err *err)
{
    spm_info info;
    mdi_status s = spm_scan(f, &info, out, err);
    if (s == MDI_OK)
        s = spm_check_supported(f, &info, err);
    if (s == MDI_OK)
        s = mdi_vocab_alloc(out, info.n, info.bytes, err);
    if (s == MDI_OK)
        s = spm_scan(f, &info, out, err);
    if (s == MDI_OK) {
        out->unk_id = (int32_t)info.unk_id;
        out->bos_id = (int32_t)info.bos_id;
        out->eos_id = (int32_t)info.eos_id;
        out->add_dummy_prefix = info.add_dummy_prefix;
        s = validate_in(f, out, err);
    }
    if (s != MDI_OK)
        mdi_vocab_free(out);
    return s;
}

mdi_status cv_read_spm_model(const char *path, mdi_vocab *out, mdi_err *err)
{
    rt_file f;
    if (!out)
        return mdi_errf(err, MDI_ERR_ARG, "cv_read_spm_model: out is NULL");
    memset(out, 0, sizeof *out);
    mdi_status s = read_file(path, &f, err);
    if (s == MDI_OK)
        s = spm_parse(&f, out, err);
    free(f.data);
    return s;
}

/* ---- either, by content ---------------------------------------------------- */

/* tokenizer.bin starts with int32 max_token_length, in practice well under
 * RT_L2C_MAX_TOKEN_LEN. A ModelProto starts with tag 0x0a (field 1, a piece)
 * followed by the piece's length and its first tag (>= 0x08), so read as an
 * int32 it is at least 0x080000: the two ranges cannot overlap. */
mdi_status cv_read_tokenizer_file(const char *path, int32_t vocab_size, mdi_vocab *out,
                                  mdi_err *err)
{
    rt_file f;
    if (!out)
        return mdi_errf(err, MDI_ERR_ARG, "cv_read_tokenizer_file: out is NULL");
    memset(out, 0, sizeof *out);
    mdi_status s = read_file(path, &f, err);
    if (s != MDI_OK)
        return s;
    uint32_t head = f.size >= 4 ? le32(f.data) : 0;
    if (head >= 1 && head <= RT_L2C_MAX_TOKEN_LEN) {
        s = l2c_parse(&f, vocab_size, out, err);
    } else if (f.data[0] == 0x0a) {
        s = spm_parse(&f, out, err);
        if (s == MDI_OK && vocab_size > 0 && out->n != vocab_size) {
            s = mdi_errf(err, MDI_ERR_MISMATCH, "%s: %d pieces, expected %d", path, (int)out->n,
                         (int)vocab_size);
            mdi_vocab_free(out);
        }
    } else {
        s = mdi_errf(err, MDI_ERR_FORMAT,
                     "%s: neither a SentencePiece model nor a llama2.c tokenizer.bin", path);
    }
    free(f.data);
    return s;
}

#define TC_MAX_BYTES ((size_t)16 << 20)

/* An HF directory's tokenizer_config.json (path), when it has one:
 * transformers adds BOS and no EOS to a Llama prompt unless add_bos_token /
 * add_eos_token say otherwise, and mdi-llm does exactly that, so a model that
 * asks for anything else is refused rather than fed prompts it was not
 * trained on. */
mdi_status cv_check_tokenizer_config(const char *path, mdi_err *err)
{
    static const struct {
        const char *key;
        int refused; /* the value that is not supported */
        const char *why;
    } flags[2] = {{"add_bos_token", 0, "prompts without BOS are not supported"},
                  {"add_eos_token", 1, "prompts ending in EOS are not supported"}};
    struct stat st;
    cv_json *j = NULL;
    mdi_status s;
    if (stat(path, &st) != 0) {
        if (errno == ENOENT && lstat(path, &st) != 0)
            return MDI_OK; /* none: the defaults */
        return mdi_errf(err, MDI_ERR_IO, "%s: %s", path,
                        errno == ENOENT ? "a symbolic link to nothing" : strerror(errno));
    }
    if ((s = cv_json_parse_file(path, TC_MAX_BYTES, &j, err)) != MDI_OK)
        return s;
    if (cv_json_type_of(j) != CV_JSON_OBJECT)
        s = mdi_errf(err, MDI_ERR_FORMAT, "%s: the top level is a %s, expected an object", path,
                     cv_json_type_name(cv_json_type_of(j)));
    for (int k = 0; k < 2 && s == MDI_OK; k++) {
        const cv_json *v = cv_json_get(j, flags[k].key);
        int b;
        if (!v || cv_json_is_null(v))
            continue; /* transformers' default */
        if (!cv_json_as_bool(v, &b))
            s = mdi_errf(err, MDI_ERR_FORMAT, "%s: '%s' is a %s, expected a bool", path,
                         flags[k].key, cv_json_type_name(cv_json_type_of(v)));
        else if (b == flags[k].refused)
            s = mdi_errf(err, MDI_ERR_UNSUPPORTED, "%s: %s is %s: %s", path, flags[k].key,
                         b ? "true" : "false", flags[k].why);
    }
    cv_json_free(j);
    return s;
}

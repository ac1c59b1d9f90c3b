/* Tokenizer against the real Llama 2 and stories260K tokenizers (label model):
 * every reference encoding from sentencepiece, the llama2.c prompts, and the
 * readers' behaviour on truncated and corrupted copies of the real files. */
#include "test_util.h"
#include "pb_writer.h"
#include "json_test_util.h"

#include <time.h>
#include <unistd.h>

#include "convert.h"
#include "mdi/tokenizer.h"

#define L2_DIR "llama2-tokenizer/"

/* ---- helpers ----------------------------------------------------------------- */

/* Writes data to a fresh file under /tmp; path receives its name. */
static void write_tmp(const void *data, size_t len, char path[64])
{
    snprintf(path, 64, "/tmp/mdi_tok_XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *fp = fdopen(fd, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(data, 1, len, fp), len);
    assert_int_equal(fclose(fp), 0);
}

typedef enum { RD_BIN32000, RD_BIN_EOF, RD_SPM, RD_ANY } reader;

static mdi_status read_vocab(reader r, const char *path, mdi_vocab *v, mdi_err *err)
{
    memset(v, 0, sizeof *v);
    switch (r) {
    case RD_BIN32000:
        return cv_read_llama2c_tokenizer(path, 32000, v, err);
    case RD_BIN_EOF:
        return cv_read_llama2c_tokenizer(path, 0, v, err);
    case RD_SPM:
        return cv_read_spm_model(path, v, err);
    default:
        return cv_read_tokenizer_file(path, 0, v, err);
    }
}

/* Reads a tokenizer file of model `rel`, or skips the test when it is absent. */
static mdi_tokenizer *load(const char *rel, reader r)
{
    char buf[512];
    const char *path = mdi_test_model_path(rel, buf, sizeof buf);
    mdi_vocab v;
    mdi_err err;
    mdi_tokenizer *t = NULL;
    if (read_vocab(r, path, &v, &err) != MDI_OK)
        fail_msg("%s", err.msg);
    if (mdi_tokenizer_create(&v, &t, &err) != MDI_OK)
        fail_msg("%s", err.msg);
    mdi_vocab_free(&v);
    return t;
}

/* The reader itself: escapes, surrogate pairs, empty lists. */
static void test_json_reader(void **state)
{
    (void)state;
    static const char doc[] = "[{\"text\": \"a\\u00e9\\ud83e\\udd99\\n\\\"\\\\/\\/\", "
                              "\"ids_no_bos\": [1, -2,3]},\n {\"text\":\"\",\"ids_no_bos\":[]}]\n";
    size_t n;
    enc_case *c = parse_encodings(doc, sizeof doc - 1, &n);
    assert_int_equal(n, 2);
    assert_string_equal(c[0].text, "a\xc3\xa9\xf0\x9f\xa6\x99\n\"\\//");
    assert_int_equal(c[0].n, 3);
    assert_int_equal(c[0].ids[1], -2);
    assert_int_equal(c[1].len, 0);
    assert_int_equal(c[1].n, 0);
    free_encodings(c, n);
}

/* ---- reference encodings ------------------------------------------------------- */

/* A 2000+ token prompt encodes fast: the merge loop is not quadratic. */
static void check_long_prompt(const mdi_tokenizer *t, const enc_case *cases, size_t n_cases)
{
    size_t len = 0, n;
    char *text = malloc(16 * 1024);
    int32_t *ids = malloc(16 * 1024 * sizeof *ids);
    assert_true(text && ids);
    for (size_t c = 0; len < 12000; c = (c + 1) % n_cases) {
        memcpy(text + len, cases[c].text, cases[c].len);
        len += cases[c].len;
        text[len++] = ' ';
    }
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_int_equal(mdi_tokenizer_encode(t, text, len, 1, ids, 16 * 1024, &n, NULL), MDI_OK);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-6;
    fprintf(stderr, "encoded %zu bytes into %zu tokens in %.2f ms\n", len, n, ms);
    assert_true(n > 2000); /* its speed is printed, not asserted: the machines are shared */
    free(ids);
    free(text);
}

/* Every reference encoding from sentencepiece is reproduced exactly. */
static void check_all_encodings(reader r, const char *rel)
{
    size_t n_cases, n;
    enc_case *cases = read_encodings(&n_cases);
    assert_true(n_cases >= 40);
    mdi_tokenizer *t = load(rel, r);
    int32_t ids[MAX_IDS];
    for (size_t c = 0; c < n_cases; c++) {
        mdi_err err;
        if (mdi_tokenizer_encode(t, cases[c].text, cases[c].len, 0, ids, MAX_IDS, &n, &err))
            fail_msg("case %zu: %s", c, err.msg);
        size_t i = 0;
        while (i < n && i < cases[c].n && ids[i] == cases[c].ids[i])
            i++;
        if (i < n || i < cases[c].n)
            fail_msg("%s: case %zu \"%s\": %zu ids (want %zu), first difference at %zu: %d vs %d",
                     rel, c, cases[c].text, n, cases[c].n, i, i < n ? (int)ids[i] : -1,
                     i < cases[c].n ? (int)cases[c].ids[i] : -1);
    }
    fprintf(stderr, "%s: %zu/%zu reference encodings match\n", rel, n_cases, n_cases);
    if (r == RD_SPM)
        check_long_prompt(t, cases, n_cases);
    mdi_tokenizer_free(t);
    free_encodings(cases, n_cases);
}

static void test_encodings_bin(void **state)
{
    (void)state;
    check_all_encodings(RD_BIN32000, L2_DIR "tokenizer.bin");
}

static void test_encodings_spm(void **state)
{
    (void)state;
    check_all_encodings(RD_SPM, L2_DIR "tokenizer.model");
}

/* Checks the ids of text encoded with BOS. */
static void expect_ids_t(const mdi_tokenizer *t, const char *text, const int32_t *want,
                         size_t n_want)
{
    int32_t ids[16];
    size_t n;
    assert_int_equal(mdi_tokenizer_encode(t, text, strlen(text), 1, ids, 16, &n, NULL), MDI_OK);
    assert_int_equal(n, n_want);
    assert_memory_equal(ids, want, n * sizeof *ids);
}

static void test_stories_prompts(void **state)
{
    (void)state;
    static const int32_t p1[5] = {1, 403, 407, 261, 378}, p2[5] = {1, 291, 376, 400, 428};
    const char *files[2] = {"stories260K/tok512.bin", "stories260K-hf/tokenizer.model"};
    for (int f = 0; f < 2; f++) {
        mdi_tokenizer *t = load(files[f], RD_ANY);
        assert_int_equal(mdi_tokenizer_n_pieces(t), 512);
        assert_int_equal(mdi_tokenizer_bos(t), 1);
        assert_int_equal(mdi_tokenizer_eos(t), 2);
        expect_ids_t(t, "Once upon a time", p1, 5);
        expect_ids_t(t, "The little dog", p2, 5);
        mdi_tokenizer_free(t);
    }
}

static void check_decode(const mdi_tokenizer *t, const int32_t *ids, size_t n, const char *want)
{
    char out[1024];
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        char buf[8];
        size_t len;
        const char *s = mdi_tokenizer_decode(t, i ? ids[i - 1] : -1, ids[i], buf, &len);
        assert_true(total + len < sizeof out);
        memcpy(out + total, s, len);
        total += len;
    }
    out[total] = '\0';
    assert_string_equal(out, want);
}

/* The greedy continuations llama2.c printed (models README) decode to its text. */
static void test_decode_reference(void **state)
{
    (void)state;
    static const int32_t s1[65] = {1,   403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421,
                                   395, 317, 426, 338, 401, 396, 267, 337, 410, 408, 419, 292, 411,
                                   322, 265, 282, 295, 433, 426, 385, 328, 432, 358, 394, 261, 370,
                                   432, 352, 266, 268, 388, 426, 338, 391, 266, 267, 337, 335, 312,
                                   432, 398, 312, 286, 267, 414, 270, 333, 415, 426, 13,  438, 310};
    static const int32_t s2[65] = {1,   291, 376, 400, 428, 286, 261, 376, 298, 315, 421, 395, 317,
                                   426, 338, 401, 396, 267, 337, 335, 311, 267, 422, 419, 269, 311,
                                   267, 422, 419, 426, 385, 328, 432, 358, 394, 261, 370, 268, 414,
                                   444, 335, 261, 370, 268, 414, 444, 426, 359, 413, 286, 261, 370,
                                   432, 352, 266, 268, 388, 426, 338, 391, 266, 267, 337, 335, 312};
    const char *files[2] = {"stories260K/tok512.bin", "stories260K-hf/tokenizer.model"};
    for (int f = 0; f < 2; f++) {
        mdi_tokenizer *t = load(files[f], RD_ANY);
        check_decode(t, s1, 65,
                     "Once upon a time, there was a little girl named Lily. She loved to play "
                     "outside in the park. One day, she saw a big, red ball. She wanted to play "
                     "with it, but it was too high.\nLily");
        check_decode(t, s2, 65,
                     "The little dog was a little girl named Lily. She loved to play with her toys "
                     "and her toys. One day, she saw a big box with a big box. It was a big, red "
                     "ball. She wanted to play with it");
        mdi_tokenizer_free(t);
    }
}

/* tokenizer.bin and tokenizer.model hold the same vocabulary, scores and ids. */
static void check_same_vocab(const char *bin_rel, const char *spm_rel, int32_t n)
{
    char b1[512], b2[512];
    const char *bin = mdi_test_model_path(bin_rel, b1, sizeof b1);
    const char *spm = mdi_test_model_path(spm_rel, b2, sizeof b2);
    mdi_vocab a, b;
    mdi_err err;
    if (cv_read_llama2c_tokenizer(bin, n, &a, &err) != MDI_OK)
        fail_msg("%s", err.msg);
    if (cv_read_spm_model(spm, &b, &err) != MDI_OK)
        fail_msg("%s", err.msg);
    assert_int_equal(a.n, n);
    assert_int_equal(b.n, n);
    assert_int_equal(a.offsets[n], b.offsets[n]);
    assert_memory_equal(a.offsets, b.offsets, ((size_t)n + 1) * sizeof *a.offsets);
    assert_memory_equal(a.bytes, b.bytes, (size_t)a.offsets[n]);
    assert_memory_equal(a.scores, b.scores, (size_t)n * sizeof *a.scores);
    assert_memory_equal(a.types, b.types, (size_t)n * sizeof *a.types);
    assert_int_equal(a.bos_id, b.bos_id);
    assert_int_equal(a.eos_id, b.eos_id);
    assert_int_equal(a.unk_id, b.unk_id);
    assert_int_equal(a.add_dummy_prefix, b.add_dummy_prefix);
    assert_int_equal(b.types[0], MDI_PIECE_UNKNOWN);
    assert_int_equal(b.types[1], MDI_PIECE_CONTROL);
    assert_int_equal(b.types[3], MDI_PIECE_BYTE);
    assert_memory_equal(b.bytes + b.offsets[1], "<s>", 3);
    mdi_vocab_free(&a);
    mdi_vocab_free(&b);
}

static void test_bin_and_model_agree(void **state)
{
    (void)state;
    check_same_vocab(L2_DIR "tokenizer.bin", L2_DIR "tokenizer.model", 32000);
    check_same_vocab("stories260K/tok512.bin", "stories260K-hf/tokenizer.model", 512);
}

static void test_read_tokenizer_file(void **state)
{
    (void)state;
    char b1[512], b2[512], tmp[64];
    const char *bin = mdi_test_model_path(L2_DIR "tokenizer.bin", b1, sizeof b1);
    const char *spm = mdi_test_model_path(L2_DIR "tokenizer.model", b2, sizeof b2);
    mdi_vocab v;
    mdi_err err;
    assert_int_equal(cv_read_tokenizer_file(bin, 32000, &v, &err), MDI_OK);
    assert_int_equal(v.n, 32000);
    mdi_vocab_free(&v);
    assert_int_equal(cv_read_tokenizer_file(bin, 0, &v, &err), MDI_OK);
    assert_int_equal(v.n, 32000);
    mdi_vocab_free(&v);
    assert_int_equal(cv_read_tokenizer_file(spm, 32000, &v, &err), MDI_OK);
    assert_int_equal(v.n, 32000);
    mdi_vocab_free(&v);
    assert_int_equal(cv_read_tokenizer_file(spm, 512, &v, &err), MDI_ERR_MISMATCH);
    assert_non_null(strstr(err.msg, "32000 pieces, expected 512"));
    assert_null(v.bytes);
    assert_int_equal(cv_read_tokenizer_file(bin, 32001, &v, &err), MDI_ERR_FORMAT);
    assert_non_null(strstr(err.msg, "token 32000"));
    assert_null(v.bytes);

    write_tmp("GGUF\3\0\0\0", 8, tmp);
    assert_int_equal(cv_read_tokenizer_file(tmp, 0, &v, &err), MDI_ERR_FORMAT);
    assert_non_null(strstr(err.msg, "neither"));
    unlink(tmp);
    assert_int_equal(cv_read_tokenizer_file("/nonexistent/tokenizer.model", 0, &v, &err),
                     MDI_ERR_IO);
    assert_non_null(strstr(err.msg, "/nonexistent/tokenizer.model"));
    assert_int_equal(cv_read_spm_model("/tmp", &v, &err), MDI_ERR_IO);
    assert_int_equal(cv_read_llama2c_tokenizer(NULL, 0, &v, &err), MDI_ERR_ARG);
    assert_int_equal(cv_read_spm_model(spm, NULL, &err), MDI_ERR_ARG);
}

/* ---- damaged files ------------------------------------------------ */

/* Reading data[0 .. len) fails with a one-line message naming the file (and needle). */
static void expect_fail(reader r, const uint8_t *data, size_t len, const char *needle)
{
    char tmp[64];
    mdi_vocab v;
    mdi_err err;
    write_tmp(data, len, tmp);
    mdi_status s = read_vocab(r, tmp, &v, &err);
    unlink(tmp);
    if (s == MDI_OK)
        fail_msg("reading %zu bytes succeeded", len);
    assert_null(v.bytes);
    assert_int_equal(err.status, s);
    assert_memory_equal(err.msg, tmp, strlen(tmp));
    assert_null(strchr(err.msg, '\n'));
    if (needle && !strstr(err.msg, needle))
        fail_msg("message \"%s\" lacks \"%s\"", err.msg, needle);
}

static uint8_t *model_bytes(const char *rel, size_t *len)
{
    char buf[512];
    return read_all(mdi_test_model_path(rel, buf, sizeof buf), len);
}

static void test_truncated_spm(void **state)
{
    (void)state;
    size_t size;
    uint8_t *data = model_bytes(L2_DIR "tokenizer.model", &size);
    for (size_t cut = 0; cut < size; cut += cut < 100 ? 1 : cut > size - 64 ? 1 : 4999)
        expect_fail(RD_SPM, data, cut, NULL);
    expect_fail(RD_SPM, data, 0, "empty file");
    expect_fail(RD_SPM, data, 1, "runs past end of file");
    expect_fail(RD_SPM, data, size - 1, "normalizer_spec");
    free(data);
}

static void test_truncated_bin(void **state)
{
    (void)state;
    size_t size;
    uint8_t *data = model_bytes(L2_DIR "tokenizer.bin", &size);
    for (size_t cut = 0; cut < size; cut += cut < 100 ? 1 : cut > size - 64 ? 1 : 3989)
        expect_fail(RD_BIN32000, data, cut, NULL);
    expect_fail(RD_BIN32000, data, 3, "max_token_length runs past end of file");
    expect_fail(RD_BIN_EOF, data, 4, "no tokens");
    expect_fail(RD_BIN32000, data, 10, "token 0 score and length run past end of file");
    expect_fail(RD_BIN32000, data, size - 1, "token 31999 length");
    for (size_t cut = 5; cut < size; cut += 7919) { /* until-EOF mode: only mid-token cuts fail */
        char tmp[64];
        mdi_vocab v;
        mdi_err err;
        write_tmp(data, cut, tmp);
        if (read_vocab(RD_BIN_EOF, tmp, &v, &err) == MDI_OK)
            assert_true(v.n > 0 && v.n < 32000);
        else
            assert_non_null(strstr(err.msg, "past end of file"));
        mdi_vocab_free(&v);
        unlink(tmp);
    }
    free(data);
}

static size_t get_varint(const uint8_t *p, uint64_t *v)
{
    size_t i = 0;
    *v = 0;
    do
        *v |= (uint64_t)(p[i] & 0x7f) << (7 * i);
    while (p[i++] & 0x80);
    return i;
}

static void test_huge_lengths(void **state)
{
    (void)state;
    size_t size, pos = 0;
    uint64_t len;
    uint8_t *spm = model_bytes(L2_DIR "tokenizer.model", &size);
    for (int k = 0; k < 17; k++) { /* skip pieces 0..16 */
        assert_int_equal(spm[pos], 0x0a);
        pos += 1 + get_varint(spm + pos + 1, &len);
        pos += len;
    }
    size_t nb = get_varint(spm + pos + 1, &len), inner = pos + 1 + nb;
    uint8_t *bad = malloc(size + 16);
    assert_non_null(bad);
    memcpy(bad, spm, pos + 1);
    size_t m = pos + 1 + put_varint(bad + pos + 1, 4000000);
    memcpy(bad + m, spm + pos + 1 + nb, size - (pos + 1 + nb));
    expect_fail(RD_SPM, bad, m + size - (pos + 1 + nb),
                "piece 17 length 4000000 runs past end of file");
    memcpy(bad, spm, size);
    assert_int_equal(bad[inner], 0x0a); /* the piece string of piece 17 */
    bad[inner + 1] = 0x7f;
    expect_fail(RD_SPM, bad, size, "piece 17 field 1 length 127 runs past end of its message");
    free(bad);
    free(spm);

    uint8_t *bin = model_bytes(L2_DIR "tokenizer.bin", &size);
    pos = 4;
    for (int k = 0; k < 17; k++)
        pos += 8 + (size_t)(bin[pos + 4] | bin[pos + 5] << 8 | bin[pos + 6] << 16);
    memcpy(bin + pos + 4, "\xff\xff\xff\x7f", 4);
    expect_fail(RD_BIN32000, bin, size, "token 17 length 2147483647 runs past end of file");
    expect_fail(RD_ANY, bin, size, "token 17 length 2147483647");
    memcpy(bin + pos + 4, "\xff\xff\xff\xff", 4);
    expect_fail(RD_BIN_EOF, bin, size, "token 17 length -1");
    memcpy(bin, "\0\0\0\0", 4);
    expect_fail(RD_BIN32000, bin, size, "max_token_length 0");
    free(bin);
}

/* ---- single damaged fields appended to a real model ------------------------------ */

/* The stories260K tokenizer.model with x appended: inside a new piece "zq" (where
 * 0), merged into trainer_spec (1) or normalizer_spec (2), or as model fields (3). */
static uint8_t *spm_with(int where, const pbw *x, size_t *len)
{
    pbw wrap = {.n = 0}, piece = {.n = 0};
    size_t size;
    uint8_t *data = model_bytes("stories260K-hf/tokenizer.model", &size);
    w_bytes(&piece, 1, "zq", 2);
    w_raw(&piece, x->b, x->n);
    if (where == 0)
        w_bytes(&wrap, 1, piece.b, piece.n);
    else if (where < 3)
        w_bytes(&wrap, (uint32_t)where + 1, x->b, x->n);
    else
        w_raw(&wrap, x->b, x->n);
    data = realloc(data, size + wrap.n);
    assert_non_null(data);
    memcpy(data + size, wrap.b, wrap.n);
    *len = size + wrap.n;
    return data;
}

/* One damaged field: where (as spm_with), then a varint field (wire 0), a bytes
 * field (wire 2) or raw bytes (wire -1), and the error message it must cause. */
typedef struct {
    int where;
    uint32_t field;
    int wire;
    uint64_t v;
    const char *raw;
    size_t raw_len;
    const char *needle;
} bad_field;

#define RAW(s) -1, 0, s, sizeof(s) - 1
static const bad_field bad_fields[] = {
    {1, 3, 0, 1, NULL, 0, "trainer_spec model_type 1 is not BPE"},
    {1, 35, 0, 0, NULL, 0, "byte pieces without trainer_spec byte_fallback"},
    {2, 4, 0, 1, NULL, 0, "remove_extra_whitespaces"},
    {2, 2, 2, 0, "xx", 2, "precompiled_charsmap"},
    {2, 5, 0, 0, NULL, 0, "escape_whitespaces"},
    {1, 24, 0, 1, NULL, 0, "treat_whitespace_as_suffix"},
    {1, 42, 0, 999, NULL, 0, "trainer_spec eos_id 999 out of range (512 pieces)"},
    {1, 40, 0, (uint64_t)1 << 40, NULL, 0, "field 40 value 1099511627776 is not an int32"},
    {0, 2, 0, 7, NULL, 0, "piece 512 field 2 has wire type 0, expected 5"},
    {0, 3, 0, 9, NULL, 0, "piece 512 has unknown type 9"},
    {0, 3, 0, 6, NULL, 0, "byte piece 512 is not spelled <0xHH>"},
    {0, 1, 2, 0, "", 0, "piece 512 is empty"},
    {3, 0, RAW("\x83\x06\x8c\x06"), "group ended by field 97"}, /* group 96 ended by 97 */
    {0, 0, RAW("\x84\x06"), "end of a group never started"},    /* end-group 96 */
    {1, 0, RAW("\x4e"), "trainer_spec field 9 has unknown wire type 6"},
    {3, 0, RAW("\x00\x01"), "bad field number 0"},
    {3, 0, RAW("\x98\x06\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x00"), "varint runs past end"},
    {3, 0, RAW(";;;;;;;;;;;;;;;;;;;;;;;;;;;;;;;;;;;;;;;;"), "nested too deeply"}, /* group 7 x 40 */
    {1, 0, RAW("\x83\x06"), "trainer_spec field 96 group runs past end"},
    {2, 3, 2, 0, "\x01", 1, "normalizer_spec field 3 has wire type 2, expected 0"},
};
#undef RAW

static void test_damaged_fields(void **state)
{
    (void)state;
    char tmp[64];
    size_t len;
    mdi_vocab v;
    pbw x = {.n = 0};
    uint8_t *data = spm_with(0, &x, &len); /* the harness itself: one more piece reads fine */
    write_tmp(data, len, tmp);
    assert_int_equal(read_vocab(RD_SPM, tmp, &v, NULL), MDI_OK);
    assert_int_equal(v.n, 513);
    mdi_vocab_free(&v);
    unlink(tmp);
    free(data);
    for (size_t i = 0; i < sizeof bad_fields / sizeof bad_fields[0]; i++) {
        const bad_field *b = &bad_fields[i];
        x.n = 0;
        if (b->wire == 0) {
            w_varint(&x, (uint64_t)b->field << 3);
            w_varint(&x, b->v);
        } else if (b->wire == 2) {
            w_bytes(&x, b->field, b->raw, b->raw_len);
        } else {
            w_raw(&x, b->raw, b->raw_len);
        }
        data = spm_with(b->where, &x, &len);
        expect_fail(RD_SPM, data, len, b->needle);
        free(data);
    }
}

/* Random byte damage never crashes or leaks; whatever reads must be usable. */
static void test_fuzz(void **state)
{
    (void)state;
    const char *files[2] = {"stories260K/tok512.bin", "stories260K-hf/tokenizer.model"};
    uint64_t rng = 12345;
    for (int f = 0; f < 2; f++) {
        size_t size, n_ok = 0, iters = 400;
        uint8_t *orig = model_bytes(files[f], &size), *data = malloc(size);
        assert_non_null(data);
        for (size_t it = 0; it < iters; it++) {
            memcpy(data, orig, size);
            size_t len = size;
            rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
            for (uint64_t k = 0, nm = 1 + (rng >> 60) % 4; k < nm; k++) {
                rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
                data[(rng >> 33) % size] = (uint8_t)(rng >> 25);
            }
            if ((rng >> 20) % 8 == 0)
                len = (rng >> 35) % size;
            char tmp[64];
            mdi_vocab v;
            mdi_tokenizer *t = NULL;
            write_tmp(data, len, tmp);
            if (read_vocab(RD_ANY, tmp, &v, NULL) == MDI_OK &&
                mdi_tokenizer_create(&v, &t, NULL) == MDI_OK) {
                int32_t ids[64];
                size_t n;
                mdi_tokenizer_encode(t, "Once upon a \xc3\xa9\xff", 15, 1, ids, 64, &n, NULL);
                for (size_t i = 1; i < n && i < 64; i++) {
                    char buf[8];
                    size_t dl;
                    mdi_tokenizer_decode(t, ids[i - 1], ids[i], buf, &dl);
                }
                n_ok++;
            }
            mdi_tokenizer_free(t);
            mdi_vocab_free(&v);
            unlink(tmp);
        }
        fprintf(stderr, "%s: %zu of %zu damaged copies still read\n", files[f], n_ok, iters);
        free(data);
        free(orig);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_json_reader),         cmocka_unit_test(test_encodings_bin),
        cmocka_unit_test(test_encodings_spm),       cmocka_unit_test(test_stories_prompts),
        cmocka_unit_test(test_decode_reference),    cmocka_unit_test(test_bin_and_model_agree),
        cmocka_unit_test(test_read_tokenizer_file), cmocka_unit_test(test_truncated_spm),
        cmocka_unit_test(test_truncated_bin),       cmocka_unit_test(test_huge_lengths),
        cmocka_unit_test(test_damaged_fields),      cmocka_unit_test(test_fuzz),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* Tokenizer unit tests on hand-built vocabularies, and the SentencePiece
 * reader on hand-made protobufs (no model files). */
#include "test_util.h"
#include "pb_writer.h"

#include <math.h>
#include <unistd.h>

#include "convert.h"

#include "mdi/tokenizer.h"

#define SP "\xe2\x96\x81"
#define N_SPECIAL 259 /* <unk>, <s>, </s>, then <0x00>..<0xFF> at ids 3..258 */

typedef struct {
    const char *piece;
    float score;
    int32_t type;
} tp;

/* Vocab of <unk> <s> </s> (when with_special), the 256 byte pieces (when
 * with_bytes), then `extra` in order. */
static mdi_vocab make_vocab(const tp *extra, int n_extra, int with_special, int with_bytes)
{
    tp all[N_SPECIAL + 64];
    char byte_names[256][8];
    int n = 0;
    assert_true(n_extra <= 64);
    if (with_special) {
        all[n++] = (tp){"<unk>", 0, MDI_PIECE_UNKNOWN};
        all[n++] = (tp){"<s>", 0, MDI_PIECE_CONTROL};
        all[n++] = (tp){"</s>", 0, MDI_PIECE_CONTROL};
    }
    for (int b = 0; with_bytes && b < 256; b++) {
        snprintf(byte_names[b], sizeof byte_names[b], "<0x%02X>", b);
        all[n++] = (tp){byte_names[b], 0, MDI_PIECE_BYTE};
    }
    for (int i = 0; i < n_extra; i++)
        all[n++] = extra[i];
    uint64_t total = 0;
    for (int i = 0; i < n; i++)
        total += strlen(all[i].piece);
    mdi_vocab v;
    assert_int_equal(mdi_vocab_alloc(&v, n, total, NULL), MDI_OK);
    for (int i = 0; i < n; i++) {
        size_t len = strlen(all[i].piece);
        memcpy(v.bytes + v.offsets[i], all[i].piece, len);
        v.offsets[i + 1] = v.offsets[i] + len;
        v.scores[i] = all[i].score;
        v.types[i] = all[i].type;
    }
    if (with_special) {
        v.unk_id = 0;
        v.bos_id = 1;
        v.eos_id = 2;
    }
    return v;
}

static mdi_tokenizer *make_tok(const tp *extra, int n_extra, int dummy)
{
    mdi_vocab v = make_vocab(extra, n_extra, 1, 1);
    mdi_tokenizer *t = NULL;
    mdi_err err;
    v.add_dummy_prefix = dummy;
    assert_int_equal(mdi_tokenizer_create(&v, &t, &err), MDI_OK);
    mdi_vocab_free(&v);
    return t;
}

/* Encodes text and checks the ids against want (n_want of them). */
static void check_enc(const mdi_tokenizer *t, const char *text, size_t len, int bos,
                      const int32_t *want, size_t n_want)
{
    int32_t ids[256];
    size_t n = 99;
    mdi_err err;
    mdi_status s = mdi_tokenizer_encode(t, text, len, bos, ids, 256, &n, &err);
    if (s != MDI_OK)
        fail_msg("encode failed: %s", err.msg);
    if (n != n_want)
        fail_msg("encode gave %zu ids, expected %zu", n, n_want);
    for (size_t i = 0; i < n; i++)
        if (ids[i] != want[i])
            fail_msg("id %zu is %d, expected %d", i, (int)ids[i], (int)want[i]);
}

#define CHECK(t, text, bos, ...)                                                          \
    do {                                                                                  \
        const int32_t want_[] = {__VA_ARGS__};                                            \
        check_enc(t, text, sizeof(text) - 1, bos, want_, sizeof want_ / sizeof want_[0]); \
    } while (0)

#define ID(k) (N_SPECIAL + (k)) /* id of extra piece k */
#define BYTE(b) (3 + (b))

static void test_merges_by_score(void **state)
{
    (void)state;
    const tp lo[] = {{"a", -1, 1}, {"b", -1, 1}, {"c", -1, 1}, {"ab", -3, 1}, {"bc", -2, 1}};
    mdi_tokenizer *t = make_tok(lo, 5, 0);
    CHECK(t, "abc", 0, ID(0), ID(4)); /* bc outscores ab */
    mdi_tokenizer_free(t);
    const tp hi[] = {{"a", -1, 1},  {"b", -1, 1},  {"c", -1, 1},
                     {"ab", -2, 1}, {"bc", -3, 1}, {"abc", -9, 1}};
    t = make_tok(hi, 6, 0);
    CHECK(t, "abc", 0, ID(5));          /* ab, then ab+c */
    CHECK(t, "abcbc", 0, ID(5), ID(4)); /* abc, then bc */
    mdi_tokenizer_free(t);
    const tp v[] = {{"a", 0, 1},  {"b", 0, 1},  {"c", 0, 1}, {"d", 0, 1},
                    {"ab", 1, 1}, {"bc", 5, 1}, {"cd", 1, 1}};
    t = make_tok(v, 7, 0);
    CHECK(t, "abcd", 0, ID(0), ID(5), ID(3)); /* best pair first, not left to right */
    mdi_tokenizer_free(t);
}

static void test_ties_leftmost(void **state)
{
    (void)state;
    const tp v[] = {{"a", 0, 1}, {"aa", 1, 1}, {"b", 0, 1}, {"ab", 1, 1}, {"ba", 1, 1}};
    mdi_tokenizer *t = make_tok(v, 5, 0);
    CHECK(t, "aaa", 0, ID(1), ID(0));
    CHECK(t, "aaaaa", 0, ID(1), ID(1), ID(0));
    CHECK(t, "aba", 0, ID(3), ID(0)); /* ab and ba tie: leftmost wins */
    CHECK(t, "bab", 0, ID(4), ID(2));
    mdi_tokenizer_free(t);
}

static void test_dummy_prefix_and_spaces(void **state)
{
    (void)state;
    const tp v[] = {{SP, -1, 1}, {"a", -1, 1}, {SP "a", 0, 1}, {SP SP, -2, 1}};
    mdi_tokenizer *t = make_tok(v, 4, 1);
    CHECK(t, "a", 0, ID(2));
    CHECK(t, "a a", 0, ID(2), ID(2));
    CHECK(t, " a", 0, ID(0), ID(2)); /* ▁▁a: ▁a scores higher than ▁▁ */
    CHECK(t, "  ", 0, ID(3), ID(0));
    CHECK(t, "a", 1, 1, ID(2));
    mdi_tokenizer_free(t);
    t = make_tok(v, 4, 0);
    CHECK(t, "a a", 0, ID(1), ID(2));
    mdi_tokenizer_free(t);
}

static void test_byte_fallback(void **state)
{
    (void)state;
    const tp v[] = {{SP, -1, 1}, {"a", -1, 1}, {"\xc3\xa9", -1, 1}};
    mdi_tokenizer *t = make_tok(v, 3, 0);
    CHECK(t, "\xc3\xa8", 0, BYTE(0xc3), BYTE(0xa8));            /* è is not a piece */
    CHECK(t, "\xc3\xa9", 0, ID(2));                             /* é is */
    CHECK(t, "\xff\xfe", 0, BYTE(0xff), BYTE(0xfe));            /* invalid UTF-8 */
    CHECK(t, "\xe2\x96\x61", 0, BYTE(0xe2), BYTE(0x96), ID(1)); /* truncated, then "a" */
    CHECK(t, "\xc3\xa9\xa9", 0, ID(2), BYTE(0xa9));
    CHECK(t, "\xed\xa0\x80", 0, BYTE(0xed), BYTE(0xa0), BYTE(0x80)); /* surrogate */
    CHECK(t, "\xc0\xaf", 0, BYTE(0xc0), BYTE(0xaf));                 /* overlong */
    CHECK(t, "\xf4\x90\x80\x80", 0, BYTE(0xf4), BYTE(0x90), BYTE(0x80), BYTE(0x80));
    CHECK(t, "\xf0\x9f\xa6\x99", 0, BYTE(0xf0), BYTE(0x9f), BYTE(0xa6), BYTE(0x99));
    CHECK(t, "a\0a", 0, ID(1), BYTE(0), ID(1));
    mdi_tokenizer_free(t);
}

/* Invalid bytes never merge, even when a piece would match them. */
static void test_invalid_bytes_frozen(void **state)
{
    (void)state;
    const tp v[] = {{"a", -1, 1}, {"a\xff", 5, 1}};
    mdi_tokenizer *t = make_tok(v, 2, 0);
    CHECK(t, "a\xff", 0, ID(0), BYTE(0xff));
    mdi_tokenizer_free(t);
}

static void test_missing_bytes_use_unk(void **state)
{
    (void)state;
    const tp v[] = {{"a", -1, 1}, {"<0x41>", 0, MDI_PIECE_BYTE}};
    mdi_vocab voc = make_vocab(v, 2, 1, 0);
    mdi_tokenizer *t = NULL;
    voc.add_dummy_prefix = 0;
    assert_int_equal(mdi_tokenizer_create(&voc, &t, NULL), MDI_OK);
    CHECK(t, "a\xc3\xa9\x61", 0, 3, 0, 3); /* one unk for the whole character */
    CHECK(t, "\xff\x41", 0, 0, 4);
    mdi_tokenizer_free(t);
    voc.unk_id = -1;
    assert_int_equal(mdi_tokenizer_create(&voc, &t, NULL), MDI_OK);
    int32_t ids[8];
    size_t n = 7;
    mdi_err err;
    assert_int_equal(mdi_tokenizer_encode(t, "a\xff", 2, 0, ids, 8, &n, &err), MDI_ERR_UNSUPPORTED);
    assert_int_equal(err.status, MDI_ERR_UNSUPPORTED);
    assert_non_null(strstr(err.msg, "0xFF"));
    assert_int_equal(n, 0);
    mdi_tokenizer_free(t);
    mdi_vocab_free(&voc);
}

static void test_user_defined_frozen(void **state)
{
    (void)state;
    const tp v[] = {{SP, -1, 1},  {"x", -1, 1}, {"<t>", 0, MDI_PIECE_USER_DEFINED}, {"x<", 9, 1},
                    {"<", -1, 1}, {"<t", 8, 1}, {"<tt>", 0, MDI_PIECE_USER_DEFINED}};
    mdi_tokenizer *t = make_tok(v, 7, 0);
    CHECK(t, "x<t>x", 0, ID(1), ID(2), ID(1));
    CHECK(t, "<tt><t>", 0, ID(6), ID(2)); /* longest user-defined match first */
    CHECK(t, "x<x", 0, ID(3), ID(1));
    mdi_tokenizer_free(t);
}

/* Control, unknown, unused and byte pieces are never merge targets. */
static void test_only_normal_pieces_merge(void **state)
{
    (void)state;
    const tp v[] = {{"a", -1, 1}, {"b", -1, 1}, {"ab", 5, 5}, {"ba", 5, 3}}; /* unused, control */
    mdi_tokenizer *t = make_tok(v, 4, 0);
    CHECK(t, "aba", 0, ID(0), ID(1), ID(0));
    CHECK(t, "<s>", 0, BYTE('<'), BYTE('s'), BYTE('>'));
    mdi_tokenizer_free(t);
}

static void test_bos_and_empty(void **state)
{
    (void)state;
    const tp v[] = {{SP, -1, 1}, {"a", -1, 1}};
    mdi_tokenizer *t = make_tok(v, 2, 1);
    int32_t ids[4] = {-5, -5, -5, -5};
    size_t n = 99;
    assert_int_equal(mdi_tokenizer_encode(t, "", 0, 1, ids, 4, &n, NULL), MDI_OK);
    assert_int_equal(n, 1);
    assert_int_equal(ids[0], 1);
    assert_int_equal(mdi_tokenizer_encode(t, NULL, 0, 0, NULL, 0, &n, NULL), MDI_OK);
    assert_int_equal(n, 0);
    assert_int_equal(mdi_tokenizer_bos(t), 1);
    assert_int_equal(mdi_tokenizer_eos(t), 2);
    assert_int_equal(mdi_tokenizer_n_pieces(t), N_SPECIAL + 2);
    mdi_tokenizer_free(t);

    mdi_vocab voc = make_vocab(v, 2, 0, 1);
    assert_int_equal(mdi_tokenizer_create(&voc, &t, NULL), MDI_OK);
    CHECK(t, "a", 1, 256 + 0, 256 + 1); /* no bos_id: add_bos does nothing */
    assert_int_equal(mdi_tokenizer_bos(t), -1);
    mdi_tokenizer_free(t);
    mdi_vocab_free(&voc);
    assert_int_equal(mdi_tokenizer_n_pieces(NULL), 0);
    assert_int_equal(mdi_tokenizer_bos(NULL), -1);
}

static void test_cap_too_small(void **state)
{
    (void)state;
    const tp v[] = {{SP, -1, 1}, {"a", -1, 1}};
    mdi_tokenizer *t = make_tok(v, 2, 1);
    int32_t ids[8] = {0};
    size_t n = 0;
    mdi_err err;
    assert_int_equal(mdi_tokenizer_encode(t, "a a", 3, 1, ids, 2, &n, &err), MDI_ERR_RANGE);
    assert_int_equal(err.status, MDI_ERR_RANGE);
    assert_int_equal(n, 5);
    assert_int_equal(ids[0], 1);
    assert_int_equal(ids[1], ID(0));
    assert_int_equal(ids[2], 0); /* nothing written past cap */
    assert_int_equal(mdi_tokenizer_encode(t, "a a", 3, 1, NULL, 0, &n, NULL), MDI_ERR_RANGE);
    assert_int_equal(n, 5);
    assert_int_equal(mdi_tokenizer_encode(t, "a a", 3, 1, ids, 5, &n, NULL), MDI_OK);
    assert_int_equal(n, 5);
    mdi_tokenizer_free(t);
}

static void test_encode_bad_args(void **state)
{
    (void)state;
    const tp v[] = {{"a", -1, 1}};
    mdi_tokenizer *t = make_tok(v, 1, 1);
    int32_t ids[4];
    size_t n;
    mdi_err err;
    assert_int_equal(mdi_tokenizer_encode(NULL, "a", 1, 0, ids, 4, &n, &err), MDI_ERR_ARG);
    assert_int_equal(mdi_tokenizer_encode(t, NULL, 1, 0, ids, 4, &n, &err), MDI_ERR_ARG);
    assert_int_equal(mdi_tokenizer_encode(t, "a", 1, 0, NULL, 4, &n, &err), MDI_ERR_ARG);
    assert_int_equal(mdi_tokenizer_encode(t, "a", 1, 0, ids, 4, NULL, &err), MDI_ERR_ARG);
    assert_int_equal(mdi_tokenizer_encode(t, "a", SIZE_MAX, 0, ids, 4, &n, &err), MDI_ERR_RANGE);
    assert_int_equal(mdi_tokenizer_create(NULL, NULL, &err), MDI_ERR_ARG);
    mdi_tokenizer *t2 = (mdi_tokenizer *)&err;
    assert_int_equal(mdi_tokenizer_create(NULL, &t2, &err), MDI_ERR_ARG);
    assert_null(t2);
    mdi_tokenizer_free(NULL);
    mdi_tokenizer_free(t);
}

/* Checks the bytes piece id decodes to after prev. */
static void expect_dec(const mdi_tokenizer *t, int32_t prev, int32_t id, const char *want,
                       size_t want_len)
{
    char buf[8];
    size_t len = 99;
    const char *got = mdi_tokenizer_decode(t, prev, id, buf, &len);
    assert_int_equal(len, want_len);
    assert_memory_equal(got, want, len);
}

#define DEC(t, prev, id, want) expect_dec(t, prev, id, want, sizeof(want) - 1)

static void test_decode(void **state)
{
    (void)state;
    const tp v[] = {{SP "ab", -1, 1}, {"a" SP SP, -1, 1}, {"xy", 0, MDI_PIECE_UNUSED}};
    mdi_tokenizer *t = make_tok(v, 3, 1);
    DEC(t, 1, ID(0), "ab"); /* the dummy prefix is undone after BOS and at the start */
    DEC(t, 5, ID(0), " ab");
    DEC(t, -1, ID(0), "ab");
    DEC(t, 1, ID(1), "a  ");
    DEC(t, 1, ID(2), "xy");
    DEC(t, 7, 1, "");
    DEC(t, 7, 2, "");
    DEC(t, 1, 0, " \xe2\x81\x87 ");
    DEC(t, 1, BYTE(' '), " ");
    DEC(t, 1, BYTE('A'), "A");
    DEC(t, 1, BYTE(0), "\0");
    DEC(t, 1, -1, "");
    DEC(t, 1, N_SPECIAL + 3, "");
    DEC(NULL, 1, 3, "");
    mdi_tokenizer_free(t);
    t = make_tok(v, 3, 0); /* no dummy prefix: nothing to undo */
    DEC(t, 1, ID(0), " ab");
    mdi_tokenizer_free(t);
}

static uint64_t rng_next(uint64_t *s)
{
    *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
    return *s >> 33;
}

/* Random bytes biased towards spaces, merge material and broken UTF-8. */
static size_t random_text(uint64_t *rng, char *out, size_t max)
{
    static const char alphabet[] = {' ',    'a',    'b',    'a',    'b',  '\xe2', '\x96',
                                    '\x81', '\xff', '\xc3', '\xa9', '\n', '\0'};
    size_t len = rng_next(rng) % (max + 1);
    for (size_t i = 0; i < len; i++) {
        uint64_t r = rng_next(rng);
        out[i] = (r & 3) == 0 ? (char)(r >> 8) : alphabet[(r >> 8) % sizeof alphabet];
    }
    return len;
}

/* Decodes ids (ids[0] is BOS) into out; returns the length. */
static size_t decode_all(const mdi_tokenizer *t, const int32_t *ids, size_t n, char *out)
{
    size_t total = 0;
    for (size_t i = 1; i < n; i++) {
        char buf[8];
        size_t len;
        const char *s = mdi_tokenizer_decode(t, ids[i - 1], ids[i], buf, &len);
        memcpy(out + total, s, len);
        total += len;
    }
    return total;
}

static void test_round_trip(void **state)
{
    (void)state;
    const tp v[] = {{SP, -1, 1},     {"a", -2, 1},  {"b", -2, 1},
                    {SP "a", -1, 1}, {"ab", -1, 1}, {SP "ab", 0, 1},
                    {SP SP, -3, 1},  {"ba", -1, 1}, {"\xc3\xa9", -4, 1}};
    mdi_tokenizer *t = make_tok(v, 9, 1);
    uint64_t rng = 42;
    char text[80], back[4 * 80 + 16], want[80];
    int32_t ids[4 * 80 + 8];
    for (int iter = 0; iter < 3000; iter++) {
        size_t len = random_text(&rng, text, iter == 0 ? 0 : 64), n, w = 0;
        assert_int_equal(mdi_tokenizer_encode(t, text, len, 1, ids, 4 * 80 + 8, &n, NULL), MDI_OK);
        size_t got = decode_all(t, ids, n, back);
        for (size_t i = 0; i < len; i++) { /* a literal U+2581 decodes as a space */
            if (i + 3 <= len && memcmp(text + i, SP, 3) == 0) {
                want[w++] = ' ';
                i += 2;
            } else {
                want[w++] = text[i];
            }
        }
        assert_int_equal(got, w);
        assert_memory_equal(back, want, w);
    }
    mdi_tokenizer_free(t);
}

/* Reference BPE: rescan all adjacent pairs for the best merge, O(n^2). */
static size_t naive_encode(const tp *v, int nv, const char *text, size_t len, int32_t *ids)
{
    size_t start[128], slen[128], ns = 0, n = 0;
    for (size_t i = 0; i < len; i++) {
        start[ns] = i;
        slen[ns++] = 1;
    }
    for (;;) {
        int best = -1;
        float best_score = 0;
        for (size_t i = 0; i + 1 < ns; i++)
            for (int k = 0; k < nv; k++)
                if (strlen(v[k].piece) == slen[i] + slen[i + 1] &&
                    memcmp(v[k].piece, text + start[i], slen[i] + slen[i + 1]) == 0 &&
                    (best < 0 || v[k].score > best_score)) {
                    best = (int)i;
                    best_score = v[k].score;
                }
        if (best < 0)
            break;
        slen[best] += slen[best + 1];
        memmove(start + best + 1, start + best + 2, (ns - best - 2) * sizeof *start);
        memmove(slen + best + 1, slen + best + 2, (ns - best - 2) * sizeof *slen);
        ns--;
    }
    for (size_t i = 0; i < ns; i++) {
        int found = -1;
        for (int k = 0; k < nv && found < 0; k++)
            if (strlen(v[k].piece) == slen[i] && memcmp(v[k].piece, text + start[i], slen[i]) == 0)
                found = k;
        if (found >= 0)
            ids[n++] = ID(found);
        else
            for (size_t j = 0; j < slen[i]; j++)
                ids[n++] = BYTE((uint8_t)text[start[i] + j]);
    }
    return n;
}

/* The heap encoder agrees with the reference on random ASCII text, many ties. */
static void test_matches_naive_bpe(void **state)
{
    (void)state;
    tp v[64];
    char names[64][4];
    uint64_t rng = 7;
    int nv = 0;
    for (int len = 1; len <= 3 && nv < 64; len++)
        for (int code = 0; code < (1 << (2 * len)) && nv < 64; code++) {
            if (len > 1 && rng_next(&rng) % 3 == 0)
                continue;
            for (int i = 0; i < len; i++)
                names[nv][i] = "abcd"[(code >> (2 * i)) & 3];
            names[nv][len] = '\0';
            v[nv] = (tp){names[nv], (float)(rng_next(&rng) % 4), MDI_PIECE_NORMAL};
            nv++;
        }
    mdi_tokenizer *t = make_tok(v, nv, 0);
    for (int iter = 0; iter < 2000; iter++) {
        char text[100];
        int32_t want[128], got[128];
        size_t len = rng_next(&rng) % 100, n;
        for (size_t i = 0; i < len; i++)
            text[i] = "abcde"[rng_next(&rng) % 5];
        size_t n_want = naive_encode(v, nv, text, len, want);
        assert_int_equal(mdi_tokenizer_encode(t, text, len, 0, got, 128, &n, NULL), MDI_OK);
        assert_int_equal(n, n_want);
        assert_memory_equal(got, want, n * sizeof *got);
    }
    mdi_tokenizer_free(t);
}

static void expect_invalid(mdi_vocab *v, const char *needle)
{
    mdi_err err;
    mdi_tokenizer *t = (mdi_tokenizer *)v;
    assert_int_not_equal(mdi_vocab_validate(v, &err), MDI_OK);
    if (!strstr(err.msg, needle))
        fail_msg("message \"%s\" lacks \"%s\"", err.msg, needle);
    assert_int_not_equal(mdi_tokenizer_create(v, &t, &err), MDI_OK);
    assert_null(t);
}

static void test_validate_rejects(void **state)
{
    (void)state;
    const tp x[] = {{"ab", 0, 1}, {"c", 0, 1}};
    mdi_vocab v = make_vocab(x, 2, 1, 1);
    mdi_err err;
    assert_int_equal(mdi_vocab_validate(&v, &err), MDI_OK);
    const struct {
        int32_t *field, bad;
        const char *needle;
    } cases[] = {{&v.types[N_SPECIAL], 0, "type 0"},
                 {&v.types[N_SPECIAL], 7, "type 7"},
                 {&v.types[N_SPECIAL], MDI_PIECE_BYTE, "byte piece 259 is not spelled <0xHH>"},
                 {&v.bos_id, v.n, "bos_id"},
                 {&v.eos_id, -2, "eos_id"},
                 {&v.unk_id, v.n + 5, "unk_id"},
                 {&v.add_dummy_prefix, 2, "add_dummy_prefix"},
                 {&v.n, 0, "0 pieces"}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int32_t keep = *cases[i].field;
        *cases[i].field = cases[i].bad;
        expect_invalid(&v, cases[i].needle);
        *cases[i].field = keep;
    }
    v.offsets[0] = 1;
    expect_invalid(&v, "offsets[0]");
    v.offsets[0] = 0;
    v.offsets[N_SPECIAL + 1] = v.offsets[N_SPECIAL] - 1;
    expect_invalid(&v, "piece 259 ends at");
    v.offsets[N_SPECIAL + 1] = v.offsets[N_SPECIAL] + 2;
    v.scores[4] = NAN;
    expect_invalid(&v, "piece 4 has score NaN");
    v.scores[4] = 0;
    assert_int_equal(mdi_vocab_validate(&v, &err), MDI_OK);
    float *scores = v.scores;
    v.scores = NULL;
    assert_int_equal(mdi_vocab_validate(&v, &err), MDI_ERR_ARG);
    v.scores = scores;
    assert_int_equal(mdi_vocab_validate(NULL, &err), MDI_ERR_ARG);
    mdi_vocab_free(&v);
    mdi_vocab_free(&v); /* idempotent */
}

static void test_create_rejects_duplicates_and_empty(void **state)
{
    (void)state;
    mdi_err err;
    mdi_tokenizer *t = NULL;
    const tp dup[] = {{"ab", 0, 1}, {"ab", -1, MDI_PIECE_USER_DEFINED}};
    mdi_vocab v = make_vocab(dup, 2, 1, 1);
    assert_int_equal(mdi_tokenizer_create(&v, &t, &err), MDI_ERR_FORMAT);
    assert_non_null(strstr(err.msg, "duplicates"));
    assert_null(t);
    mdi_vocab_free(&v);
    const tp empty[] = {{"", 0, 1}};
    v = make_vocab(empty, 1, 1, 1);
    assert_int_equal(mdi_tokenizer_create(&v, &t, &err), MDI_ERR_FORMAT);
    assert_non_null(strstr(err.msg, "empty"));
    mdi_vocab_free(&v);
    /* Empty control pieces and repeated byte pieces are harmless. */
    const tp ok[] = {{"", 0, MDI_PIECE_CONTROL}, {"<0x41>", 0, MDI_PIECE_BYTE}};
    v = make_vocab(ok, 2, 1, 1);
    v.add_dummy_prefix = 0;
    assert_int_equal(mdi_tokenizer_create(&v, &t, &err), MDI_OK);
    CHECK(t, "A", 0, BYTE('A'));
    mdi_tokenizer_free(t);
    mdi_vocab_free(&v);
}

static void test_vocab_alloc(void **state)
{
    (void)state;
    mdi_vocab v;
    mdi_err err;
    assert_int_equal(mdi_vocab_alloc(&v, -1, 0, &err), MDI_ERR_ARG);
    assert_int_equal(mdi_vocab_alloc(NULL, 1, 0, &err), MDI_ERR_ARG);
    assert_int_equal(mdi_vocab_alloc(&v, 1, UINT64_MAX, &err), MDI_ERR_NOMEM);
    assert_int_equal(mdi_vocab_alloc(&v, 3, 0, &err), MDI_OK);
    assert_true(v.n == 3 && v.offsets[3] == 0 && v.types[2] == 0 && v.add_dummy_prefix == 1);
    assert_true(v.bos_id == -1 && v.eos_id == -1 && v.unk_id == -1);
    mdi_vocab_free(&v);
    mdi_vocab zero;
    memset(&zero, 0, sizeof zero);
    mdi_vocab_free(&zero);
    mdi_vocab_free(NULL);
}

/* Long inputs: the merge loop is n log n and buffers are sized for the worst case. */
static void test_long_text(void **state)
{
    (void)state;
    const tp v[] = {{SP, -1, 1},   {"a", -2, 1},    {"b", -2, 1},  {SP "a", -1, 1},
                    {"ab", -1, 1}, {SP "ab", 0, 1}, {"aa", -5, 1}, {"aaaa", -6, 1}};
    mdi_tokenizer *t = make_tok(v, 8, 1);
    size_t len = 200000, n;
    char *text = malloc(len);
    int32_t *ids = malloc((len + 2) * sizeof *ids);
    assert_non_null(text);
    assert_non_null(ids);
    memset(text, 'a', len);
    assert_int_equal(mdi_tokenizer_encode(t, text, len, 0, ids, len + 2, &n, NULL), MDI_OK);
    assert_int_equal(n, 1 + 49999 + 1 + 1); /* ▁a, aaaa × 49999, aa, a */
    memset(text, ' ', len);                 /* the largest expansion: every byte becomes U+2581 */
    assert_int_equal(mdi_tokenizer_encode(t, text, len, 1, ids, len + 2, &n, NULL), MDI_OK);
    assert_int_equal(n, len + 2);
    free(text);
    free(ids);
    mdi_tokenizer_free(t);
}

/* ---- the SentencePiece reader on hand-made protobufs ------------------------- */

/* A SentencePiece message (score written little-endian, as on our hosts). */
static void w_piece(pbw *w, const char *piece, float score, int type, const pbw *extra)
{
    pbw m = {.n = 0};
    w_bytes(&m, 1, piece, strlen(piece));
    w_tag(&m, 2, 5);
    w_raw(&m, &score, 4);
    if (type != MDI_PIECE_NORMAL)
        w_uint(&m, 3, (uint64_t)type);
    if (extra)
        w_raw(&m, extra->b, extra->n);
    w_bytes(w, 1, m.b, m.n);
}

/* Unknown fields of every wire type, including nested groups. */
static void w_junk(pbw *w)
{
    w_uint(w, 99, 5);
    w_tag(w, 98, 1);
    w_raw(w, "12345678", 8);
    w_bytes(w, 97, "zz", 2);
    w_tag(w, 96, 3);
    w_uint(w, 1, 3);
    w_tag(w, 5, 3);
    w_bytes(w, 2, "q", 1);
    w_tag(w, 5, 4);
    w_tag(w, 96, 4);
    w_tag(w, 95, 5);
    w_raw(w, "1234", 4);
}

/* Pieces <unk> <s> </s> ▁ a ▁a, trainer spec (BPE), normalizer (identity), with
 * x appended to piece 4 (where 0), the trainer (1), normalizer (2) or model (3). */
static void make_spm(pbw *w, int where, const pbw *x)
{
    pbw tr = {.n = 0}, no = {.n = 0};
    w->n = 0;
    w_piece(w, "<unk>", 0, MDI_PIECE_UNKNOWN, NULL);
    w_piece(w, "<s>", 0, MDI_PIECE_CONTROL, NULL);
    w_piece(w, "</s>", 0, MDI_PIECE_CONTROL, NULL);
    w_piece(w, "\u2581", -1, MDI_PIECE_NORMAL, NULL);
    w_piece(w, "a", -2, MDI_PIECE_NORMAL, where == 0 ? x : NULL);
    w_piece(w, "\u2581a", 0, MDI_PIECE_NORMAL, NULL);
    w_uint(&tr, 3, 2);
    w_uint(&no, 4, 0);
    if (where == 1 || where == 2)
        w_raw(where == 1 ? &tr : &no, x->b, x->n);
    w_bytes(w, 2, tr.b, tr.n);
    w_bytes(w, 3, no.b, no.n);
    if (where == 3)
        w_raw(w, x->b, x->n);
}

/* Reads w through a file under /tmp into v; a failure leaves v zeroed and names the file. */
static mdi_status read_pb(const pbw *w, mdi_vocab *v, mdi_err *err)
{
    char path[] = "/tmp/mdi_tok_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, w->b, w->n), (ssize_t)w->n);
    close(fd);
    mdi_status s = cv_read_spm_model(path, v, err);
    unlink(path);
    if (s != MDI_OK) {
        assert_null(v->bytes);
        assert_memory_equal(err->msg, path, strlen(path));
        assert_null(strchr(err->msg, '\n'));
    }
    return s;
}

/* Reads the hand-made model with x at `where` into v, or expects an error with needle. */
static void spm_case(int where, const pbw *x, const char *needle, mdi_vocab *v)
{
    pbw w;
    mdi_vocab scratch;
    mdi_err err;
    make_spm(&w, where, x);
    mdi_status s = read_pb(&w, v ? v : &scratch, &err);
    if (needle && (s == MDI_OK || !strstr(err.msg, needle)))
        fail_msg("expected an error with \"%s\", got \"%s\"", needle, s ? err.msg : "ok");
    if (!needle && s != MDI_OK)
        fail_msg("%s", err.msg);
}

/* Builds a tokenizer from v (then frees v) and checks the ids of text with BOS. */
static void expect_ids(mdi_vocab *v, const char *text, const int32_t *want, size_t n_want)
{
    mdi_tokenizer *t;
    assert_int_equal(mdi_tokenizer_create(v, &t, NULL), MDI_OK);
    mdi_vocab_free(v);
    check_enc(t, text, strlen(text), 1, want, n_want);
    mdi_tokenizer_free(t);
}

static void test_handmade_spm(void **state)
{
    (void)state;
    mdi_vocab v;
    pbw x = {.n = 0};
    spm_case(0, &x, NULL, &v);
    expect_ids(&v, "a a", (const int32_t[]){1, 5, 5}, 3);
    for (int where = 0; where < 4; where++) { /* unknown fields are skipped everywhere */
        x.n = 0;
        w_junk(&x);
        spm_case(where, &x, NULL, &v);
        assert_int_equal(v.n, 6);
        assert_true(v.scores[4] == -2.0f);
        expect_ids(&v, "a a", (const int32_t[]){1, 5, 5}, 3);
    }
    x.n = 0;
    w_uint(&x, 3, 0);
    spm_case(2, &x, NULL, &v);
    assert_int_equal(v.add_dummy_prefix, 0);
    expect_ids(&v, "a a", (const int32_t[]){1, 4, 5}, 3);
    x.n = 0;
    w_uint(&x, 41, UINT64_MAX); /* bos_id -1, sign-extended */
    w_uint(&x, 40, 3);
    spm_case(1, &x, NULL, &v);
    assert_int_equal(v.bos_id, -1);
    assert_int_equal(v.unk_id, 3);
    mdi_vocab_free(&v);

    x.n = 0; /* a byte piece needs byte_fallback, here in a second (merged) trainer_spec */
    w_piece(&x, "<0x41>", 0, MDI_PIECE_BYTE, NULL);
    spm_case(3, &x, "byte_fallback", NULL);
    w_bytes(&x, 2, "\x98\x02\x01", 3);
    spm_case(3, &x, NULL, &v);
    expect_ids(&v, "A", (const int32_t[]){1, 3, 6}, 3);

    x.n = 0; /* a duplicate piece reads, but no tokenizer can be built from it */
    w_piece(&x, "a", 0, MDI_PIECE_NORMAL, NULL);
    spm_case(3, &x, NULL, &v);
    mdi_tokenizer *t;
    mdi_err err;
    assert_int_equal(mdi_tokenizer_create(&v, &t, &err), MDI_ERR_FORMAT);
    assert_non_null(strstr(err.msg, "piece 6 duplicates piece 4"));
    mdi_vocab_free(&v);
    pbw w = {.n = 0};
    w_bytes(&w, 3, "\x20\x00", 2);
    assert_int_equal(read_pb(&w, &v, &err), MDI_ERR_FORMAT);
    assert_non_null(strstr(err.msg, "no pieces"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_merges_by_score),
        cmocka_unit_test(test_ties_leftmost),
        cmocka_unit_test(test_dummy_prefix_and_spaces),
        cmocka_unit_test(test_byte_fallback),
        cmocka_unit_test(test_invalid_bytes_frozen),
        cmocka_unit_test(test_missing_bytes_use_unk),
        cmocka_unit_test(test_user_defined_frozen),
        cmocka_unit_test(test_only_normal_pieces_merge),
        cmocka_unit_test(test_bos_and_empty),
        cmocka_unit_test(test_cap_too_small),
        cmocka_unit_test(test_encode_bad_args),
        cmocka_unit_test(test_decode),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_matches_naive_bpe),
        cmocka_unit_test(test_validate_rejects),
        cmocka_unit_test(test_create_rejects_duplicates_and_empty),
        cmocka_unit_test(test_vocab_alloc),
        cmocka_unit_test(test_long_text),
        cmocka_unit_test(test_handmade_spm),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

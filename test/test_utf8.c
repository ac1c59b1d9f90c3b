/* mdi_utf8_valid and mdi_utf8_repair: hand-picked cases, then every sequence
 * of one to three bytes (and a grid of four-byte ones) against a validator and
 * a repair written from the Unicode standard's table of well-formed byte
 * sequences. */
#include "test_util.h"

#include "mdi/engine.h"

/* Validate a copy of s[0..len) in a buffer of exactly len bytes, so that
 * ASan sees any read past the end. */
static int valid(const char *s, size_t len)
{
    char *copy = malloc(len ? len : 1);
    assert_non_null(copy);
    memcpy(copy, s, len);
    int v = mdi_utf8_valid(copy, len);
    free(copy);
    return v;
}

/* Unicode 15, table 3-7: well-formed UTF-8 byte sequences. */
static const struct {
    unsigned char lo[4], hi[4];
    size_t n;
} rows[] = {
    {{0x00}, {0x7f}, 1},
    {{0xc2, 0x80}, {0xdf, 0xbf}, 2},
    {{0xe0, 0xa0, 0x80}, {0xe0, 0xbf, 0xbf}, 3},
    {{0xe1, 0x80, 0x80}, {0xec, 0xbf, 0xbf}, 3},
    {{0xed, 0x80, 0x80}, {0xed, 0x9f, 0xbf}, 3},
    {{0xee, 0x80, 0x80}, {0xef, 0xbf, 0xbf}, 3},
    {{0xf0, 0x90, 0x80, 0x80}, {0xf0, 0xbf, 0xbf, 0xbf}, 4},
    {{0xf1, 0x80, 0x80, 0x80}, {0xf3, 0xbf, 0xbf, 0xbf}, 4},
    {{0xf4, 0x80, 0x80, 0x80}, {0xf4, 0x8f, 0xbf, 0xbf}, 4},
};

/* The length of the longest prefix of s[0..len) that some row allows (at most
 * the row's length; 0 if no row starts with s[0]) and that row's length. */
static size_t row_prefix(const unsigned char *s, size_t len, size_t *row_n)
{
    for (size_t r = 0; r < sizeof rows / sizeof rows[0]; r++) {
        if (s[0] < rows[r].lo[0] || s[0] > rows[r].hi[0])
            continue;
        size_t k = 1;
        while (k < rows[r].n && k < len && s[k] >= rows[r].lo[k] && s[k] <= rows[r].hi[k])
            k++;
        *row_n = rows[r].n;
        return k;
    }
    *row_n = 0;
    return 0;
}

/* The length of the well-formed sequence at s[0..len), or 0 if it is ill-formed. */
static size_t well_formed_at(const unsigned char *s, size_t len)
{
    size_t n, k = row_prefix(s, len, &n);
    return k == n ? n : 0;
}

static int ref_valid(const unsigned char *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        size_t n = well_formed_at(s + i, len - i);
        if (!n)
            return 0;
        i += n;
    }
    return 1;
}

/* A string literal and its length (without the terminating NUL). */
typedef struct case_ {
    const char *s;
    size_t len;
} case_;
// clang-format off
#define CASE(lit) {(lit), sizeof(lit) - 1}
// clang-format on

static void test_accepts(void **state)
{
    (void)state;
    const case_ ok[] = {
        CASE(""),
        CASE("hello, world"),
        CASE("\x01\x7f"),
        CASE("a\0b"),              /* NUL is a character like any other */
        CASE("\xc2\x80"),          /* U+0080, smallest 2-byte */
        CASE("\xc3\xa9t\xc3\xa9"), /* été */
        CASE("\xdf\xbf"),          /* U+07FF */
        CASE("\xe0\xa0\x80"),      /* U+0800, smallest 3-byte */
        CASE("\xe2\x82\xac"),      /* € */
        CASE("\xed\x9f\xbf"),      /* U+D7FF, just below the surrogates */
        CASE("\xee\x80\x80"),      /* U+E000, just above them */
        CASE("\xef\xbf\xbf"),      /* U+FFFF */
        CASE("\xf0\x90\x80\x80"),  /* U+10000, smallest 4-byte */
        CASE("\xf0\x9f\x98\x80"),  /* emoji */
        CASE("\xf4\x8f\xbf\xbf"),  /* U+10FFFF, the last code point */
        CASE("x\xe6\x97\xa5\xe6\x9c\xac\xf0\x9f\x98\x80y"),
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
        if (!valid(ok[i].s, ok[i].len))
            fail_msg("valid case %zu rejected", i);
}

static void test_rejects(void **state)
{
    (void)state;
    const case_ bad[] = {
        CASE("\xc0\x80"),                 /* overlong NUL */
        CASE("\xc1\xbf"),                 /* overlong U+007F */
        CASE("\xe0\x80\x80"),             /* overlong 3-byte */
        CASE("\xe0\x9f\xbf"),             /* overlong U+07FF */
        CASE("\xf0\x80\x80\x80"),         /* overlong 4-byte */
        CASE("\xf0\x8f\xbf\xbf"),         /* overlong U+FFFF */
        CASE("\xed\xa0\x80"),             /* U+D800, a surrogate */
        CASE("\xed\xbf\xbf"),             /* U+DFFF */
        CASE("\xed\xa0\xbd\xed\xb8\x80"), /* a surrogate pair (CESU-8) */
        CASE("\xf4\x90\x80\x80"),         /* U+110000 */
        CASE("\xf5\x80\x80\x80"),
        CASE("\xf7\xbf\xbf\xbf"),
        CASE("\xf8\x88\x80\x80\x80"), /* 5-byte form */
        CASE("\xfc\x84\x80\x80\x80\x80"),
        CASE("\xfe"),
        CASE("\xff"),
        CASE("\x80"), /* stray continuation bytes */
        CASE("a\xbf"),
        CASE("\xc3\xa9\xa9"),
        CASE("\xc3"), /* truncated at the end */
        CASE("abc\xe2\x82"),
        CASE("\xf0\x9f\x98"),
        CASE("\xf0"),
        CASE("\xc3\x41"), /* lead byte followed by a non-continuation */
        CASE("\xe2\x28\xa1"),
        CASE("\xe2\x82\x28"),
        CASE("\xf0\x9f\x28\x80"),
        CASE("\xf0\x9f\x98\xc3\xa9"),
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (valid(bad[i].s, bad[i].len))
            fail_msg("invalid case %zu accepted", i);
}

/* Only len bytes are looked at: a valid prefix of an invalid buffer passes,
 * and a character cut by len fails. */
static void test_length_bounds(void **state)
{
    (void)state;
    assert_true(valid("ab\xff", 2));
    assert_true(valid("\xe2\x82\xac\x80", 3));
    assert_false(valid("\xe2\x82\xac", 2));
    assert_false(valid("\xf0\x9f\x98\x80", 3));
    assert_true(mdi_utf8_valid("\xff", 0)); /* nothing to look at: empty is valid */
}

/* Every string of one, two and three bytes agrees with the reference. */
static void test_exhaustive_short(void **state)
{
    (void)state;
    unsigned char b[3];
    for (unsigned x = 0; x < 256; x++) {
        b[0] = (unsigned char)x;
        assert_int_equal(mdi_utf8_valid((const char *)b, 1), ref_valid(b, 1));
        for (unsigned y = 0; y < 256; y++) {
            b[1] = (unsigned char)y;
            assert_int_equal(mdi_utf8_valid((const char *)b, 2), ref_valid(b, 2));
            for (unsigned z = 0; z < 256; z++) {
                b[2] = (unsigned char)z;
                if (mdi_utf8_valid((const char *)b, 3) != ref_valid(b, 3))
                    fail_msg("%02x %02x %02x: mdi_utf8_valid says %d", x, y, z,
                             mdi_utf8_valid((const char *)b, 3));
            }
        }
    }
}

/* Four-byte strings with lead bytes e0..ff and the other bytes drawn from
 * the edges of every byte class, against the reference. */
static void test_four_byte_grid(void **state)
{
    (void)state;
    const unsigned char edge[] = {0x00, 0x41, 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf,
                                  0xc0, 0xc2, 0xdf, 0xe0, 0xed, 0xef, 0xf0, 0xf4, 0xff};
    const size_t ne = sizeof edge;
    unsigned char b[4];
    for (unsigned x = 0xe0; x < 256; x++)
        for (size_t i = 0; i < ne; i++)
            for (size_t j = 0; j < ne; j++)
                for (size_t k = 0; k < ne; k++) {
                    b[0] = (unsigned char)x, b[1] = edge[i], b[2] = edge[j], b[3] = edge[k];
                    if (mdi_utf8_valid((const char *)b, 4) != ref_valid(b, 4))
                        fail_msg("%02x %02x %02x %02x: mdi_utf8_valid says %d", b[0], b[1], b[2],
                                 b[3], mdi_utf8_valid((const char *)b, 4));
                }
}

/* Reference repair, from the table: well-formed sequences are copied; every
 * other byte becomes U+FFFD, as SentencePiece decodes a run of byte pieces
 * (one U+FFFD per byte that does not start a well-formed character). */
static size_t ref_repair(const unsigned char *s, size_t len, char *out)
{
    size_t i = 0, o = 0, n;
    while (i < len) {
        if ((n = well_formed_at(s + i, len - i))) {
            memcpy(out + o, s + i, n);
            o += n, i += n;
        } else {
            memcpy(out + o, "\xef\xbf\xbd", 3);
            o += 3, i++;
        }
    }
    return o;
}

/* mdi_utf8_repair over s[0..len) fed in pieces of `step` bytes, then ended. */
static size_t repair(const unsigned char *s, size_t len, size_t step, char *out)
{
    mdi_utf8_repair r = {{0}, 0, 0};
    size_t o = 0;
    for (size_t i = 0; i < len; i += step)
        o +=
            mdi_utf8_repair_feed(&r, (const char *)s + i, len - i < step ? len - i : step, out + o);
    return o + mdi_utf8_repair_end(&r, out + o);
}

/* Repair equals the reference, fed whole and a byte at a time; valid text is unchanged. */
static void expect_repair(const unsigned char *s, size_t len)
{
    char want[64], got[64];
    assert_true(len <= 16);
    size_t nw = ref_repair(s, len, want);
    for (size_t step = 1; step <= len; step += len > 1 ? len - 1 : 1) {
        size_t ng = repair(s, len, step, got);
        if (ng != nw || memcmp(got, want, nw) != 0)
            fail_msg("repair of %zu bytes (first %02x) in steps of %zu differs", len, s[0], step);
    }
    assert_true(!ref_valid(s, len) || (nw == len && memcmp(want, s, len) == 0));
}

static void test_repair(void **state)
{
    (void)state;
    char out[64];
    const struct {
        case_ in, want;
    } hand[] = {
        {CASE("a\xff"
              "b"),
         CASE("a\xef\xbf\xbd"
              "b")},
        {CASE("\xe2\x28\xa1"), CASE("\xef\xbf\xbd(\xef\xbf\xbd")},
        /* cut at the end: one U+FFFD per byte, as SentencePiece 0.1.97 decodes
         * the byte pieces <0xF0><0x9F><0x98> */
        {CASE("\xf0\x9f\x98"), CASE("\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd")},
        {CASE("\xe2\x82"), CASE("\xef\xbf\xbd\xef\xbf\xbd")},
        {CASE("\xf0\x9f\x98 Hello"), CASE("\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd Hello")},
        {CASE("\xed\xa0\x80"), CASE("\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd")}, /* surrogate */
        {CASE("\xe6\x97\xa5"), CASE("\xe6\x97\xa5")},
    };
    for (size_t i = 0; i < sizeof hand / sizeof hand[0]; i++) {
        size_t n = repair((const unsigned char *)hand[i].in.s, hand[i].in.len, 1, out);
        assert_int_equal(n, hand[i].want.len);
        assert_memory_equal(out, hand[i].want.s, n);
    }
    /* A character cut between calls waits for its end. */
    mdi_utf8_repair r = {{0}, 0, 0};
    assert_int_equal(mdi_utf8_repair_feed(&r, "x\xe6\x97", 3, out), 1);
    assert_int_equal(mdi_utf8_repair_feed(&r, "\xa5", 1, out), 3);
    assert_memory_equal(out, "\xe6\x97\xa5", 3);
    assert_int_equal(mdi_utf8_repair_end(&r, out), 0);
    /* A piece without text between two byte pieces ends the run (the engine
     * calls repair_end): <0xCE> </s> <0xA1> is two U+FFFD, not U+03A1. */
    assert_int_equal(mdi_utf8_repair_feed(&r, "\xce", 1, out), 0);
    assert_int_equal(mdi_utf8_repair_end(&r, out), 3);
    assert_int_equal(mdi_utf8_repair_feed(&r, "\xa1", 1, out), 3);
    assert_memory_equal(out, "\xef\xbf\xbd", 3);
    unsigned char b[4];
    for (unsigned x = 0; x < 256; x++) {
        b[0] = (unsigned char)x;
        expect_repair(b, 1);
        for (unsigned y = 0; y < 256; y++) {
            b[1] = (unsigned char)y;
            expect_repair(b, 2);
            for (unsigned z = 0; z < 256; z += x < 0xc0 ? 15 : 1) {
                b[2] = (unsigned char)z;
                expect_repair(b, 3);
            }
        }
    }
    const unsigned char edge[] = {0x00, 0x41, 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf,
                                  0xc0, 0xc2, 0xdf, 0xe0, 0xed, 0xef, 0xf0, 0xf4, 0xff};
    for (unsigned x = 0xe0; x < 256; x++)
        for (size_t i = 0; i < sizeof edge; i++)
            for (size_t j = 0; j < sizeof edge; j++)
                for (size_t k = 0; k < sizeof edge; k++) {
                    b[0] = (unsigned char)x, b[1] = edge[i], b[2] = edge[j], b[3] = edge[k];
                    expect_repair(b, 4);
                }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_accepts),        cmocka_unit_test(test_rejects),
        cmocka_unit_test(test_length_bounds),  cmocka_unit_test(test_exhaustive_short),
        cmocka_unit_test(test_four_byte_grid), cmocka_unit_test(test_repair),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* Test helpers for the Llama 2 reference encodings (header-only, static):
 * read a whole file, and a small strict JSON reader for
 * ../shared/models/llama2-tokenizer/encodings.json. Failures end the test. */
#ifndef MDI_JSON_TEST_UTIL_H
#define MDI_JSON_TEST_UTIL_H

#include "test_util.h"

#include <ctype.h>

/* The whole file at path, NUL-terminated (caller frees); *len excludes the NUL. */
static inline uint8_t *read_all(const char *path, size_t *len)
{
    FILE *fp = fopen(path, "rb");
    assert_non_null(fp);
    assert_int_equal(fseek(fp, 0, SEEK_END), 0);
    long size = ftell(fp);
    assert_true(size >= 0);
    rewind(fp);
    uint8_t *data = malloc((size_t)size + 1);
    assert_non_null(data);
    assert_int_equal(fread(data, 1, (size_t)size, fp), (size_t)size);
    fclose(fp);
    data[size] = 0;
    *len = (size_t)size;
    return data;
}

/* ---- a JSON reader for encodings.json: [{"text": "...", "ids_no_bos": [..]}] ---- */

#define MAX_CASES 256
#define MAX_IDS 256

typedef struct {
    char *text;
    size_t len, n;
    int32_t ids[MAX_IDS];
} enc_case;

typedef struct {
    const char *p, *end;
} jr;

static inline int jr_eat(jr *j, char c)
{
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\n' || *j->p == '\r' || *j->p == '\t'))
        j->p++;
    if (j->p < j->end && *j->p == c) {
        j->p++;
        return 1;
    }
    return 0;
}

static inline uint32_t jr_hex4(jr *j)
{
    char hex[5] = {0};
    for (int i = 0; i < 4; i++, j->p++) {
        if (j->p >= j->end || !isxdigit((unsigned char)*j->p))
            fail_msg("json: bad \\u escape");
        hex[i] = *j->p;
    }
    return (uint32_t)strtoul(hex, NULL, 16);
}

static inline size_t put_utf8(char *out, uint32_t cp)
{
    static const uint8_t lead[5] = {0, 0, 0xc0, 0xe0, 0xf0};
    size_t n = cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
    for (size_t i = n - 1; i > 0; i--, cp >>= 6)
        out[i] = (char)(0x80 | (cp & 0x3f));
    out[0] = (char)(lead[n] | cp);
    return n;
}

static inline uint32_t jr_escape_u(jr *j)
{
    uint32_t cp = jr_hex4(j);
    if (cp >= 0xd800 && cp < 0xdc00) {
        if (j->end - j->p < 2 || j->p[0] != '\\' || j->p[1] != 'u')
            fail_msg("json: lone high surrogate");
        j->p += 2;
        uint32_t lo = jr_hex4(j);
        if (lo < 0xdc00 || lo >= 0xe000)
            fail_msg("json: bad low surrogate");
        cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
    } else if (cp >= 0xdc00 && cp < 0xe000) {
        fail_msg("json: lone low surrogate");
    }
    return cp;
}

/* A JSON string, decoded to UTF-8 (malloc'd, NUL-terminated; *len excludes the NUL). */
static inline char *jr_string(jr *j, size_t *len)
{
    if (!jr_eat(j, '"'))
        fail_msg("json: expected a string");
    char *out = malloc((size_t)(j->end - j->p) + 1);
    size_t n = 0;
    assert_non_null(out);
    for (;;) {
        if (j->p >= j->end)
            fail_msg("json: unterminated string");
        char c = *j->p++;
        if (c == '"')
            break;
        if (c != '\\') {
            out[n++] = c;
            continue;
        }
        if (j->p >= j->end)
            fail_msg("json: unterminated escape");
        c = *j->p++;
        const char *from = "\"\\/bfnrt", *to = "\"\\/\b\f\n\r\t";
        const char *k = strchr(from, c);
        if (c == 'u')
            n += put_utf8(out + n, jr_escape_u(j));
        else if (c && k)
            out[n++] = to[k - from];
        else
            fail_msg("json: bad escape \\%c", c);
    }
    out[n] = '\0';
    *len = n;
    return out;
}

static inline void jr_int_array(jr *j, int32_t *ids, size_t *n)
{
    *n = 0;
    if (!jr_eat(j, '['))
        fail_msg("json: expected [");
    if (jr_eat(j, ']'))
        return;
    do {
        jr_eat(j, ' ');
        char *e;
        long v = strtol(j->p, &e, 10);
        if (e == j->p || e > j->end || v < INT32_MIN || v > INT32_MAX || *n == MAX_IDS)
            fail_msg("json: expected at most %d int32", MAX_IDS);
        j->p = e;
        ids[(*n)++] = (int32_t)v;
    } while (jr_eat(j, ','));
    if (!jr_eat(j, ']'))
        fail_msg("json: expected ]");
}

/* Expects `"key":` next. */
static inline void jr_key(jr *j, const char *key)
{
    size_t len;
    char *k = jr_string(j, &len);
    if (strcmp(k, key) != 0 || !jr_eat(j, ':'))
        fail_msg("json: expected key %s, found %s", key, k);
    free(k);
}

/* Parses [{"text": "...", "ids_no_bos": [...]}, ...] (keys in that order). */
static inline enc_case *parse_encodings(const char *data, size_t size, size_t *n_cases)
{
    jr j = {data, data + size};
    enc_case *cases = calloc(MAX_CASES, sizeof *cases);
    size_t n = 0;
    assert_non_null(cases);
    if (!jr_eat(&j, '['))
        fail_msg("json: expected [");
    do {
        if (n == MAX_CASES || !jr_eat(&j, '{'))
            fail_msg("json: expected { (at most %d cases)", MAX_CASES);
        jr_key(&j, "text");
        cases[n].text = jr_string(&j, &cases[n].len);
        if (!jr_eat(&j, ','))
            fail_msg("json: expected ,");
        jr_key(&j, "ids_no_bos");
        jr_int_array(&j, cases[n].ids, &cases[n].n);
        if (!jr_eat(&j, '}'))
            fail_msg("json: expected }");
        n++;
    } while (jr_eat(&j, ','));
    if (!jr_eat(&j, ']') || jr_eat(&j, '\0') || j.p != j.end)
        fail_msg("json: expected ] at the end");
    *n_cases = n;
    return cases;
}

static inline void free_encodings(enc_case *cases, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(cases[i].text);
    free(cases);
}

static inline enc_case *read_encodings(size_t *n_cases)
{
    char buf[512];
    size_t size;
    char *data = (char *)read_all(
        mdi_test_model_path("llama2-tokenizer/encodings.json", buf, sizeof buf), &size);
    enc_case *cases = parse_encodings(data, size, n_cases);
    free(data);
    return cases;
}

#endif /* MDI_JSON_TEST_UTIL_H */

/* Unit tests for the strict JSON reader (weights-tools/json.c). */
#include "test_util.h"

#include <math.h>
#include <unistd.h>

#include "json.h"

/* Parse a NUL-terminated document; fails the test on error. */
static cv_json *parse_ok(const char *text)
{
    cv_json *j = NULL;
    mdi_err err = {0};
    mdi_status s = cv_json_parse(text, strlen(text), "doc.json", &j, &err);
    if (s != MDI_OK)
        fail_msg("'%s' should parse: %s", text, err.msg);
    assert_non_null(j);
    return j;
}

/* Parse len bytes expecting failure; returns the status and leaves the message in err. */
static mdi_status parse_bad(const char *text, size_t len, mdi_err *err)
{
    cv_json *j = (cv_json *)1;
    mdi_status s = cv_json_parse(text, len, "bad.json", &j, err);
    if (s == MDI_OK)
        fail_msg("'%.*s' should not parse", (int)len, text);
    assert_null(j);
    assert_non_null(strstr(err->msg, "bad.json: line "));
    return s;
}

static void test_valid_document(void **state)
{
    (void)state;
    const char *doc = " {\n \"architectures\": [\"LlamaForCausalLM\"],\n \"hidden_size\": 64,"
                      " \"rms_norm_eps\": 1e-05, \"rope_theta\": 10000.0, \"neg\": -12,"
                      " \"frac\": -0.5E+2, \"big\": 9223372036854775807, \"huge\": 1e300,"
                      " \"tie\": true, \"off\": false, \"scaling\": null, \"empty\": {},"
                      " \"none\": [], \"nested\": {\"a\": [1, [2, {\"b\": \"c\"}]]} } \n";
    cv_json *j = parse_ok(doc);
    int64_t i = 0;
    double d = 0;
    int b = -1;
    assert_int_equal(cv_json_type_of(j), CV_JSON_OBJECT);
    assert_int_equal(cv_json_count(j), 14);
    assert_string_equal(cv_json_key_at(j, 0), "architectures");
    assert_string_equal(cv_json_key_at(j, 13), "nested");
    const cv_json *arch = cv_json_get(j, "architectures");
    assert_int_equal(cv_json_count(arch), 1);
    assert_string_equal(cv_json_as_string(cv_json_at(arch, 0), NULL), "LlamaForCausalLM");
    assert_true(cv_json_as_int64(cv_json_get(j, "hidden_size"), &i));
    assert_int_equal(i, 64);
    assert_true(cv_json_as_double(cv_json_get(j, "rms_norm_eps"), &d));
    assert_true(d == 1e-5);
    assert_true(cv_json_as_int64(cv_json_get(j, "rope_theta"), &i)); /* 10000.0 is integral */
    assert_int_equal(i, 10000);
    assert_true(cv_json_as_int64(cv_json_get(j, "neg"), &i));
    assert_int_equal(i, -12);
    assert_true(cv_json_as_int64(cv_json_get(j, "frac"), &i) && i == -50);
    assert_true(cv_json_as_double(cv_json_get(j, "frac"), &d) && d == -50.0);
    assert_false(cv_json_as_int64(cv_json_get(j, "rms_norm_eps"), &i));
    assert_true(cv_json_as_int64(cv_json_get(j, "big"), &i));
    assert_true(i == INT64_MAX);
    assert_false(cv_json_as_int64(cv_json_get(j, "huge"), &i));
    assert_true(cv_json_as_bool(cv_json_get(j, "tie"), &b) && b == 1);
    assert_true(cv_json_as_bool(cv_json_get(j, "off"), &b) && b == 0);
    assert_true(cv_json_is_null(cv_json_get(j, "scaling")));
    assert_int_equal(cv_json_type_of(cv_json_get(j, "empty")), CV_JSON_OBJECT);
    assert_int_equal(cv_json_count(cv_json_get(j, "none")), 0);
    assert_null(cv_json_get(j, "missing"));
    assert_null(cv_json_get(cv_json_get(j, "empty"), "x"));
    assert_null(cv_json_get(arch, "x")); /* not an object */
    assert_null(cv_json_at(arch, 1));
    assert_false(cv_json_as_bool(cv_json_get(j, "hidden_size"), &b));
    assert_null(cv_json_as_string(cv_json_get(j, "hidden_size"), NULL));
    const cv_json *inner = cv_json_at(cv_json_at(cv_json_get(cv_json_get(j, "nested"), "a"), 1), 1);
    assert_string_equal(cv_json_as_string(cv_json_get(inner, "b"), NULL), "c");
    assert_string_equal(cv_json_type_name(CV_JSON_ARRAY), "array");
    cv_json_free(j);

    /* Scalars at top level. */
    j = parse_ok("-0");
    assert_true(cv_json_as_int64(j, &i) && i == 0);
    cv_json_free(j);
    j = parse_ok("\"x\"");
    assert_string_equal(cv_json_as_string(j, NULL), "x");
    cv_json_free(j);
    cv_json_free(NULL);
}

static void test_escapes(void **state)
{
    (void)state;
    cv_json *j = parse_ok("[\"\\\"\\\\\\/\\b\\f\\n\\r\\t\", \"\\u0041\\u00e9\\u20AC\","
                          " \"\\ud83d\\ude00\", \"a\\u0000b\", \"caf\xc3\xa9 \xe2\x96\x81\","
                          " \"\xf0\x9f\x98\x80\"]");
    size_t len = 0;
    const char *s = cv_json_as_string(cv_json_at(j, 0), &len);
    assert_int_equal(len, 8);
    assert_memory_equal(s, "\"\\/\b\f\n\r\t", 8);
    s = cv_json_as_string(cv_json_at(j, 1), &len);
    assert_string_equal(s, "A\xc3\xa9\xe2\x82\xac");
    s = cv_json_as_string(cv_json_at(j, 2), &len);
    assert_string_equal(s, "\xf0\x9f\x98\x80"); /* U+1F600 from a surrogate pair */
    s = cv_json_as_string(cv_json_at(j, 3), &len);
    assert_int_equal(len, 3);
    assert_memory_equal(s, "a\0b", 4);
    assert_string_equal(cv_json_as_string(cv_json_at(j, 4), NULL), "caf\xc3\xa9 \xe2\x96\x81");
    assert_string_equal(cv_json_as_string(cv_json_at(j, 5), NULL), "\xf0\x9f\x98\x80");
    cv_json_free(j);

    /* Escaped keys are looked up by their decoded value. */
    j = parse_ok("{\"\\u0061b\": 1, \"a\\nb\": 2}");
    int64_t v = 0;
    assert_true(cv_json_as_int64(cv_json_get(j, "ab"), &v) && v == 1);
    assert_true(cv_json_as_int64(cv_json_get(j, "a\nb"), &v) && v == 2);
    cv_json_free(j);
}

static void test_malformed(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "",
        " ",
        "{",
        "[",
        "[1,2",
        "{\"a\":1,}",
        "[1,]",
        "[,1]",
        "{,}",
        "\"abc",
        "\"\\x\"",
        "\"\\u12G4\"",
        "\"\\u12\"",
        "\"\\ud800\"",
        "\"\\udc00\"",
        "\"\\ud800\\u0041\"",
        "\"\\ud800x\"",
        "01",
        "-01",
        "1.",
        ".5",
        "1e",
        "1e+",
        "-",
        "+1",
        "NaN",
        "Infinity",
        "-Infinity",
        "tru",
        "nul",
        "True",
        "{\"a\" 1}",
        "{a:1}",
        "{\"a\":}",
        "[1 2]",
        "{} x",
        "1 2",
        "\"\x01\"",
        "\"tab\there\"",
        "\"\xff\"",
        "\"\xc0\xaf\"",
        "\"\xed\xa0\x80\"",
        "\"\xf4\x90\x80\x80\"",
        "\"\xe2\x96\"",
        "{\"a\":1,\"a\":2}",
        "1e999",
        "-1e999",
        "[1]]",
        "{\"a\":1}}",
        "'a'",
        "[1,2,]",
        "\"\\",
        "{\"a\":[1,{\"b\":nul}]}",
        "/* c */ 1",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        mdi_err err = {0};
        parse_bad(bad[i], strlen(bad[i]), &err);
    }
    /* Embedded NUL outside a string is not whitespace. */
    mdi_err err = {0};
    parse_bad("[1,\0 2]", 7, &err);
    parse_bad("{\"a\":1}\0", 8, &err);

    /* The message points at the problem. */
    parse_bad("{\n  \"a\": 1,\n  \"b\" 2\n}", 21, &err);
    assert_non_null(strstr(err.msg, "line 3 column 7"));
    assert_non_null(strstr(err.msg, "expected ':'"));
    parse_bad("{\"k\": 1, \"k\": 2}", 16, &err);
    assert_non_null(strstr(err.msg, "duplicate object key \"k\""));
    parse_bad("\"\\q\"", 4, &err);
    assert_non_null(strstr(err.msg, "bad escape"));
    parse_bad("[1] x", 5, &err);
    assert_non_null(strstr(err.msg, "trailing characters"));
}

static void test_truncated(void **state)
{
    (void)state;
    const char *doc = "{\"a\": [1, -2.5e3, \"x\\u00e9\\ud83d\\ude00\", true, false, null],"
                      " \"b\": {\"c\": \"\xe2\x96\x81\"}}";
    size_t n = strlen(doc);
    cv_json *j = parse_ok(doc);
    cv_json_free(j);
    for (size_t len = 0; len < n; len++) {
        mdi_err err = {0};
        parse_bad(doc, len, &err);
    }
}

static void test_depth(void **state)
{
    (void)state;
    char buf[2 * (CV_JSON_MAX_DEPTH + 1) + 1];
    /* Exactly the limit parses. */
    for (int i = 0; i < CV_JSON_MAX_DEPTH; i++) {
        buf[i] = '[';
        buf[CV_JSON_MAX_DEPTH + i] = ']';
    }
    buf[2 * CV_JSON_MAX_DEPTH] = '\0';
    cv_json *j = parse_ok(buf);
    cv_json_free(j);
    /* One more level fails. */
    for (int i = 0; i <= CV_JSON_MAX_DEPTH; i++) {
        buf[i] = '[';
        buf[CV_JSON_MAX_DEPTH + 1 + i] = ']';
    }
    buf[2 * (CV_JSON_MAX_DEPTH + 1)] = '\0';
    mdi_err err = {0};
    parse_bad(buf, strlen(buf), &err);
    assert_non_null(strstr(err.msg, "nesting"));

    /* A huge unbalanced nest fails fast without recursing deeply. */
    size_t big = 1u << 20;
    char *deep = malloc(big);
    assert_non_null(deep);
    for (size_t i = 0; i < big; i++)
        deep[i] = i % 2 ? '{' : '[';
    parse_bad(deep, big, &err);
    memset(deep, '[', big);
    parse_bad(deep, big, &err);
    free(deep);

    /* Objects inside arrays count too. */
    char mixed[4 * CV_JSON_MAX_DEPTH + 16];
    size_t k = 0;
    for (int i = 0; i < CV_JSON_MAX_DEPTH / 2 + 1; i++) {
        memcpy(mixed + k, "{\"a\":[", 6);
        k += 6;
    }
    parse_bad(mixed, k, &err);
}

static void test_large_object(void **state)
{
    (void)state;
    /* Many members: exercises growth and the sorted index. */
    size_t n = 5000, cap = n * 32 + 16, k = 0;
    char *doc = malloc(cap);
    assert_non_null(doc);
    doc[k++] = '{';
    for (size_t i = 0; i < n; i++)
        k += (size_t)snprintf(doc + k, cap - k, "%s\"t%zu\": %zu", i ? "," : "", n - i, i);
    doc[k++] = '}';
    cv_json *j = NULL;
    mdi_err err = {0};
    assert_int_equal(cv_json_parse(doc, k, "big.json", &j, &err), MDI_OK);
    assert_int_equal(cv_json_count(j), n);
    for (size_t i = 0; i < n; i += 97) {
        char key[32];
        int64_t v = -1;
        snprintf(key, sizeof key, "t%zu", n - i);
        assert_true(cv_json_as_int64(cv_json_get(j, key), &v));
        assert_int_equal(v, (int64_t)i);
    }
    cv_json_free(j);
    free(doc);
}

static void test_parse_file(void **state)
{
    (void)state;
    char path[] = "/tmp/mdi-json-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    const char *doc = "{\"vocab_size\": 512}\n";
    assert_int_equal(write(fd, doc, strlen(doc)), (ssize_t)strlen(doc));
    close(fd);
    cv_json *j = NULL;
    mdi_err err = {0};
    assert_int_equal(cv_json_parse_file(path, 1024, &j, &err), MDI_OK);
    int64_t v = 0;
    assert_true(cv_json_as_int64(cv_json_get(j, "vocab_size"), &v) && v == 512);
    cv_json_free(j);
    assert_int_equal(cv_json_parse_file(path, 4, &j, &err), MDI_ERR_RANGE);
    assert_null(j);
    assert_non_null(strstr(err.msg, "larger than the limit"));
    unlink(path);
    assert_int_equal(cv_json_parse_file(path, 1024, &j, &err), MDI_ERR_IO);
    assert_non_null(strstr(err.msg, path));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_document), cmocka_unit_test(test_escapes),
        cmocka_unit_test(test_malformed),      cmocka_unit_test(test_truncated),
        cmocka_unit_test(test_depth),          cmocka_unit_test(test_large_object),
        cmocka_unit_test(test_parse_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

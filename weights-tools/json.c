/* Strict JSON parser into an owned tree, with typed lookups. */
#include "json.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Sorted view of an object's keys, for binary-search lookup and duplicate checks. */
typedef struct jkey {
    const char *key;
    size_t len;
    size_t idx; /* member index in document order */
} jkey;

struct cv_json {
    cv_json_type type;
    int boolean;
    int is_int;    /* number literal was an integer that fits int64 */
    int64_t ival;  /* value when is_int */
    double num;    /* value of any number */
    char *str;     /* string value, NUL-terminated */
    size_t slen;   /* string length (excluding the terminator) */
    cv_json *kids; /* (n) array elements or object member values */
    size_t n;
    size_t cap;
    char **keys;   /* (n) object keys, NUL-terminated */
    size_t *klens; /* (n) key lengths */
    jkey *index;   /* (n) keys sorted bytewise */
};

typedef struct jparser {
    const char *start, *p, *end;
    const char *what;
    mdi_err *err;
    int depth;
} jparser;

static mdi_status parse_value(jparser *ps, cv_json *out);

/* Record a parse error at the current position as "what: line L column C: msg". */
static mdi_status jfail(jparser *ps, mdi_status s, const char *msg)
{
    size_t line = 1, col = 1;
    for (const char *q = ps->start; q < ps->p && q < ps->end; q++) {
        if (*q == '\n') {
            line++;
            col = 1;
        } else {
            col++;
        }
    }
    return mdi_errf(ps->err, s, "%s: line %zu column %zu: %s", ps->what, line, col, msg);
}

static void skip_ws(jparser *ps)
{
    while (ps->p < ps->end && (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r'))
        ps->p++;
}

static void node_clear(cv_json *j)
{
    for (size_t i = 0; i < j->n; i++) {
        node_clear(&j->kids[i]);
        if (j->keys)
            free(j->keys[i]);
    }
    free(j->kids);
    free(j->keys);
    free(j->klens);
    free(j->index);
    free(j->str);
    memset(j, 0, sizeof *j);
}

void cv_json_free(cv_json *root)
{
    if (!root)
        return;
    node_clear(root);
    free(root);
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Read the 4 hex digits after "\u" at ps->p; returns -1 if malformed. */
static long read_hex4(jparser *ps)
{
    if (ps->end - ps->p < 4)
        return -1;
    long v = 0;
    for (int i = 0; i < 4; i++) {
        int h = hexval(ps->p[i]);
        if (h < 0)
            return -1;
        v = v * 16 + h;
    }
    ps->p += 4;
    return v;
}

/* Append code point cp as UTF-8 to buf (room for 4 bytes assured by caller). */
static size_t put_utf8(char *buf, unsigned long cp)
{
    if (cp < 0x80) {
        buf[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        buf[0] = (char)(0xC0 | (cp >> 6));
        buf[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        buf[0] = (char)(0xE0 | (cp >> 12));
        buf[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        buf[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    buf[0] = (char)(0xF0 | (cp >> 18));
    buf[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    buf[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    buf[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Length of the valid UTF-8 sequence at s (at most n bytes), or 0 if invalid. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    size_t len;
    unsigned long cp, min;
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2, cp = c & 0x1F, min = 0x80;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3, cp = c & 0x0F, min = 0x800;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4, cp = c & 0x07, min = 0x10000;
    } else {
        return 0;
    }
    if (n < len)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return len;
}

/* Decode one escape after the backslash into buf; returns bytes written or 0 on error. */
static size_t parse_escape(jparser *ps, char *buf)
{
    static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
    char c = *ps->p++;
    const char *hit = c ? strchr(from, c) : NULL;
    if (hit) {
        buf[0] = to[hit - from];
        return 1;
    }
    if (c != 'u')
        return 0;
    long hi = read_hex4(ps);
    if (hi < 0 || (hi >= 0xDC00 && hi <= 0xDFFF))
        return 0;
    if (hi < 0xD800 || hi > 0xDBFF)
        return put_utf8(buf, (unsigned long)hi);
    if (ps->end - ps->p < 2 || ps->p[0] != '\\' || ps->p[1] != 'u')
        return 0;
    ps->p += 2;
    long lo = read_hex4(ps);
    if (lo < 0xDC00 || lo > 0xDFFF)
        return 0;
    return put_utf8(buf,
                    0x10000 + (((unsigned long)hi - 0xD800) << 10) + ((unsigned long)lo - 0xDC00));
}

/* Parse a string literal at ps->p (which is '"') into a new NUL-terminated buffer. */
static mdi_status parse_string(jparser *ps, char **out, size_t *out_len)
{
    const char *q = ++ps->p;
    /* Escapes never expand (\uXXXX is 6 bytes for at most 4), so the raw span bounds the size. */
    while (q < ps->end && *q != '"')
        q += (*q == '\\' && q + 1 < ps->end) ? 2 : 1;
    if (q >= ps->end)
        return jfail(ps, MDI_ERR_FORMAT, "unterminated string");
    char *buf = malloc((size_t)(q - ps->p) + 1);
    if (!buf)
        return jfail(ps, MDI_ERR_NOMEM, "out of memory for a string");
    size_t n = 0;
    while (*ps->p != '"') {
        unsigned char c = (unsigned char)*ps->p;
        if (c < 0x20) {
            free(buf);
            return jfail(ps, MDI_ERR_FORMAT, "raw control character in string");
        }
        if (c == '\\') {
            ps->p++;
            size_t k = parse_escape(ps, buf + n);
            if (k == 0) {
                free(buf);
                return jfail(ps, MDI_ERR_FORMAT, "bad escape sequence in string");
            }
            n += k;
            continue;
        }
        size_t k = utf8_len((const unsigned char *)ps->p, (size_t)(ps->end - ps->p));
        if (k == 0) {
            free(buf);
            return jfail(ps, MDI_ERR_FORMAT, "invalid UTF-8 in string");
        }
        memcpy(buf + n, ps->p, k);
        n += k;
        ps->p += k;
    }
    ps->p++;
    buf[n] = '\0';
    *out = buf;
    *out_len = n;
    return MDI_OK;
}

/* Parse a number with the strict JSON grammar: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)? */
static mdi_status parse_number(jparser *ps, cv_json *out)
{
    const char *s = ps->p, *q = ps->p;
    int integral = 1;
    if (q < ps->end && *q == '-')
        q++;
    if (q < ps->end && *q == '0') {
        q++;
    } else if (q < ps->end && *q >= '1' && *q <= '9') {
        while (q < ps->end && *q >= '0' && *q <= '9')
            q++;
    } else {
        return jfail(ps, MDI_ERR_FORMAT, "bad number");
    }
    if (q < ps->end && *q == '.') {
        integral = 0;
        if (++q >= ps->end || *q < '0' || *q > '9')
            return jfail(ps, MDI_ERR_FORMAT, "bad number: digit expected after '.'");
        while (q < ps->end && *q >= '0' && *q <= '9')
            q++;
    }
    if (q < ps->end && (*q == 'e' || *q == 'E')) {
        integral = 0;
        q++;
        if (q < ps->end && (*q == '+' || *q == '-'))
            q++;
        if (q >= ps->end || *q < '0' || *q > '9')
            return jfail(ps, MDI_ERR_FORMAT, "bad number: digit expected in exponent");
        while (q < ps->end && *q >= '0' && *q <= '9')
            q++;
    }
    size_t len = (size_t)(q - s);
    char *tmp = malloc(len + 1);
    if (!tmp)
        return jfail(ps, MDI_ERR_NOMEM, "out of memory for a number");
    memcpy(tmp, s, len);
    tmp[len] = '\0';
    errno = 0;
    out->num = strtod(tmp, NULL);
    int range_err = errno == ERANGE && isinf(out->num);
    if (integral) {
        errno = 0;
        long long v = strtoll(tmp, NULL, 10);
        out->is_int = errno != ERANGE;
        out->ival = (int64_t)v;
    }
    free(tmp);
    if (range_err)
        return jfail(ps, MDI_ERR_RANGE, "number out of range");
    out->type = CV_JSON_NUMBER;
    ps->p = q;
    return MDI_OK;
}

/* Make room for one more child of j (and its key when with_key). */
static mdi_status grow(jparser *ps, cv_json *j, int with_key)
{
    if (j->n < j->cap)
        return MDI_OK;
    size_t cap = j->cap ? j->cap * 2 : 4;
    cv_json *kids = realloc(j->kids, cap * sizeof *kids);
    if (!kids)
        return jfail(ps, MDI_ERR_NOMEM, "out of memory");
    j->kids = kids;
    if (with_key) {
        char **keys = realloc(j->keys, cap * sizeof *keys);
        if (!keys)
            return jfail(ps, MDI_ERR_NOMEM, "out of memory");
        j->keys = keys;
        size_t *klens = realloc(j->klens, cap * sizeof *klens);
        if (!klens)
            return jfail(ps, MDI_ERR_NOMEM, "out of memory");
        j->klens = klens;
    }
    j->cap = cap;
    return MDI_OK;
}

static mdi_status parse_array(jparser *ps, cv_json *out)
{
    mdi_status s;
    out->type = CV_JSON_ARRAY;
    ps->p++;
    skip_ws(ps);
    if (ps->p < ps->end && *ps->p == ']') {
        ps->p++;
        return MDI_OK;
    }
    for (;;) {
        if ((s = grow(ps, out, 0)) != MDI_OK)
            return s;
        memset(&out->kids[out->n], 0, sizeof out->kids[0]);
        s = parse_value(ps, &out->kids[out->n]);
        out->n++; /* counted even on failure so node_clear frees the partial child */
        if (s != MDI_OK)
            return s;
        skip_ws(ps);
        if (ps->p < ps->end && *ps->p == ',') {
            ps->p++;
            continue;
        }
        if (ps->p < ps->end && *ps->p == ']') {
            ps->p++;
            return MDI_OK;
        }
        return jfail(ps, MDI_ERR_FORMAT, "expected ',' or ']' in array");
    }
}

static int jkey_cmp(const void *a, const void *b)
{
    const jkey *x = a, *y = b;
    size_t n = x->len < y->len ? x->len : y->len;
    int c = memcmp(x->key, y->key, n);
    if (c)
        return c;
    return (x->len > y->len) - (x->len < y->len);
}

/* Build the sorted key index of an object and reject duplicate keys. */
static mdi_status index_keys(jparser *ps, cv_json *o)
{
    if (o->n == 0)
        return MDI_OK;
    o->index = malloc(o->n * sizeof *o->index);
    if (!o->index)
        return jfail(ps, MDI_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < o->n; i++)
        o->index[i] = (jkey){o->keys[i], o->klens[i], i};
    qsort(o->index, o->n, sizeof *o->index, jkey_cmp);
    for (size_t i = 1; i < o->n; i++) {
        if (jkey_cmp(&o->index[i - 1], &o->index[i]) == 0) {
            char msg[160];
            snprintf(msg, sizeof msg, "duplicate object key \"%.100s\"", o->index[i].key);
            return jfail(ps, MDI_ERR_FORMAT, msg);
        }
    }
    return MDI_OK;
}

static mdi_status parse_object(jparser *ps, cv_json *out)
{
    mdi_status s;
    out->type = CV_JSON_OBJECT;
    ps->p++;
    skip_ws(ps);
    if (ps->p < ps->end && *ps->p == '}') {
        ps->p++;
        return MDI_OK;
    }
    for (;;) {
        if (ps->p >= ps->end || *ps->p != '"')
            return jfail(ps, MDI_ERR_FORMAT, "expected a string key in object");
        if ((s = grow(ps, out, 1)) != MDI_OK)
            return s;
        size_t i = out->n;
        memset(&out->kids[i], 0, sizeof out->kids[0]);
        out->keys[i] = NULL;
        out->klens[i] = 0;
        out->n++; /* counted now so node_clear frees a partial member */
        if ((s = parse_string(ps, &out->keys[i], &out->klens[i])) != MDI_OK)
            return s;
        skip_ws(ps);
        if (ps->p >= ps->end || *ps->p != ':')
            return jfail(ps, MDI_ERR_FORMAT, "expected ':' after object key");
        ps->p++;
        if ((s = parse_value(ps, &out->kids[i])) != MDI_OK)
            return s;
        skip_ws(ps);
        if (ps->p < ps->end && *ps->p == ',') {
            ps->p++;
            skip_ws(ps);
            continue;
        }
        if (ps->p < ps->end && *ps->p == '}') {
            ps->p++;
            return index_keys(ps, out);
        }
        return jfail(ps, MDI_ERR_FORMAT, "expected ',' or '}' in object");
    }
}

/* Match the literal word at ps->p. */
static int match_word(jparser *ps, const char *w)
{
    size_t n = strlen(w);
    if ((size_t)(ps->end - ps->p) < n || memcmp(ps->p, w, n) != 0)
        return 0;
    ps->p += n;
    return 1;
}

static mdi_status parse_value(jparser *ps, cv_json *out)
{
    mdi_status s;
    skip_ws(ps);
    if (ps->p >= ps->end)
        return jfail(ps, MDI_ERR_FORMAT, "unexpected end of input, value expected");
    char c = *ps->p;
    if (c == '{' || c == '[') {
        if (ps->depth >= CV_JSON_MAX_DEPTH)
            return jfail(ps, MDI_ERR_RANGE, "nesting deeper than the limit of 64");
        ps->depth++;
        s = c == '{' ? parse_object(ps, out) : parse_array(ps, out);
        ps->depth--;
        return s;
    }
    if (c == '"') {
        out->type = CV_JSON_STRING;
        return parse_string(ps, &out->str, &out->slen);
    }
    if (c == '-' || (c >= '0' && c <= '9'))
        return parse_number(ps, out);
    if (match_word(ps, "true")) {
        out->type = CV_JSON_BOOL;
        out->boolean = 1;
        return MDI_OK;
    }
    if (match_word(ps, "false")) {
        out->type = CV_JSON_BOOL;
        return MDI_OK;
    }
    if (match_word(ps, "null")) {
        out->type = CV_JSON_NULL;
        return MDI_OK;
    }
    return jfail(ps, MDI_ERR_FORMAT, "unexpected character, value expected");
}

mdi_status cv_json_parse(const char *text, size_t len, const char *what, cv_json **out,
                         mdi_err *err)
{
    *out = NULL;
    jparser ps = {text, text, text + len, what ? what : "JSON", err, 0};
    cv_json *root = calloc(1, sizeof *root);
    if (!root)
        return mdi_errf(err, MDI_ERR_NOMEM, "%s: out of memory", ps.what);
    mdi_status s = parse_value(&ps, root);
    if (s == MDI_OK) {
        skip_ws(&ps);
        if (ps.p != ps.end)
            s = jfail(&ps, MDI_ERR_FORMAT, "trailing characters after the JSON value");
    }
    if (s != MDI_OK) {
        cv_json_free(root);
        return s;
    }
    *out = root;
    return MDI_OK;
}

mdi_status cv_json_parse_file(const char *path, size_t max_bytes, cv_json **out, mdi_err *err)
{
    *out = NULL;
    int fd = open(path, O_RDONLY | O_NONBLOCK); /* a FIFO is refused below, not waited on */
    if (fd < 0)
        return mdi_errf(err, MDI_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return mdi_errf(err, MDI_ERR_IO, "%s: not a regular file", path);
    }
    if ((uint64_t)st.st_size > max_bytes) {
        close(fd);
        return mdi_errf(err, MDI_ERR_RANGE, "%s: %lld bytes is larger than the limit of %zu", path,
                        (long long)st.st_size, max_bytes);
    }
    size_t size = (size_t)st.st_size, got = 0;
    char *buf = malloc(size + 1);
    if (!buf) {
        close(fd);
        return mdi_errf(err, MDI_ERR_NOMEM, "%s: out of memory for %zu bytes", path, size);
    }
    while (got < size) {
        ssize_t r = read(fd, buf + got, size - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            free(buf);
            close(fd);
            return mdi_errf(err, MDI_ERR_IO, "%s: read failed at byte %zu", path, got);
        }
        got += (size_t)r;
    }
    close(fd);
    mdi_status s = cv_json_parse(buf, size, path, out, err);
    free(buf);
    return s;
}

cv_json_type cv_json_type_of(const cv_json *j)
{
    return j ? j->type : CV_JSON_NULL;
}

const char *cv_json_type_name(cv_json_type t)
{
    static const char *const names[] = {"null", "bool", "number", "string", "array", "object"};
    return (unsigned)t < sizeof names / sizeof names[0] ? names[t] : "?";
}

size_t cv_json_count(const cv_json *j)
{
    return j && (j->type == CV_JSON_ARRAY || j->type == CV_JSON_OBJECT) ? j->n : 0;
}

const cv_json *cv_json_at(const cv_json *j, size_t i)
{
    return i < cv_json_count(j) ? &j->kids[i] : NULL;
}

const char *cv_json_key_at(const cv_json *j, size_t i)
{
    return j && j->type == CV_JSON_OBJECT && i < j->n ? j->keys[i] : NULL;
}

const cv_json *cv_json_get(const cv_json *j, const char *key)
{
    if (!j || j->type != CV_JSON_OBJECT || j->n == 0)
        return NULL;
    jkey want = {key, strlen(key), 0};
    const jkey *hit = bsearch(&want, j->index, j->n, sizeof *j->index, jkey_cmp);
    return hit ? &j->kids[hit->idx] : NULL;
}

int cv_json_as_int64(const cv_json *j, int64_t *out)
{
    if (!j || j->type != CV_JSON_NUMBER)
        return 0;
    if (j->is_int) {
        *out = j->ival;
        return 1;
    }
    /* 1e4 or 512.0: accept exact integers that doubles represent exactly. */
    if (j->num == floor(j->num) && fabs(j->num) <= 9007199254740992.0) {
        *out = (int64_t)j->num;
        return 1;
    }
    return 0;
}

int cv_json_as_double(const cv_json *j, double *out)
{
    if (!j || j->type != CV_JSON_NUMBER)
        return 0;
    *out = j->num;
    return 1;
}

int cv_json_as_bool(const cv_json *j, int *out)
{
    if (!j || j->type != CV_JSON_BOOL)
        return 0;
    *out = j->boolean;
    return 1;
}

const char *cv_json_as_string(const cv_json *j, size_t *len)
{
    if (!j || j->type != CV_JSON_STRING)
        return NULL;
    if (len)
        *len = j->slen;
    return j->str;
}

int cv_json_is_null(const cv_json *j)
{
    return j && j->type == CV_JSON_NULL;
}

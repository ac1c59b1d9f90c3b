/* A small strict JSON reader (RFC 8259) for config.json, safetensors headers
 * and model.safetensors.index.json.
 *
 * The whole document is parsed into a tree of cv_json nodes owned by the root.
 * Strict: no comments, no trailing commas, no leading zeros, no NaN/Infinity,
 * strings must be valid UTF-8 with no raw control characters, lone surrogates
 * are rejected, duplicate object keys are rejected, nesting depth is bounded. */
#ifndef MDI_CV_JSON_H
#define MDI_CV_JSON_H

#include <stddef.h>
#include <stdint.h>

#include "mdi/status.h"

/* Maximum nesting of arrays and objects. */
#define CV_JSON_MAX_DEPTH 64

typedef enum {
    CV_JSON_NULL = 0,
    CV_JSON_BOOL,
    CV_JSON_NUMBER,
    CV_JSON_STRING,
    CV_JSON_ARRAY,
    CV_JSON_OBJECT
} cv_json_type;

typedef struct cv_json cv_json;

/* Parse len bytes of text. `what` names the input in error messages
 * ("config.json: line 3 column 7: expected ':' after object key").
 * On success *out owns the tree (free with cv_json_free). */
mdi_status cv_json_parse(const char *text, size_t len, const char *what, cv_json **out,
                         mdi_err *err);

/* Read and parse a whole file of at most max_bytes bytes. */
mdi_status cv_json_parse_file(const char *path, size_t max_bytes, cv_json **out, mdi_err *err);

/* Free a tree returned by cv_json_parse; NULL is fine. */
void cv_json_free(cv_json *root);

cv_json_type cv_json_type_of(const cv_json *j);
/* Static name of a type ("object"), for messages. */
const char *cv_json_type_name(cv_json_type t);

/* Number of elements of an array or members of an object; 0 otherwise. */
size_t cv_json_count(const cv_json *j);
/* Element i of an array, or value of member i of an object (document order). */
const cv_json *cv_json_at(const cv_json *j, size_t i);
/* Key of member i of an object (NUL-terminated), or NULL. */
const char *cv_json_key_at(const cv_json *j, size_t i);
/* Value of member `key` of an object, or NULL when absent or j is not an object. */
const cv_json *cv_json_get(const cv_json *j, const char *key);

/* Typed accessors: return 1 and set *out when j has that type (and, for
 * int64, when the number is an exact integer in range), else 0. */
int cv_json_as_int64(const cv_json *j, int64_t *out);
int cv_json_as_double(const cv_json *j, double *out);
int cv_json_as_bool(const cv_json *j, int *out);
/* NUL-terminated string (may contain NULs from \u0000; *len, if given, is the full length). */
const char *cv_json_as_string(const cv_json *j, size_t *len);
int cv_json_is_null(const cv_json *j);

#endif /* MDI_CV_JSON_H */

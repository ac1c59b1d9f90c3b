/* Status codes and error messages shared by every mdi-llm module.
 *
 * Fallible functions return an mdi_status (0 = ok, negative = error) and put
 * a one-line human-readable detail into a caller-owned mdi_err. */
#ifndef MDI_STATUS_H
#define MDI_STATUS_H

#include <stddef.h>

/* X(name, value, short description). One list, so codes and strings cannot drift. */
#define MDI_STATUS_LIST(X)                         \
    X(MDI_OK, 0, "ok")                             \
    X(MDI_ERR_ARG, -1, "invalid argument")         \
    X(MDI_ERR_NOMEM, -2, "out of memory")          \
    X(MDI_ERR_IO, -3, "i/o error")                 \
    X(MDI_ERR_FORMAT, -4, "bad file format")       \
    X(MDI_ERR_UNSUPPORTED, -5, "unsupported")      \
    X(MDI_ERR_RANGE, -6, "value out of range")     \
    X(MDI_ERR_MISMATCH, -7, "inputs do not agree") \
    X(MDI_ERR_COMM, -8, "communication failure")   \
    X(MDI_ERR_TIMEOUT, -9, "timed out")            \
    X(MDI_ERR_INTERNAL, -10, "internal error")

typedef enum {
#define MDI_STATUS_ENUM(name, value, text) name = value,
    MDI_STATUS_LIST(MDI_STATUS_ENUM)
#undef MDI_STATUS_ENUM
} mdi_status;

#define MDI_ERR_MSG_MAX 512

/* Detail of the last failure: status plus one line of text. */
typedef struct mdi_err {
    mdi_status status;
    char msg[MDI_ERR_MSG_MAX];
} mdi_err;

/* Short fixed description of a status ("out of memory"). */
const char *mdi_status_str(mdi_status s);

/* Record status s and a printf-style message in err (err may be NULL); returns s. */
mdi_status mdi_errf(mdi_err *err, mdi_status s, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* Reset err to MDI_OK with an empty message. */
void mdi_err_clear(mdi_err *err);

#endif /* MDI_STATUS_H */

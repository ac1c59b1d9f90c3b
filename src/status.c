/* Status strings and error-message formatting. */
#include "mdi/status.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

const char *mdi_status_str(mdi_status s)
{
    switch (s) {
#define MDI_STATUS_CASE(name, value, text) \
    case name:                             \
        return text;
        MDI_STATUS_LIST(MDI_STATUS_CASE)
#undef MDI_STATUS_CASE
    }
    return "unknown status";
}

static int is_control(unsigned char c)
{
    return c < 0x20 || c == 0x7f;
}

/* Control bytes (a newline, an escape sequence from a file's tensor name) as \xHH,
 * so that a message stays one line and cannot drive the terminal. */
static void one_line(char *msg)
{
    const unsigned char *p = (const unsigned char *)msg;
    while (*p && !is_control(*p))
        p++;
    if (*p == '\0')
        return; /* the usual message: nothing to change */
    char out[MDI_ERR_MSG_MAX];
    size_t o = (size_t)((const char *)p - msg);
    memcpy(out, msg, o);
    for (; *p && o + 1 < sizeof out; p++) {
        if (!is_control(*p)) {
            out[o++] = (char)*p;
        } else if (o + 4 < sizeof out) {
            snprintf(out + o, 5, "\\x%02x", *p);
            o += 4;
        } else {
            break;
        }
    }
    out[o] = '\0';
    memcpy(msg, out, o + 1);
}

mdi_status mdi_errf(mdi_err *err, mdi_status s, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        err->status = s;
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        one_line(err->msg);
    }
    return s;
}

void mdi_err_clear(mdi_err *err)
{
    if (err) {
        err->status = MDI_OK;
        err->msg[0] = '\0';
    }
}

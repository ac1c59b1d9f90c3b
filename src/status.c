/* Status strings and error-message formatting. */
#include "mdi/status.h"

#include <stdarg.h>
#include <stdio.h>

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

mdi_status mdi_errf(mdi_err *err, mdi_status s, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        err->status = s;
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
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

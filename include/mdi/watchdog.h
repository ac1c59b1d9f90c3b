/* A deadline for start-up. Set-up (reading the prompts, the tokenizer and the
 * weights, the agreements between ranks) is made of blocking calls that no
 * --timeout covers: a prompt file that is a FIFO with no writer, a hung
 * network file system, a rank stopped by its host. A watchdog thread calls
 * fire() once if set-up has not ended (mdi_watchdog_stop) within the budget.
 * The thread makes no MPI call; what fire does (end the process) is the
 * caller's. Every function accepts a NULL watchdog and then does nothing. */
#ifndef MDI_WATCHDOG_H
#define MDI_WATCHDOG_H

#include "mdi/status.h"

typedef struct mdi_watchdog mdi_watchdog; /* opaque */

/* Called on the watchdog thread with one line: "WHO: did not finish
 * start-up within T s: it was STEP for S s" (WHO as last named, and then
 * only when not empty; STEP as last set; S the seconds spent in it), or
 * "... it was waiting for WHOM (after STEP) for S s". */
typedef void (*mdi_watchdog_fire_fn)(const char *line, void *ctx);

#define MDI_WATCHDOG_STEP_MAX 320
#define MDI_WATCHDOG_WHO_MAX 96

/* Start the clock: fire(line, ctx) runs once, unless mdi_watchdog_stop
 * comes first, when this rank's own work (every step that is not a wait)
 * adds up to timeout_s, or when one wait for the other ranks lasts
 * timeout_s + grace_s (so that the rank that is stuck, not the ones waiting
 * for it, speaks first). Time in a wait does not count as work.
 * timeout_s > 0, grace_s >= 0. */
mdi_status mdi_watchdog_start(double timeout_s, double grace_s, mdi_watchdog_fire_fn fire,
                              void *ctx, mdi_watchdog **out, mdi_err *err);

/* What this rank does now ("reading the prompt file p.txt"); printf-style,
 * cut to MDI_WATCHDOG_STEP_MAX bytes. */
void mdi_watchdog_step(mdi_watchdog *w, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* Who this process is ("rank 2 (host)"), or "" for none; cut to
 * MDI_WATCHDOG_WHO_MAX bytes. grace_s >= 0 replaces the grace of waits. */
void mdi_watchdog_name(mdi_watchdog *w, const char *who, double grace_s);

/* How far the current step has come ("1.20 of 6.80 GB loaded"), shown after
 * it; the step's time still counts from when it began. */
void mdi_watchdog_detail(mdi_watchdog *w, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* This rank now waits for the others (a collective after its own step). */
void mdi_watchdog_wait(mdi_watchdog *w);
/* The same, naming whom it waits for ("rank 3", "ranks 1 and 2"); called
 * again during one wait, it only renames them. */
void mdi_watchdog_wait_for(mdi_watchdog *w, const char *whom);
/* The wait is over: back to the step before it (its work time counts again). */
void mdi_watchdog_wait_end(mdi_watchdog *w);

/* Set-up is over: the thread ends without firing, and w is freed. */
void mdi_watchdog_stop(mdi_watchdog *w);

#endif /* MDI_WATCHDOG_H */

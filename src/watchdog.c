/* The start-up deadline: a thread that sleeps on a condition variable until
 * set-up ends or its time is up. Time is counted two ways: a rank's own work
 * (steps that are not waits) adds up against the limit across steps; a wait
 * for the other ranks is bounded on its own, by the limit plus the grace.
 * So a rank that waited for a late one does not blame its next step. */
#include "mdi/watchdog.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct mdi_watchdog {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    double timeout_s, grace_s;
    double worked;     /* seconds of work before the current stretch of it */
    double seg_start;  /* when the current stretch of work, or the wait, began */
    double step_start; /* when the current step began */
    int waiting;       /* the current step is a wait for the other ranks */
    int stopped;
    char step[MDI_WATCHDOG_STEP_MAX];
    char after[MDI_WATCHDOG_STEP_MAX]; /* the step before a wait */
    char who[MDI_WATCHDOG_WHO_MAX];
    char whom[MDI_WATCHDOG_WHO_MAX];   /* whom a wait is for */
    char detail[MDI_WATCHDOG_WHO_MAX]; /* how far the step has come, or "" */
    mdi_watchdog_fire_fn fire;
    void *ctx;
};

static double mono_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static struct timespec mono_at(double s)
{
    struct timespec t;
    t.tv_sec = (time_t)s;
    t.tv_nsec = (long)((s - (double)t.tv_sec) * 1e9);
    if (t.tv_nsec >= 1000000000L) {
        t.tv_sec++;
        t.tv_nsec -= 1000000000L;
    }
    return t;
}

/* Seconds as people write them: 3, 2.99, 0.0123, 0.000, 600, 3600. */
static void seconds(char *out, size_t cap, double s)
{
    if (s >= 100.0)
        snprintf(out, cap, "%.0f", s);
    else if (s >= 0.001)
        snprintf(out, cap, "%.3g", s);
    else
        snprintf(out, cap, "%.3f", s);
}

/* When the watchdog fires, as things stand (w->mu held). */
static double due_at(const mdi_watchdog *w)
{
    if (w->waiting)
        return w->seg_start + w->timeout_s + w->grace_s;
    return w->seg_start + (w->timeout_s - w->worked);
}

static void *watch(void *arg)
{
    mdi_watchdog *w = arg;
    char line[3 * MDI_WATCHDOG_WHO_MAX + MDI_WATCHDOG_STEP_MAX + 256];
    pthread_mutex_lock(&w->mu);
    for (;;) {
        if (w->stopped) {
            pthread_mutex_unlock(&w->mu);
            return NULL;
        }
        double now = mono_s(), due = due_at(w);
        if (now >= due)
            break;
        struct timespec at = mono_at(due);
        pthread_cond_timedwait(&w->cv, &w->mu, &at);
    }
    char limit[32], spent[32];
    seconds(limit, sizeof limit, w->timeout_s);
    seconds(spent, sizeof spent, mono_s() - w->step_start);
    const char *sep = w->who[0] ? ": " : "";
    if (w->waiting)
        snprintf(line, sizeof line,
                 "%s%sdid not finish start-up within %s s: it was waiting for %s (after %s) for "
                 "%s s",
                 w->who, sep, limit, w->whom, w->after, spent);
    else
        snprintf(line, sizeof line,
                 "%s%sdid not finish start-up within %s s: it was %s%s%s%s for %s s", w->who, sep,
                 limit, w->step, w->detail[0] ? " (" : "", w->detail, w->detail[0] ? ")" : "",
                 spent);
    pthread_mutex_unlock(&w->mu);
    w->fire(line, w->ctx);
    return NULL;
}

mdi_status mdi_watchdog_start(double timeout_s, double grace_s, mdi_watchdog_fire_fn fire,
                              void *ctx, mdi_watchdog **out, mdi_err *err)
{
    *out = NULL;
    if (!(timeout_s > 0.0) || !(grace_s >= 0.0) || !fire)
        return mdi_errf(err, MDI_ERR_ARG, "watchdog: timeout %g s, grace %g s", timeout_s, grace_s);
    mdi_watchdog *w = calloc(1, sizeof *w);
    if (!w)
        return mdi_errf(err, MDI_ERR_NOMEM, "cannot allocate the start-up watchdog");
    pthread_condattr_t ca;
    int rc = pthread_condattr_init(&ca);
    if (!rc) {
        rc = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        if (!rc)
            rc = pthread_cond_init(&w->cv, &ca);
        pthread_condattr_destroy(&ca);
    }
    if (rc) {
        free(w);
        return mdi_errf(err, MDI_ERR_INTERNAL, "watchdog: condition variable: %s", strerror(rc));
    }
    if ((rc = pthread_mutex_init(&w->mu, NULL))) {
        pthread_cond_destroy(&w->cv);
        free(w);
        return mdi_errf(err, MDI_ERR_INTERNAL, "watchdog: mutex: %s", strerror(rc));
    }
    w->seg_start = w->step_start = mono_s();
    w->timeout_s = timeout_s;
    w->grace_s = grace_s;
    w->fire = fire;
    w->ctx = ctx;
    snprintf(w->step, sizeof w->step, "starting");
    if ((rc = pthread_create(&w->thread, NULL, watch, w))) {
        pthread_mutex_destroy(&w->mu);
        pthread_cond_destroy(&w->cv);
        free(w);
        return mdi_errf(err, MDI_ERR_INTERNAL, "watchdog: cannot start its thread: %s",
                        strerror(rc));
    }
    *out = w;
    return MDI_OK;
}

void mdi_watchdog_step(mdi_watchdog *w, const char *fmt, ...)
{
    if (!w)
        return;
    va_list ap;
    va_start(ap, fmt);
    pthread_mutex_lock(&w->mu);
    vsnprintf(w->step, sizeof w->step, fmt, ap);
    w->detail[0] = '\0';
    double now = mono_s();
    if (w->waiting)
        w->seg_start = now;
    w->waiting = 0;
    w->step_start = now;
    pthread_cond_signal(&w->cv); /* the deadline may be earlier than after a wait */
    pthread_mutex_unlock(&w->mu);
    va_end(ap);
}

void mdi_watchdog_name(mdi_watchdog *w, const char *who, double grace_s)
{
    if (!w)
        return;
    pthread_mutex_lock(&w->mu);
    snprintf(w->who, sizeof w->who, "%s", who);
    if (grace_s >= 0.0)
        w->grace_s = grace_s;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

void mdi_watchdog_detail(mdi_watchdog *w, const char *fmt, ...)
{
    if (!w)
        return;
    va_list ap;
    va_start(ap, fmt);
    pthread_mutex_lock(&w->mu);
    vsnprintf(w->detail, sizeof w->detail, fmt, ap);
    pthread_mutex_unlock(&w->mu);
    va_end(ap);
}

void mdi_watchdog_wait_for(mdi_watchdog *w, const char *whom)
{
    if (!w)
        return;
    pthread_mutex_lock(&w->mu);
    if (!w->waiting) {
        double now = mono_s();
        memcpy(w->after, w->step, sizeof w->after);
        w->worked += now - w->seg_start;
        w->waiting = 1;
        w->seg_start = w->step_start = now;
        pthread_cond_signal(&w->cv); /* the deadline moved */
    }
    snprintf(w->whom, sizeof w->whom, "%s", whom ? whom : "the other ranks");
    pthread_mutex_unlock(&w->mu);
}

void mdi_watchdog_wait(mdi_watchdog *w)
{
    mdi_watchdog_wait_for(w, NULL);
}

void mdi_watchdog_wait_end(mdi_watchdog *w)
{
    if (!w)
        return;
    pthread_mutex_lock(&w->mu);
    if (w->waiting) {
        double now = mono_s();
        memcpy(w->step, w->after, sizeof w->step);
        w->waiting = 0;
        w->seg_start = w->step_start = now;
        pthread_cond_signal(&w->cv);
    }
    pthread_mutex_unlock(&w->mu);
}

void mdi_watchdog_stop(mdi_watchdog *w)
{
    if (!w)
        return;
    pthread_mutex_lock(&w->mu);
    w->stopped = 1;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->thread, NULL);
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv);
    free(w);
}

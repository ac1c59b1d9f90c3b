/* The start-up watchdog: it fires once, with the step it was in, when set-up
 * outlives its budget; it stays silent when stopped first; a wait for other
 * ranks gets the grace on top; bad arguments are refused. No assertion is
 * on how fast anything runs: every wait is bounded generously. */
#include "test_util.h"

#include <pthread.h>
#include <time.h>

#include "mdi/watchdog.h"

typedef struct fired {
    pthread_mutex_t mu;
    int count;
    double at; /* seconds after the start */
    char line[1024];
} fired;
#define FIRED_INIT                          \
    {                                       \
        PTHREAD_MUTEX_INITIALIZER, 0, 0, "" \
    }

static double mono_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static double t0;

static void on_fire(const char *line, void *ctx)
{
    fired *f = ctx;
    pthread_mutex_lock(&f->mu);
    f->count++;
    f->at = mono_s() - t0;
    snprintf(f->line, sizeof f->line, "%s", line);
    pthread_mutex_unlock(&f->mu);
}

static int count_of(fired *f)
{
    pthread_mutex_lock(&f->mu);
    int n = f->count;
    pthread_mutex_unlock(&f->mu);
    return n;
}

/* Wait up to limit_s for the watchdog to fire. */
static int wait_fire(fired *f, double limit_s)
{
    double end = mono_s() + limit_s;
    while (count_of(f) == 0 && mono_s() < end) {
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return count_of(f);
}

static void sleep_s(double s)
{
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    nanosleep(&ts, NULL);
}

/* Start a watchdog that records into f, the clock t0 reset. */
static mdi_watchdog *start(fired *f, double timeout_s, double grace_s)
{
    mdi_watchdog *w = NULL;
    mdi_err err;
    t0 = mono_s();
    if (mdi_watchdog_start(timeout_s, grace_s, on_fire, f, &w, &err) != MDI_OK)
        fail_msg("mdi_watchdog_start: %s", err.msg);
    return w;
}

static void test_fires_with_step(void **state)
{
    (void)state;
    fired f = FIRED_INIT;
    mdi_watchdog *w = start(&f, 0.2, 60.0);
    mdi_watchdog_step(w, "reading the prompt file %s", "p.txt");
    assert_int_equal(wait_fire(&f, 30.0), 1);
    assert_true(f.at >= 0.2);
    assert_true(strncmp(f.line, "did not finish start-up within 0.2 s", 36) == 0); /* no name */
    assert_non_null(strstr(f.line, "it was reading the prompt file p.txt for "));
    sleep_s(0.1);
    assert_int_equal(count_of(&f), 1); /* once */
    mdi_watchdog_stop(w);
    assert_int_equal(count_of(&f), 1);
}

static void test_stop_first(void **state)
{
    (void)state;
    fired f = FIRED_INIT;
    mdi_watchdog *w = start(&f, 30.0, 0.0);
    mdi_watchdog_step(w, "loading its weights");
    mdi_watchdog_stop(w); /* joins the thread: it can no longer fire */
    assert_int_equal(count_of(&f), 0);
}

/* A rank waiting for the others fires grace_s after a working rank would;
 * going back to work brings the earlier deadline back. */
static void test_wait_grace(void **state)
{
    (void)state;
    fired f = FIRED_INIT;
    mdi_watchdog *w = start(&f, 0.2, 0.6);
    mdi_watchdog_step(w, "placing the layers");
    mdi_watchdog_wait(w);
    mdi_watchdog_wait(w); /* a second wait keeps what came before it */
    assert_int_equal(wait_fire(&f, 30.0), 1);
    assert_true(f.at >= 0.8);
    assert_non_null(
        strstr(f.line, "it was waiting for the other ranks (after placing the layers)"));
    mdi_watchdog_stop(w);

    fired g = FIRED_INIT;
    w = start(&g, 0.3, 3600.0);
    mdi_watchdog_wait(w);
    sleep_s(0.05);
    mdi_watchdog_step(w, "loading its weights from %s", "m.h5");
    assert_int_equal(wait_fire(&g, 30.0), 1);
    assert_true(g.at >= 0.3);
    assert_non_null(strstr(g.line, "it was loading its weights from m.h5"));
    mdi_watchdog_stop(w);
}

/* A step's detail shows after it; a new step drops it. */
static void test_detail(void **state)
{
    (void)state;
    fired f = FIRED_INIT;
    mdi_watchdog *w = start(&f, 1.0, 0.0);
    mdi_watchdog_step(w, "allocating its layers");
    mdi_watchdog_detail(w, "stale");
    mdi_watchdog_step(w, "loading its weights from %s", "m.h5");
    mdi_watchdog_detail(w, "%.2f of %.2f GB read", 0.5, 2.0);
    mdi_watchdog_detail(w, "%.2f of %.2f GB read", 1.0, 2.0);
    assert_int_equal(wait_fire(&f, 30.0), 1);
    assert_non_null(
        strstr(f.line, "it was loading its weights from m.h5 (1.00 of 2.00 GB read) for "));
    assert_null(strstr(f.line, "stale"));
    mdi_watchdog_stop(w);
    mdi_watchdog_detail(NULL, "x");
}

/* Time in a wait is not work: a wait that ends after the limit (within its
 * grace) leaves the rank its remaining work budget, and the line then names
 * the step at work. mdi_watchdog_wait_end goes back to the step before. */
static void test_wait_is_not_work(void **state)
{
    (void)state;
    fired f = FIRED_INIT;
    mdi_watchdog *w = start(&f, 1.0, 3.0);
    mdi_watchdog_step(w, "starting MPI");
    mdi_watchdog_wait(w);
    sleep_s(1.5); /* past the limit, within the grace */
    mdi_watchdog_step(w, "loading its weights");
    sleep_s(0.3);
    assert_int_equal(count_of(&f), 0);
    assert_int_equal(wait_fire(&f, 30.0), 1);
    assert_true(f.at >= 2.4); /* about 1.5 s of wait + 1 s of work */
    assert_non_null(strstr(f.line, "it was loading its weights for "));
    mdi_watchdog_stop(w);

    fired g = FIRED_INIT;
    w = start(&g, 1.0, 3600.0);
    mdi_watchdog_step(w, "placing the layers");
    mdi_watchdog_wait_for(w, "rank 2");
    mdi_watchdog_wait_end(w);
    mdi_watchdog_wait_end(w); /* not waiting: nothing to end */
    assert_int_equal(wait_fire(&g, 30.0), 1);
    assert_non_null(strstr(g.line, "it was placing the layers for "));
    mdi_watchdog_stop(w);
    mdi_watchdog_wait_end(NULL);
}

/* The line starts with the last name given, "" for none. */
static void test_name(void **state)
{
    (void)state;
    fired f = FIRED_INIT;
    mdi_watchdog *w = start(&f, 1.0, 0.0);
    mdi_watchdog_name(w, "a rank (h)", -1.0);
    mdi_watchdog_name(w, "rank 3 (host-b)", -1.0);
    mdi_watchdog_step(w, "starting MPI");
    assert_int_equal(wait_fire(&f, 30.0), 1);
    assert_true(strncmp(f.line, "rank 3 (host-b): did not finish start-up within 1 s", 51) == 0);
    mdi_watchdog_stop(w);
    mdi_watchdog_name(NULL, "x", 1.0);
}

static void test_bad_arguments(void **state)
{
    (void)state;
    fired f = FIRED_INIT;
    mdi_watchdog *w = (mdi_watchdog *)&f;
    mdi_err err;
    assert_int_equal(mdi_watchdog_start(0.0, 1.0, on_fire, &f, &w, &err), MDI_ERR_ARG);
    assert_null(w);
    assert_int_equal(mdi_watchdog_start(-1.0, 1.0, on_fire, &f, &w, &err), MDI_ERR_ARG);
    assert_int_equal(mdi_watchdog_start(1.0, -1.0, on_fire, &f, &w, &err), MDI_ERR_ARG);
    assert_int_equal(mdi_watchdog_start(1.0, 1.0, NULL, &f, &w, &err), MDI_ERR_ARG);
    /* no watchdog: every call is a no-op */
    mdi_watchdog_step(NULL, "x %d", 1);
    mdi_watchdog_wait(NULL);
    mdi_watchdog_stop(NULL);
}

/* A step longer than the limit is cut, not overrun. */
static void test_long_step(void **state)
{
    (void)state;
    fired f = FIRED_INIT;
    char path[2000];
    memset(path, 'a', sizeof path - 1);
    path[sizeof path - 1] = '\0';
    mdi_watchdog *w = start(&f, 1.0, 0.0);
    mdi_watchdog_step(w, "reading %s", path);
    assert_int_equal(wait_fire(&f, 30.0), 1);
    assert_non_null(strstr(f.line, "it was reading aaaa"));
    assert_true(strlen(f.line) < MDI_WATCHDOG_STEP_MAX + 128);
    mdi_watchdog_stop(w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fires_with_step), cmocka_unit_test(test_stop_first),
        cmocka_unit_test(test_wait_grace),      cmocka_unit_test(test_bad_arguments),
        cmocka_unit_test(test_long_step),       cmocka_unit_test(test_name),
        cmocka_unit_test(test_detail),          cmocka_unit_test(test_wait_is_not_work),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

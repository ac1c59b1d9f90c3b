/* Ring transport over MPI: buffer pool, Isend/Irecv, timeouts, collectives. */
#include "mdi/ring.h"

#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define RING_TAG 7
#define RING_TAG_PING 8   /* rank 0 -> k: are you alive? (only after the ring went silent) */
#define RING_TAG_PONG 9   /* k -> rank 0: yes, and what I am waiting for */
#define RING_TAG_AGREE 10 /* k -> rank 0: my status at a set-up agreement */
#define RING_RECV_AHEAD 2
#define HDR_INTS 4
#define RING_HOST_MAX 64
#define RING_GRACE_MAX_S 5.0

typedef enum { BUF_FREE = 0, BUF_RECV, BUF_USER, BUF_SEND } buf_state;

struct mdi_ring {
    MPI_Comm comm;
    int rank, size, prev, next;
    size_t max_rows, dim, buf_bytes;
    double timeout_s;    /* --timeout: rank 0 checks every rank after this much silence */
    double wait_limit_s; /* rank 0: timeout_s; others wait longer (2 timeout_s + grace_s) */
    double grace_s;      /* rank 0: how long ranks get to answer that check */
    double wait_t0;      /* start of the current wait (0: not waiting) */
    int wait_on;         /* the rank that wait is for */
    int n_bufs;
    unsigned char **bufs; /* (n_bufs) each buf_bytes */
    buf_state *state;     /* (n_bufs) */
    MPI_Request *req;     /* (n_bufs) */
    int recv_fifo[RING_RECV_AHEAD];
    int recv_head, recv_count;
    char (*hosts)[RING_HOST_MAX]; /* (size) host names, for messages naming a silent stage */
    mdi_ring_stats stats;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Byte offset of the activations for a message of n rows (16-byte aligned). */
static size_t x_offset(size_t n_rows)
{
    return (HDR_INTS * sizeof(int32_t) + n_rows * sizeof(mdi_row) + 15) & ~(size_t)15;
}

static size_t msg_bytes(const mdi_ring *r, size_t n_rows)
{
    return x_offset(n_rows) + n_rows * r->dim * sizeof(float);
}

/* Point m's views at buffer b laid out for n_rows. */
static void bind_msg(mdi_ring *r, mdi_msg *m, int b, int32_t n_rows)
{
    m->buf = b;
    m->n_rows = n_rows;
    m->rows = (mdi_row *)(r->bufs[b] + HDR_INTS * sizeof(int32_t));
    m->x = (float *)(r->bufs[b] + x_offset((size_t)n_rows));
}

/* Wait politely: a few polls that yield the core, then sleeps that double from
 * 20 us to 1 ms, so oversubscribed ranks leave the core to the ones computing. */
static void backoff(long *spins)
{
    long n = ++*spins;
    if (n < 64) {
        sched_yield();
        return;
    }
    long us = 20L << ((n - 64) / 16 < 6 ? (n - 64) / 16 : 6);
    struct timespec ts = {0, (us > 1000 ? 1000 : us) * 1000};
    nanosleep(&ts, NULL);
}

/* What a rank reports when rank 0 checks on it. */
typedef struct ring_pong {
    double waited_s;    /* how long it has been waiting for a message (0: it is not) */
    int32_t waiting_on; /* the rank it waits for (-1: none) */
    int32_t pad;
} ring_pong;

/* Not rank 0: if rank 0 is checking which ranks are alive, say so and what we wait for. */
static void answer_check(mdi_ring *r)
{
    int flag = 0;
    int32_t token;
    if (r->rank == 0 ||
        MPI_Iprobe(0, RING_TAG_PING, r->comm, &flag, MPI_STATUS_IGNORE) != MPI_SUCCESS || !flag)
        return;
    ring_pong p = {r->wait_t0 > 0 ? now_s() - r->wait_t0 : 0.0, r->wait_t0 > 0 ? r->wait_on : -1,
                   0};
    if (MPI_Recv(&token, 1, MPI_INT32_T, 0, RING_TAG_PING, r->comm, MPI_STATUS_IGNORE) ==
        MPI_SUCCESS)
        MPI_Send(&p, (int)sizeof p, MPI_BYTE, 0, RING_TAG_PONG, r->comm);
}

/* Rank 0, after the ring went quiet (`what` says how): ask every other rank to
 * answer within grace_s, and put in err the rank(s) that did not, or else the
 * rank that has waited longest and the one it waits for. Always an error. */
static mdi_status diagnose(mdi_ring *r, const char *what, mdi_err *err)
{
    static const int32_t token = 1;
    int n = r->size;
    if (n == 1)
        return mdi_errf(err, MDI_ERR_TIMEOUT, "%s", what);
    ring_pong *pong = calloc((size_t)n, sizeof *pong);
    MPI_Request *req = calloc(2 * (size_t)n, sizeof *req); /* [0, n) answers, [n, 2n) checks */
    if (!pong || !req) {
        free(pong);
        free(req);
        return mdi_errf(err, MDI_ERR_TIMEOUT, "%s: the ring stopped", what);
    }
    int left = 0;
    for (int k = 0; k < 2 * n; k++)
        req[k] = MPI_REQUEST_NULL;
    for (int k = 1; k < n; k++)
        pong[k].waiting_on = -2; /* no answer (yet) */
    for (int k = 1; k < n; k++) {
        if (MPI_Irecv(&pong[k], (int)sizeof pong[k], MPI_BYTE, k, RING_TAG_PONG, r->comm,
                      &req[k]) == MPI_SUCCESS)
            left++;
        /* a check that cannot be sent simply goes unanswered */
        MPI_Isend(&token, 1, MPI_INT32_T, k, RING_TAG_PING, r->comm, &req[n + k]);
    }
    double t0 = now_s();
    long spins = 0;
    while (left > 0 && now_s() - t0 < r->grace_s) {
        for (int k = 1; k < n; k++) {
            int done = 0;
            if (req[k] != MPI_REQUEST_NULL &&
                MPI_Test(&req[k], &done, MPI_STATUS_IGNORE) == MPI_SUCCESS && done)
                left--;
        }
        backoff(&spins);
    }
    char who[256] = "";
    size_t len = 0;
    int silent = 0, longest = 0;
    pong[0].waited_s = now_s() - r->wait_t0;
    pong[0].waiting_on = r->wait_on;
    for (int k = 1; k < n; k++) {
        if (req[k] != MPI_REQUEST_NULL) { /* no answer: stop listening for it */
            MPI_Cancel(&req[k]);
            MPI_Wait(&req[k], MPI_STATUS_IGNORE);
            pong[k].waiting_on = -2;
        }
        if (req[n + k] != MPI_REQUEST_NULL)
            MPI_Request_free(&req[n + k]); /* a check nobody took; the job is ending */
        if (pong[k].waiting_on == -2 && silent++ < 4 && len < sizeof who)
            len += (size_t)snprintf(who + len, sizeof who - len, "%s%d (%s)", len ? ", " : "", k,
                                    r->hosts[k]);
        if (pong[k].waiting_on >= 0 && pong[k].waited_s > pong[longest].waited_s)
            longest = k;
    }
    mdi_status s;
    if (silent)
        s = mdi_errf(err, MDI_ERR_TIMEOUT,
                     "%s %s%s stopped answering: %s, and %s did not answer a check within %.1f s",
                     silent > 1 ? "ranks" : "rank", who, silent > 4 ? ", ..." : "", what,
                     silent > 1 ? "they" : "it", r->grace_s);
    else
        s = mdi_errf(err, MDI_ERR_TIMEOUT,
                     "%s; every rank answered a check, and rank %d (%s) has waited longest (%.3g "
                     "s) for rank %d (%s): that stage or the link to it is stuck",
                     what, longest, r->hosts[longest], pong[longest].waited_s,
                     pong[longest].waiting_on, r->hosts[pong[longest].waiting_on]);
    free(pong);
    free(req);
    return s;
}

/* Not rank 0: our wait (`what`, for neighbour `peer`) ran out. Rank 0 would
 * have ended the run long before if it were working, so it is rank 0 that
 * stopped answering (unless rank 0 is the neighbour, which says as much). */
static mdi_status worker_timeout(mdi_ring *r, int peer, const char *what, mdi_err *err)
{
    if (peer == 0)
        return mdi_errf(err, MDI_ERR_TIMEOUT, "%s: that stage stopped answering", what);
    return mdi_errf(err, MDI_ERR_TIMEOUT,
                    "rank 0 (%s) stopped answering: %s, and rank 0 did not end the run after "
                    "its own %.3g s timeout",
                    r->hosts[0], what, r->timeout_s);
}

/* Complete send requests that are done; if block, wait until at least one is. */
static mdi_status reap_sends(mdi_ring *r, int block, mdi_err *err)
{
    double t0 = now_s();
    long spins = 0;
    int own_wait = 0;
    for (;;) {
        int freed = 0, sending = 0;
        for (int b = 0; b < r->n_bufs; b++) {
            if (r->state[b] != BUF_SEND)
                continue;
            int done = 0;
            if (MPI_Test(&r->req[b], &done, MPI_STATUS_IGNORE) != MPI_SUCCESS)
                return mdi_errf(err, MDI_ERR_COMM, "send to rank %d failed", r->next);
            if (done) {
                r->state[b] = BUF_FREE;
                freed++;
            } else {
                sending++;
            }
        }
        if (!block || freed || !sending)
            break;
        if (!r->wait_t0) { /* not already inside a wait for a message */
            r->wait_t0 = t0;
            r->wait_on = r->next;
            own_wait = 1;
        }
        if (now_s() - t0 > r->wait_limit_s) {
            char what[160];
            snprintf(what, sizeof what, "rank %d (%s) did not take a message within %.3g s",
                     r->next, r->hosts[r->next], r->wait_limit_s);
            return r->rank == 0 ? diagnose(r, what, err) : worker_timeout(r, r->next, what, err);
        }
        answer_check(r);
        backoff(&spins);
    }
    if (own_wait)
        r->wait_t0 = 0.0;
    r->stats.wait_s += now_s() - t0;
    return MDI_OK;
}

static int find_free(const mdi_ring *r)
{
    for (int b = 0; b < r->n_bufs; b++)
        if (r->state[b] == BUF_FREE)
            return b;
    return -1;
}

/* A free buffer, waiting for sends to finish if need be. */
static mdi_status take_free(mdi_ring *r, int *out, mdi_err *err)
{
    mdi_status s;
    int b = find_free(r);
    while (b < 0) {
        if ((s = reap_sends(r, 1, err)))
            return s;
        b = find_free(r);
        if (b < 0 && !r->stats.msgs_sent && !r->recv_count)
            return mdi_errf(err, MDI_ERR_INTERNAL, "ring buffer pool exhausted");
    }
    *out = b;
    return MDI_OK;
}

static mdi_status post_recv(mdi_ring *r, mdi_err *err)
{
    int b;
    mdi_status s = take_free(r, &b, err);
    if (s)
        return s;
    if (MPI_Irecv(r->bufs[b], (int)r->buf_bytes, MPI_BYTE, r->prev, RING_TAG, r->comm,
                  &r->req[b]) != MPI_SUCCESS)
        return mdi_errf(err, MDI_ERR_COMM, "posting a receive from rank %d failed", r->prev);
    r->state[b] = BUF_RECV;
    r->recv_fifo[(r->recv_head + r->recv_count) % RING_RECV_AHEAD] = b;
    r->recv_count++;
    return MDI_OK;
}

/* Collective: every rank's host name, to name a stage that goes silent. */
static mdi_status learn_hosts(mdi_ring *r, mdi_err *err)
{
    char me[RING_HOST_MAX] = {0};
    if (!(r->hosts = calloc((size_t)r->size, sizeof *r->hosts)))
        return mdi_errf(err, MDI_ERR_NOMEM, "cannot allocate the host table");
    gethostname(me, sizeof me - 1);
    mdi_status s = mdi_ring_allgather(r->comm, me, sizeof me, r->hosts, err);
    for (int k = 0; k < r->size; k++)
        r->hosts[k][RING_HOST_MAX - 1] = '\0';
    return s;
}

mdi_status mdi_ring_create(MPI_Comm comm, size_t max_rows, size_t dim, int n_bufs, double timeout_s,
                           mdi_ring **out, mdi_err *err)
{
    mdi_ring *r = calloc(1, sizeof *r);
    if (!r)
        return mdi_errf(err, MDI_ERR_NOMEM, "cannot allocate the ring");
    r->comm = comm;
    MPI_Comm_rank(comm, &r->rank);
    MPI_Comm_size(comm, &r->size);
    r->prev = (r->rank + r->size - 1) % r->size;
    r->next = (r->rank + 1) % r->size;
    r->max_rows = max_rows;
    r->dim = dim;
    /* Rank 0 notices a silent ring first and names the stage that stopped; the
     * others wait longer, so they speak only when rank 0 itself is the one. */
    r->grace_s = timeout_s / 2 < 0.5 ? 0.5 : timeout_s / 2;
    r->grace_s = r->grace_s > RING_GRACE_MAX_S ? RING_GRACE_MAX_S : r->grace_s;
    r->timeout_s = timeout_s;
    r->wait_limit_s = r->rank == 0 ? timeout_s : 2 * timeout_s + r->grace_s;
    r->n_bufs = n_bufs < RING_RECV_AHEAD + 2 ? RING_RECV_AHEAD + 2 : n_bufs;
    r->buf_bytes = msg_bytes(r, max_rows);
    /* the collective first, before any step that could fail on one rank only */
    mdi_status s = learn_hosts(r, err);
    if (s)
        goto fail;
    if (max_rows == 0 || dim == 0 || r->buf_bytes > (size_t)INT_MAX) {
        s = mdi_errf(err, MDI_ERR_RANGE, "a message of %zu rows x %zu floats is too large for MPI",
                     max_rows, dim);
        goto fail;
    }
    r->bufs = calloc((size_t)r->n_bufs, sizeof *r->bufs);
    r->state = calloc((size_t)r->n_bufs, sizeof *r->state);
    r->req = calloc((size_t)r->n_bufs, sizeof *r->req);
    if (!r->bufs || !r->state || !r->req) {
        s = mdi_errf(err, MDI_ERR_NOMEM, "cannot allocate the ring's buffer table");
        goto fail;
    }
    for (int b = 0; b < r->n_bufs; b++) {
        r->req[b] = MPI_REQUEST_NULL;
        if (!(r->bufs[b] = aligned_alloc(64, (r->buf_bytes + 63) & ~(size_t)63))) {
            s = mdi_errf(err, MDI_ERR_NOMEM, "cannot allocate %d message buffers of %zu bytes",
                         r->n_bufs, r->buf_bytes);
            goto fail;
        }
    }
    for (int i = 0; i < RING_RECV_AHEAD; i++)
        if ((s = post_recv(r, err)))
            goto fail;
    *out = r;
    return MDI_OK;
fail:
    mdi_ring_free(r);
    return s;
}

void mdi_ring_free(mdi_ring *r)
{
    if (!r)
        return;
    for (int b = 0; r->state && b < r->n_bufs; b++) {
        if (r->state[b] == BUF_RECV) {
            MPI_Cancel(&r->req[b]);
            MPI_Wait(&r->req[b], MPI_STATUS_IGNORE);
        } else if (r->state[b] == BUF_SEND) {
            MPI_Wait(&r->req[b], MPI_STATUS_IGNORE);
        }
    }
    for (int b = 0; r->bufs && b < r->n_bufs; b++)
        free(r->bufs[b]);
    free(r->bufs);
    free(r->state);
    free(r->req);
    free(r->hosts);
    free(r);
}

int mdi_ring_rank(const mdi_ring *r)
{
    return r->rank;
}

int mdi_ring_size(const mdi_ring *r)
{
    return r->size;
}

const mdi_ring_stats *mdi_ring_get_stats(const mdi_ring *r)
{
    return &r->stats;
}

mdi_status mdi_ring_acquire(mdi_ring *r, mdi_msg *m, mdi_err *err)
{
    int b;
    mdi_status s = reap_sends(r, 0, err);
    if (s || (s = take_free(r, &b, err)))
        return s;
    r->state[b] = BUF_USER;
    memset(m, 0, sizeof *m);
    bind_msg(r, m, b, 0);
    return MDI_OK;
}

mdi_status mdi_ring_send(mdi_ring *r, mdi_msg *m, mdi_err *err)
{
    int b = m->buf;
    if (m->n_rows < 0 || (size_t)m->n_rows > r->max_rows)
        return mdi_errf(err, MDI_ERR_INTERNAL, "message of %d rows exceeds %zu", m->n_rows,
                        r->max_rows);
    int32_t *hdr = (int32_t *)r->bufs[b];
    hdr[0] = m->kind;
    hdr[1] = m->group;
    hdr[2] = m->n_rows;
    hdr[3] = m->n_stream;
    size_t bytes = msg_bytes(r, (size_t)m->n_rows);
    if (MPI_Isend(r->bufs[b], (int)bytes, MPI_BYTE, r->next, RING_TAG, r->comm, &r->req[b]) !=
        MPI_SUCCESS)
        return mdi_errf(err, MDI_ERR_COMM, "sending to rank %d failed", r->next);
    r->state[b] = BUF_SEND;
    r->stats.bytes_sent += bytes;
    r->stats.msgs_sent++;
    if (m->n_rows > 0 && m->n_stream == m->n_rows) {
        r->stats.decode_rows_sent += (uint64_t)m->n_rows;
        r->stats.decode_bytes_sent += bytes;
    }
    return MDI_OK;
}

mdi_status mdi_ring_recv(mdi_ring *r, mdi_msg *m, mdi_err *err)
{
    int b = r->recv_fifo[r->recv_head];
    MPI_Status st;
    double t0 = now_s();
    long spins = 0;
    r->wait_t0 = t0;
    r->wait_on = r->prev;
    for (;;) {
        int done = 0;
        if (MPI_Test(&r->req[b], &done, &st) != MPI_SUCCESS)
            return mdi_errf(err, MDI_ERR_COMM, "receive from rank %d failed", r->prev);
        if (done)
            break;
        reap_sends(r, 0, err);
        if (now_s() - t0 > r->wait_limit_s) {
            char what[160];
            if (r->rank == 0)
                snprintf(what, sizeof what, "no message came back round the ring for %.3g s",
                         r->wait_limit_s);
            else
                snprintf(what, sizeof what, "no message from rank %d (%s) for %.3g s", r->prev,
                         r->hosts[r->prev], r->wait_limit_s);
            return r->rank == 0 ? diagnose(r, what, err) : worker_timeout(r, r->prev, what, err);
        }
        answer_check(r);
        backoff(&spins);
    }
    r->wait_t0 = 0.0;
    r->stats.wait_s += now_s() - t0;
    r->recv_head = (r->recv_head + 1) % RING_RECV_AHEAD;
    r->recv_count--;
    r->state[b] = BUF_USER;
    int count = 0;
    MPI_Get_count(&st, MPI_BYTE, &count);
    const int32_t *hdr = (const int32_t *)r->bufs[b];
    if (count < (int)(HDR_INTS * sizeof(int32_t)) || hdr[2] < 0 || (size_t)hdr[2] > r->max_rows ||
        (size_t)count != msg_bytes(r, (size_t)hdr[2]) || hdr[3] < 0 || hdr[3] > hdr[2])
        return mdi_errf(err, MDI_ERR_COMM, "malformed message of %d bytes from rank %d", count,
                        r->prev);
    memset(m, 0, sizeof *m);
    bind_msg(r, m, b, hdr[2]);
    m->kind = hdr[0];
    m->group = hdr[1];
    m->n_stream = hdr[3];
    r->stats.bytes_recv += (uint64_t)count;
    r->stats.msgs_recv++;
    return post_recv(r, err);
}

void mdi_ring_release(mdi_ring *r, mdi_msg *m)
{
    r->state[m->buf] = BUF_FREE;
}

/* Set how many rows m carries (fixes where its activations start). */
void mdi_ring_msg_layout(mdi_ring *r, mdi_msg *m, int32_t n_rows)
{
    bind_msg(r, m, m->buf, n_rows);
}

/* ---- collectives ---- */

typedef struct agree_rec {
    int32_t status;
    char host[64];
    char msg[MDI_ERR_MSG_MAX - 96];
} agree_rec;

/* Name the ranks rank 0 still waits for to wd: "rank 3", "ranks 1, 2 and
 * 3", "ranks 1, 2, 3, 4 and 60 more". */
static void name_missing(mdi_watchdog *wd, const int *arrived, int size)
{
    char text[160];
    int len = 0, listed = 0, missing = 0;
    for (int r = 1; r < size; r++)
        missing += !arrived[r];
    len = snprintf(text, sizeof text, "rank%s", missing == 1 ? "" : "s");
    for (int r = 1; r < size && listed < 4; r++) {
        if (arrived[r])
            continue;
        listed++;
        const char *sep = listed == 1 ? " " : listed == missing && missing <= 4 ? " and " : ", ";
        len += snprintf(text + len, sizeof text - (size_t)len, "%s%d", sep, r);
    }
    if (missing > listed)
        snprintf(text + len, sizeof text - (size_t)len, " and %d more", missing - listed);
    mdi_watchdog_wait_for(wd, text);
}

/* Rank 0: receive every other rank's record into all[1..size), naming the
 * ranks not yet heard from to wd whenever that set changes. */
static mdi_status gather_records(MPI_Comm comm, int size, agree_rec *all, mdi_watchdog *wd)
{
    MPI_Request *req = malloc((size_t)(size - 1) * sizeof *req);
    int *arrived = calloc((size_t)size, sizeof *arrived),
        *done = malloc((size_t)size * sizeof *done);
    mdi_status s = req && arrived && done ? MDI_OK : MDI_ERR_NOMEM;
    int posted = 0;
    for (int r = 1; !s && r < size; r++, posted++)
        if (MPI_Irecv(&all[r], (int)sizeof all[r], MPI_BYTE, r, RING_TAG_AGREE, comm,
                      &req[r - 1]) != MPI_SUCCESS)
            s = MDI_ERR_COMM;
    int left = posted;
    long spins = 0;
    if (!s)
        name_missing(wd, arrived, size);
    while (!s && left > 0) {
        int n = 0;
        if (MPI_Testsome(posted, req, &n, done, MPI_STATUSES_IGNORE) != MPI_SUCCESS)
            s = MDI_ERR_COMM; /* under MPI's default handler this never returns */
        else if (n > 0 && n != MPI_UNDEFINED) {
            for (int i = 0; i < n; i++)
                arrived[done[i] + 1] = 1;
            left -= n;
            spins = 0;
            if (left > 0)
                name_missing(wd, arrived, size);
        } else {
            backoff(&spins);
        }
    }
    for (int i = 0; s && i < posted; i++) /* after an error: no receive left posted */
        if (req[i] != MPI_REQUEST_NULL) {
            MPI_Cancel(&req[i]);
            MPI_Wait(&req[i], MPI_STATUS_IGNORE);
        }
    free(req);
    free(arrived);
    free(done);
    return s;
}

/* The verdict rank 0 sends: the first failing rank and its record (-1: none). */
typedef struct agree_verdict {
    int32_t rank;
    agree_rec rec;
} agree_verdict;

mdi_status mdi_ring_agree(MPI_Comm comm, mdi_status local, const mdi_err *local_err,
                          mdi_watchdog *wd, mdi_err *err)
{
    int size, rank;
    MPI_Comm_size(comm, &size);
    MPI_Comm_rank(comm, &rank);
    agree_rec me;
    agree_verdict v;
    memset(&me, 0, sizeof me);
    memset(&v, 0, sizeof v);
    me.status = local;
    gethostname(me.host, sizeof me.host - 1);
    if (local != MDI_OK && local_err) {
        memcpy(me.msg, local_err->msg, sizeof me.msg - 1);
        me.msg[sizeof me.msg - 1] = '\0';
    }
    /* Every other rank sends its record to rank 0, which knows who is late,
     * and broadcasts the verdict. */
    v.rank = local != MDI_OK ? 0 : -1;
    v.rec = me;
    mdi_watchdog_wait(wd);
    if (size > 1 && rank == 0) {
        agree_rec *all = calloc((size_t)size, sizeof *all);
        mdi_status gs = all ? gather_records(comm, size, all, wd) : MDI_ERR_NOMEM;
        if (gs) { /* every rank must still join the broadcast: rank 0 fails alone */
            v.rank = 0;
            v.rec.status = gs;
            snprintf(v.rec.msg, sizeof v.rec.msg, "%s",
                     gs == MDI_ERR_NOMEM ? "cannot allocate the agreement table"
                                         : "ranks could not exchange their status");
        }
        for (int r = 1; !gs && v.rank < 0 && r < size; r++)
            if (all[r].status != MDI_OK) {
                v.rank = r;
                v.rec = all[r];
            }
        free(all);
    } else if (size > 1) { /* a failed send still joins the broadcast */
        mdi_watchdog_wait_for(wd, "rank 0");
        MPI_Send(&me, (int)sizeof me, MPI_BYTE, 0, RING_TAG_AGREE, comm);
    }
    int bc = size > 1 ? MPI_Bcast(&v, (int)sizeof v, MPI_BYTE, 0, comm) : MPI_SUCCESS;
    mdi_watchdog_wait_end(wd);
    if (bc != MPI_SUCCESS)
        return mdi_errf(err, MDI_ERR_COMM, "ranks could not exchange their status");
    if (v.rank < 0)
        return MDI_OK;
    v.rec.msg[sizeof v.rec.msg - 1] = '\0';
    v.rec.host[sizeof v.rec.host - 1] = '\0';
    if (size > 1)
        return mdi_errf(err, (mdi_status)v.rec.status, "rank %d (%s): %s", (int)v.rank, v.rec.host,
                        v.rec.msg);
    return mdi_errf(err, (mdi_status)v.rec.status, "%s", v.rec.msg);
}

mdi_status mdi_ring_allgather(MPI_Comm comm, const void *in, size_t bytes, void *out, mdi_err *err)
{
    if (bytes > (size_t)INT_MAX ||
        MPI_Allgather(in, (int)bytes, MPI_BYTE, out, (int)bytes, MPI_BYTE, comm) != MPI_SUCCESS)
        return mdi_errf(err, MDI_ERR_COMM, "allgather of %zu bytes failed", bytes);
    return MDI_OK;
}

mdi_status mdi_ring_bcast(MPI_Comm comm, void *buf, size_t bytes, int root, mdi_err *err)
{
    if (bytes > (size_t)INT_MAX || MPI_Bcast(buf, (int)bytes, MPI_BYTE, root, comm) != MPI_SUCCESS)
        return mdi_errf(err, MDI_ERR_COMM, "broadcast of %zu bytes failed", bytes);
    return MDI_OK;
}

int mdi_ring_local_size(MPI_Comm comm)
{
    MPI_Comm local;
    int n = 1;
    if (MPI_Comm_split_type(comm, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &local) != MPI_SUCCESS)
        return 1;
    MPI_Comm_size(local, &n);
    MPI_Comm_free(&local);
    return n;
}

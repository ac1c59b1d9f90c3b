/* The logical ring of ranks: message layout, a fixed buffer pool, non-blocking
 * sends to the next rank and pre-posted receives from the previous one, plus
 * the few collectives used to agree before and after the run.
 * The only code that calls MPI point-to-point. All calls are on the ring's
 * communicator, never MPI_COMM_WORLD. */
#ifndef MDI_RING_H
#define MDI_RING_H

#include <mpi.h>
#include <stddef.h>
#include <stdint.h>

#include "mdi/stage.h"
#include "mdi/status.h"
#include "mdi/watchdog.h"

typedef enum { MDI_MSG_WORK = 1, MDI_MSG_STOP = 2 } mdi_msg_kind;

/* A message: header, per-row (slot, pos), then n_rows x dim floats.
 * Views into a pool buffer; valid until released/sent. */
typedef struct mdi_msg {
    int32_t kind;
    int32_t group; /* sample group id */
    int32_t n_rows;
    int32_t n_stream; /* rows [0, n_stream) are generated tokens (see mdi_stage_forward_mixed) */
    int32_t buf;      /* pool index (internal) */
    mdi_row *rows;    /* (max_rows) */
    float *x;         /* (max_rows, dim) */
} mdi_msg;

typedef struct mdi_ring_stats {
    double wait_s; /* time blocked waiting for a message or a free buffer */
    uint64_t bytes_sent;
    uint64_t bytes_recv;
    uint64_t msgs_sent;
    uint64_t msgs_recv;
    uint64_t decode_rows_sent;  /* rows of messages that held only generated tokens */
    uint64_t decode_bytes_sent; /* bytes of those messages, header included */
} mdi_ring_stats;

typedef struct mdi_ring mdi_ring; /* opaque */

/* Collective over comm. n_bufs >= 3 buffers of max_rows x dim; posts one receive.
 * timeout_s: after that long without a message, rank 0 checks which ranks
 * still answer (within min(max(timeout_s / 2, 0.5), 5) s) and fails naming the
 * stage that stopped; the other ranks wait 2 x timeout_s + that grace, so they
 * fail first only when rank 0 itself has stopped, and then they name it. */
mdi_status mdi_ring_create(MPI_Comm comm, size_t max_rows, size_t dim, int n_bufs, double timeout_s,
                           mdi_ring **out, mdi_err *err);
/* Waits for outstanding sends, cancels the posted receive, frees. */
void mdi_ring_free(mdi_ring *r);

int mdi_ring_rank(const mdi_ring *r);
int mdi_ring_size(const mdi_ring *r);

/* Take a free buffer to fill and send (waits for an older send if all are busy). */
mdi_status mdi_ring_acquire(mdi_ring *r, mdi_msg *m, mdi_err *err);
/* Fix how many rows m carries; call before writing m->rows and m->x. */
void mdi_ring_msg_layout(mdi_ring *r, mdi_msg *m, int32_t n_rows);
/* Send m to the next rank (non-blocking); the buffer returns to the pool when done. */
mdi_status mdi_ring_send(mdi_ring *r, mdi_msg *m, mdi_err *err);
/* Wait (up to the timeout) for the next message from the previous rank, and
 * post the following receive. The message's buffer is the caller's until it
 * is sent or released. While waiting, ranks other than 0 answer rank 0's
 * liveness checks. MDI_ERR_TIMEOUT names the rank that stopped answering. */
mdi_status mdi_ring_recv(mdi_ring *r, mdi_msg *m, mdi_err *err);
/* Give a received buffer back without sending it. */
void mdi_ring_release(mdi_ring *r, mdi_msg *m);

const mdi_ring_stats *mdi_ring_get_stats(const mdi_ring *r);

/* ---- collectives ---- */

/* Every rank passes its local status and message; all return the same
 * verdict: MDI_OK, or the first failing rank's status with its message
 * (prefixed with that rank and host when the ring has several ranks).
 * The wait is marked on wd (may be NULL): rank 0, which gathers the
 * statuses, names the ranks it has not heard from; the others wait for
 * rank 0. */
mdi_status mdi_ring_agree(MPI_Comm comm, mdi_status local, const mdi_err *local_err,
                          mdi_watchdog *wd, mdi_err *err);
/* Every rank's `bytes` bytes of `in` land in out (size x bytes), on all ranks. */
mdi_status mdi_ring_allgather(MPI_Comm comm, const void *in, size_t bytes, void *out, mdi_err *err);
/* Broadcast bytes from root. */
mdi_status mdi_ring_bcast(MPI_Comm comm, void *buf, size_t bytes, int root, mdi_err *err);

/* Number of ranks of comm on this host (shared-memory node). */
int mdi_ring_local_size(MPI_Comm comm);

#endif /* MDI_RING_H */

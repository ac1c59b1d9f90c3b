/* netdelay: hold every packet of one NFQUEUE for a fixed time, then accept it.
 * Latency shaping for kernels without sch_netem (jobs/cluster.sh runs one per
 * emulated host, fed by an nft rule on the host's ingress). Packets leave in the
 * order they came: the delay is constant, so one batch verdict releases all the
 * packets that are due.
 *
 *   netdelay --queue NUM --delay-us US [--lifetime S] [--watch PATH]
 *
 * Stops on SIGTERM/SIGINT, after --lifetime seconds (default 86400), or once
 * PATH no longer exists (checked every second). Needs CAP_NET_ADMIN in the
 * network namespace it serves. Build (Debian: libnetfilter-queue-dev):
 *   gcc -O2 -std=c11 -o netdelay netdelay.c -lnetfilter_queue -lnfnetlink
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <libnetfilter_queue/libnetfilter_queue.h>
#include <linux/netfilter.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define RING_CAP 16384u /* packets held at once; also the kernel queue's length */
#define RCVBUF_BYTES (8 << 20)

typedef struct held {
    uint32_t id;
    int64_t due_ns;
} held;

/* The whole daemon: options, the netlink queue and the packets it holds. */
typedef struct netdelay {
    unsigned queue_num;
    int64_t delay_ns, lifetime_ns;
    const char *watch;
    struct nfq_handle *h;
    struct nfq_q_handle *qh;
    held ring[RING_CAP];
    uint32_t head, count;
    uint64_t n_held, n_overflow, n_enobufs;
    uint32_t max_depth;
} netdelay;

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Queue callback: remember the packet and when it is due. */
static int on_packet(struct nfq_q_handle *qh, struct nfgenmsg *msg, struct nfq_data *nfa,
                     void *data)
{
    (void)msg;
    netdelay *d = data;
    struct nfqnl_msg_packet_hdr *ph = nfq_get_msg_packet_hdr(nfa);
    if (!ph)
        return 0;
    uint32_t id = ntohl(ph->packet_id);
    if (d->count ==
        RING_CAP) { /* cannot happen with maxlen == RING_CAP; never hold a packet forever */
        d->n_overflow++;
        return nfq_set_verdict(qh, id, NF_ACCEPT, 0, NULL) < 0 ? -1 : 0;
    }
    d->ring[(d->head + d->count) % RING_CAP] = (held){id, now_ns() + d->delay_ns};
    d->count++;
    d->n_held++;
    if (d->count > d->max_depth)
        d->max_depth = d->count;
    return 0;
}

/* Accept every held packet that is due, with one batch verdict. */
static int release_due(netdelay *d, int64_t now)
{
    uint32_t last = 0;
    int any = 0;
    while (d->count && d->ring[d->head].due_ns <= now) {
        last = d->ring[d->head].id;
        d->head = (d->head + 1) % RING_CAP;
        d->count--;
        any = 1;
    }
    if (any && nfq_set_verdict_batch(d->qh, last, NF_ACCEPT) < 0) {
        perror("netdelay: verdict");
        return -1;
    }
    return 0;
}

/* Read every pending queue message without blocking. */
static int drain_socket(netdelay *d, int fd)
{
    char buf[65536] __attribute__((aligned(8)));
    for (;;) {
        ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
        if (n > 0) {
            nfq_handle_packet(d->h, buf, (int)n);
            continue;
        }
        if (n < 0 && errno == ENOBUFS) { /* messages lost: their packets wait for the queue to go */
            d->n_enobufs++;
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
            return 0;
        perror("netdelay: recv");
        return -1;
    }
}

static int open_queue(netdelay *d)
{
    if (!(d->h = nfq_open())) {
        perror("netdelay: nfq_open");
        return -1;
    }
    if (!(d->qh = nfq_create_queue(d->h, (uint16_t)d->queue_num, on_packet, d))) {
        fprintf(stderr, "netdelay: cannot bind queue %u (taken, or no CAP_NET_ADMIN)\n",
                d->queue_num);
        return -1;
    }
    if (nfq_set_mode(d->qh, NFQNL_COPY_META, 0) < 0 || nfq_set_queue_maxlen(d->qh, RING_CAP) < 0) {
        perror("netdelay: queue config");
        return -1;
    }
    nfq_set_queue_flags(d->qh, NFQA_CFG_F_GSO, NFQA_CFG_F_GSO); /* no payload access: keep GSO */
    nfnl_rcvbufsiz(nfq_nfnlh(d->h), RCVBUF_BYTES);
    return 0;
}

/* Poll the queue and the signals until told to stop; return the exit status. */
static int run(netdelay *d, int sfd)
{
    int fd = nfq_fd(d->h);
    int64_t t_end = now_ns() + d->lifetime_ns, t_watch = 0;
    for (;;) {
        int64_t now = now_ns();
        if (release_due(d, now))
            return 1;
        if (now >= t_end)
            return 0;
        if (d->watch && now >= t_watch) {
            struct stat st;
            if (stat(d->watch, &st) != 0)
                return 0;
            t_watch = now + 1000000000;
        }
        int64_t wait = t_watch - now;
        if (d->count && d->ring[d->head].due_ns - now < wait)
            wait = d->ring[d->head].due_ns - now;
        if (!d->watch && wait > 1000000000)
            wait = 1000000000;
        if (wait < 0)
            wait = 0;
        struct timespec ts = {(time_t)(wait / 1000000000), (long)(wait % 1000000000)};
        struct pollfd p[2] = {{fd, POLLIN, 0}, {sfd, POLLIN, 0}};
        int r = ppoll(p, 2, &ts, NULL);
        if (r < 0 && errno != EINTR) {
            perror("netdelay: ppoll");
            return 1;
        }
        if (r > 0 && p[1].revents)
            return 0;
        if (r > 0 && p[0].revents && drain_socket(d, fd))
            return 1;
    }
}

static int parse_args(int argc, char **argv, netdelay *d)
{
    int have_q = 0, have_d = 0;
    for (int i = 1; i < argc; i++) {
        char *end = NULL;
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v)
            return -1;
        long long x = strtoll(v, &end, 10);
        int num_ok = *v && !*end && x >= 0;
        if (!strcmp(argv[i], "--queue") && num_ok && x <= 65535)
            d->queue_num = (unsigned)x, have_q = 1;
        else if (!strcmp(argv[i], "--delay-us") && num_ok && x <= 10000000)
            d->delay_ns = x * 1000, have_d = 1;
        else if (!strcmp(argv[i], "--lifetime") && num_ok && x > 0 && x <= 31536000)
            d->lifetime_ns = x * 1000000000;
        else if (!strcmp(argv[i], "--watch"))
            d->watch = v;
        else
            return -1;
        i++;
    }
    return have_q && have_d ? 0 : -1;
}

int main(int argc, char **argv)
{
    static netdelay d; /* 200 KiB of ring: not on the stack */
    d.lifetime_ns = (int64_t)86400 * 1000000000;
    if (parse_args(argc, argv, &d)) {
        fprintf(stderr,
                "usage: netdelay --queue NUM --delay-us US [--lifetime S] [--watch PATH]\n");
        return 2;
    }
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    int sfd = -1;
    if (sigprocmask(SIG_BLOCK, &set, NULL) != 0 || (sfd = signalfd(-1, &set, SFD_CLOEXEC)) < 0) {
        perror("netdelay: signalfd");
        return 1;
    }
    prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0); /* wake on time, not up to 50 us late */
    int rc = 1;
    if (!open_queue(&d)) {
        printf("netdelay: queue %u ready, delay %lld us\n", d.queue_num,
               (long long)(d.delay_ns / 1000));
        fflush(stdout);
        rc = run(&d, sfd);
    }
    if (d.n_overflow || d.n_enobufs)
        fprintf(stderr,
                "netdelay: queue %u: %llu packets passed undelayed (ring full), %llu "
                "netlink overruns\n",
                d.queue_num, (unsigned long long)d.n_overflow, (unsigned long long)d.n_enobufs);
    fprintf(stderr, "netdelay: queue %u: %llu packets delayed by %lld us, deepest queue %u\n",
            d.queue_num, (unsigned long long)d.n_held, (long long)(d.delay_ns / 1000), d.max_depth);
    if (d.qh) {
        release_due(&d, INT64_MAX); /* let go of what is held rather than drop it */
        nfq_destroy_queue(d.qh);
    }
    if (d.h)
        nfq_close(d.h);
    close(sfd);
    return rc;
}

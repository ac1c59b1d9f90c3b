/* Helper for test/e2e_errors.sh: a reader that leaves a FIFO mid-run, made
 * deterministic.
 *
 *     fifo_reader FIFO BYTES READY
 *
 * Opens FIFO read-write (defined on Linux, not by POSIX), so the open does
 * not wait for a writer and the pipe exists before the writer comes; shrinks
 * the pipe's buffer to one page; creates the file READY; reads BYTES bytes;
 * exits, closing both its ends. A writer with more than one page + BYTES
 * bytes to write cannot finish before its only reader is gone, so one of its
 * writes fails with EPIPE. Without the shrink, a reader that gets the CPU
 * late finds a few KB already in the 64 KiB default buffer and the writer
 * never sees a broken pipe. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: fifo_reader FIFO BYTES READY\n");
        return 2;
    }
    char *end;
    long want = strtol(argv[2], &end, 10);
    if (*argv[2] == '\0' || *end != '\0' || want <= 0) {
        fprintf(stderr, "fifo_reader: BYTES must be a positive integer, not '%s'\n", argv[2]);
        return 2;
    }
    int fd = open(argv[1], O_RDWR);
    if (fd < 0) {
        fprintf(stderr, "fifo_reader: %s: %s\n", argv[1], strerror(errno));
        return 1;
    }
    long page = sysconf(_SC_PAGESIZE);
    if (fcntl(fd, F_SETPIPE_SZ, (int)page) < 0) {
        fprintf(stderr, "fifo_reader: F_SETPIPE_SZ on %s: %s\n", argv[1], strerror(errno));
        return 1;
    }
    int ready = open(argv[3], O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (ready < 0 || close(ready) != 0) {
        fprintf(stderr, "fifo_reader: %s: %s\n", argv[3], strerror(errno));
        return 1;
    }
    char buf[256];
    long got = 0;
    while (got < want) {
        size_t n = (size_t)(want - got) < sizeof buf ? (size_t)(want - got) : sizeof buf;
        ssize_t r = read(fd, buf, n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            fprintf(stderr, "fifo_reader: read %s: %s\n", argv[1], r < 0 ? strerror(errno) : "end");
            return 1;
        }
        got += r;
    }
    close(fd);
    return 0;
}

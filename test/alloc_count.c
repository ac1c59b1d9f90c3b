/* LD_PRELOAD shim for test/e2e_alloc.sh: counts the heap allocations of an
 * mdi-llm process and writes the count to $MDI_ALLOC_COUNT_DIR/<pid> at exit.
 * Every allocating entry point of glibc's malloc is wrapped and forwarded to
 * glibc's own implementation (__libc_*), so nothing else changes. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

extern void *__libc_malloc(size_t n);
extern void *__libc_calloc(size_t count, size_t n);
extern void *__libc_realloc(void *p, size_t n);
extern void *__libc_memalign(size_t align, size_t n);

static atomic_long n_allocs;

void *malloc(size_t n)
{
    atomic_fetch_add(&n_allocs, 1);
    return __libc_malloc(n);
}

void *calloc(size_t count, size_t n)
{
    atomic_fetch_add(&n_allocs, 1);
    return __libc_calloc(count, n);
}

void *realloc(void *p, size_t n)
{
    atomic_fetch_add(&n_allocs, 1);
    return __libc_realloc(p, n);
}

void *memalign(size_t align, size_t n)
{
    atomic_fetch_add(&n_allocs, 1);
    return __libc_memalign(align, n);
}

void *aligned_alloc(size_t align, size_t n)
{
    return memalign(align, n);
}

int posix_memalign(void **p, size_t align, size_t n)
{
    if (align < sizeof(void *) || (align & (align - 1)))
        return EINVAL;
    *p = memalign(align, n);
    return *p ? 0 : ENOMEM;
}

__attribute__((destructor)) static void write_count(void)
{
    const char *dir = getenv("MDI_ALLOC_COUNT_DIR");
    char comm[32] = "", path[4096];
    FILE *f = fopen("/proc/self/comm", "r");
    if (f) {
        if (!fgets(comm, sizeof comm, f))
            comm[0] = '\0';
        fclose(f);
    }
    if (!dir || strncmp(comm, "mdi-llm", 7))
        return;
    snprintf(path, sizeof path, "%s/%ld", dir, (long)getpid());
    f = fopen(path, "w");
    if (f) {
        fprintf(f, "%ld\n", atomic_load(&n_allocs));
        fclose(f);
    }
}

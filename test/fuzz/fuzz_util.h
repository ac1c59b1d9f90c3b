/* Helpers shared by the libFuzzer targets in test/fuzz and by
 * test/test_fuzz_regress.c (header-only, static inline).
 *
 * Every target is a function `mdi_status fuzz_<name>(const uint8_t *data, size_t size)`
 * returning the status of the parser it drives; LLVMFuzzerTestOneInput wraps
 * it unless MDI_FUZZ_NO_MAIN is defined (the regression test includes the
 * target files directly). Parsers that take a path get the input as files in
 * a per-process temporary directory under $TMPDIR (default /tmp), removed at exit.
 * A broken promise of a parser (an error without a message, a tensor larger
 * than its file) aborts, so libFuzzer records it as a crash. */
#ifndef MDI_FUZZ_UTIL_H
#define MDI_FUZZ_UTIL_H

#include <dirent.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "convert.h"
#include "mdi/tokenizer.h"

#define FUZZ_PATH_MAX 4096
/* Separates the files of a multi-file input (config.json, safetensors, ...). */
#define FUZZ_SEP "\n@@MDI@@\n"
#define FUZZ_SEP_LEN (sizeof FUZZ_SEP - 1)

static char fuzz_tmp[FUZZ_PATH_MAX];

/* Print what went wrong and abort: libFuzzer keeps the input as a crash. */
static inline void fuzz_fail(const char *what)
{
    fprintf(stderr, "fuzz: %s\n", what);
    abort();
}

/* Remove path and, if it is a directory, everything below it. */
static inline void fuzz_rm_tree(const char *path)
{
    struct stat st;
    if (lstat(path, &st) != 0)
        return;
    if (S_ISDIR(st.st_mode)) {
        DIR *d = opendir(path);
        struct dirent *e;
        char sub[FUZZ_PATH_MAX];
        while (d && (e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            if (snprintf(sub, sizeof sub, "%s/%s", path, e->d_name) < (int)sizeof sub)
                fuzz_rm_tree(sub);
        }
        if (d)
            closedir(d);
        rmdir(path);
    } else {
        unlink(path);
    }
}

static inline void fuzz_cleanup(void)
{
    if (fuzz_tmp[0])
        fuzz_rm_tree(fuzz_tmp);
}

/* The per-process temporary directory, created on first use. */
static inline const char *fuzz_dir(void)
{
    if (!fuzz_tmp[0]) {
        const char *t = getenv("TMPDIR");
        snprintf(fuzz_tmp, sizeof fuzz_tmp, "%s/mdi-fuzz-XXXXXX", t && *t ? t : "/tmp");
        if (!mkdtemp(fuzz_tmp))
            fuzz_fail("cannot create a temporary directory");
        atexit(fuzz_cleanup);
    }
    return fuzz_tmp;
}

/* fuzz_dir()/name into path (FUZZ_PATH_MAX bytes). */
static inline const char *fuzz_path(const char *name, char *path)
{
    if (snprintf(path, FUZZ_PATH_MAX, "%s/%s", fuzz_dir(), name) >= FUZZ_PATH_MAX)
        fuzz_fail("temporary path too long");
    return path;
}

/* Write n bytes to fuzz_dir()/name, then extend the file with zeros (a hole)
 * to pad_to bytes if that is larger. The path goes to path. */
static inline const char *fuzz_write(const char *name, const void *data, size_t n, uint64_t pad_to,
                                     char *path)
{
    int fd = open(fuzz_path(name, path), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    const unsigned char *p = data;
    if (fd < 0)
        fuzz_fail("cannot create a temporary file");
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w <= 0)
            fuzz_fail("cannot write a temporary file");
        p += w;
        n -= (size_t)w;
    }
    if (pad_to > 0 && ftruncate(fd, (off_t)pad_to) != 0)
        fuzz_fail("cannot extend a temporary file");
    close(fd);
    return path;
}

/* Split data at FUZZ_SEP into at most max parts; the last part keeps any
 * further separators. Returns the number of parts (at least 1). */
static inline size_t fuzz_split(const uint8_t *data, size_t size, const uint8_t **part, size_t *len,
                                size_t max)
{
    size_t n = 0, start = 0;
    for (size_t i = 0; n + 1 < max && i + FUZZ_SEP_LEN <= size; i++) {
        if (memcmp(data + i, FUZZ_SEP, FUZZ_SEP_LEN) != 0)
            continue;
        part[n] = data + start;
        len[n++] = i - start;
        start = i + FUZZ_SEP_LEN;
        i = start - 1;
    }
    part[n] = data + start;
    len[n++] = size - start;
    return n;
}

/* A parser's verdict must be a defined status, and a failure must say why. */
static inline mdi_status fuzz_result(mdi_status s, const mdi_err *err)
{
    if (s > MDI_OK || s < MDI_ERR_INTERNAL)
        fuzz_fail("undefined status code");
    if (s != MDI_OK && err->msg[0] == '\0')
        fuzz_fail("error without a message");
    return s;
}

/* Read every tensor of an opened source, as the writer does. A reader must have
 * checked each tensor against the file size (at least 2 bytes an element), so a
 * larger tensor means it accepted a lie and the read would allocate for it. */
static inline mdi_status fuzz_read_tensors(cv_source *src, uint64_t file_bytes, mdi_err *err)
{
    mdi_status s = MDI_OK;
    for (int32_t l = 0; l <= src->cfg.n_layers && s == MDI_OK; l++) {
        for (int k = 0; k < MDI_T_COUNT && s == MDI_OK; k++) {
            mdi_tensor_kind kind = (mdi_tensor_kind)k;
            int per_layer = mdi_tensor_scope_of(kind) == MDI_SCOPE_LAYER;
            size_t rows, cols;
            if (per_layer != (l < src->cfg.n_layers) || !mdi_tensor_present(&src->cfg, kind))
                continue;
            mdi_tensor_shape(&src->cfg, kind, &rows, &cols);
            if ((uint64_t)rows * cols > file_bytes / 2)
                fuzz_fail("reader accepted a tensor larger than its file");
            float *buf = malloc(rows * cols * sizeof *buf);
            if (!buf)
                fuzz_fail("out of memory for a tensor");
            s = src->read(src, kind, per_layer ? l : 0, buf, err);
            free(buf);
        }
    }
    return s;
}

/* Use a vocabulary a parser accepted: build a tokenizer, encode a text with
 * spaces, UTF-8 and an invalid byte, and decode every piece. */
static inline void fuzz_use_vocab(const mdi_vocab *v)
{
    static const char text[] = "Once upon a time, \xc3\xa9t\xc3\xa9 \xe2\x82\xac \xff!";
    mdi_tokenizer *t = NULL;
    mdi_err err;
    int32_t ids[4 * sizeof text];
    size_t n = 0, len;
    char buf[8];
    mdi_err_clear(&err);
    if (fuzz_result(mdi_tokenizer_create(v, &t, &err), &err) != MDI_OK)
        return;
    mdi_status s =
        mdi_tokenizer_encode(t, text, sizeof text - 1, 1, ids, 4 * sizeof text, &n, &err);
    fuzz_result(s, &err);
    for (size_t i = 0; s == MDI_OK && i < n; i++)
        if (ids[i] < 0 || ids[i] >= v->n)
            fuzz_fail("encode returned an id outside the vocabulary");
    for (int32_t id = 0; id < v->n; id++)
        mdi_tokenizer_decode(t, id > 0 ? id - 1 : -1, id, buf, &len);
    mdi_tokenizer_free(t);
}

/* The end of every reader target: s is what the reader's open returned. If it
 * opened src, read every tensor, use the vocabulary and close it; the result
 * of the whole goes through fuzz_result. */
static inline mdi_status fuzz_finish_source(mdi_status s, cv_source *src, uint64_t file_bytes,
                                            mdi_err *err)
{
    if (s == MDI_OK) {
        s = fuzz_read_tensors(src, file_bytes, err);
        fuzz_use_vocab(&src->vocab);
        cv_source_close(src);
    }
    return fuzz_result(s, err);
}

#endif /* MDI_FUZZ_UTIL_H */

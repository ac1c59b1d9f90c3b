/* A protobuf writer for the tests' hand-made SentencePiece models
 * (header-only, static). */
#ifndef MDI_PB_WRITER_H
#define MDI_PB_WRITER_H

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

/* v as a protobuf varint at p; returns its length (1-10 bytes). */
static inline size_t put_varint(uint8_t *p, uint64_t v)
{
    size_t i = 0;
    do {
        p[i] = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
        v >>= 7;
    } while (p[i++] & 0x80);
    return i;
}

typedef struct {
    uint8_t b[2048];
    size_t n;
} pbw;

static inline void w_raw(pbw *w, const void *p, size_t len)
{
    assert_true(w->n + len <= sizeof w->b);
    memcpy(w->b + w->n, p, len);
    w->n += len;
}

static inline void w_varint(pbw *w, uint64_t v)
{
    uint8_t b[10];
    w_raw(w, b, put_varint(b, v));
}

static inline void w_tag(pbw *w, uint32_t field, uint32_t wire)
{
    w_varint(w, (uint64_t)field << 3 | wire);
}

/* field as a length-delimited record (wire type 2) */
static inline void w_bytes(pbw *w, uint32_t field, const void *p, size_t len)
{
    w_tag(w, field, 2);
    w_varint(w, len);
    w_raw(w, p, len);
}

/* field as a varint record (wire type 0) */
static inline void w_uint(pbw *w, uint32_t field, uint64_t v)
{
    w_tag(w, field, 0);
    w_varint(w, v);
}

#endif

/* SentencePiece BPE encoding with byte fallback, and piece-by-piece decoding.
 *
 * Encoding follows sentencepiece 0.1.97 bpe_model.cc: the text is split into
 * UTF-8 characters (user-defined pieces first, as frozen symbols), then the
 * adjacent pair whose concatenation is the best-scoring piece is merged until
 * none is left (ties: leftmost), using a heap of candidate pairs over a linked
 * list of symbols, O(n log n). Symbols that are not pieces become byte pieces.
 * Deliberate differences from sentencepiece: invalid UTF-8 bytes become byte
 * pieces (not U+FFFD), so any byte string round-trips; UNUSED pieces are never
 * merged into; text is never encoded as a CONTROL/UNKNOWN piece. */
#include "mdi/tokenizer.h"
#include "mdi/hash.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define TOK_NONE SIZE_MAX
/* U+2581 LOWER ONE EIGHTH BLOCK, SentencePiece's visible space. */
#define TOK_SPACE "\xe2\x96\x81"
#define TOK_SPACE_LEN 3
/* What an UNKNOWN piece decodes to: sentencepiece's default unk_surface. */
#define TOK_UNK_SURFACE " \xe2\x81\x87 "

struct mdi_tokenizer {
    mdi_vocab v;    /* private copy */
    int32_t *table; /* (table_mask + 1) NORMAL/USER_DEFINED ids by hash, -1 empty */
    size_t table_mask;
    int32_t byte_ids[256]; /* id of piece <0xHH>, -1 if absent */
    size_t ud_max_len;     /* longest USER_DEFINED piece in bytes, 0 if none */
    size_t max_cover;      /* most normalised text bytes one id can stand for */
    char *dec;             /* decoded text of every piece, concatenated */
    size_t *dec_off;       /* (v.n + 1) piece i decodes to dec[dec_off[i] .. dec_off[i+1]) */
};

/* One symbol of the text being encoded: norm[start .. start+len). */
typedef struct {
    size_t start, len;
    size_t prev, next; /* TOK_NONE at the ends */
    int frozen;        /* 0 mergeable, 1 user-defined piece, 2 invalid UTF-8 byte */
} tok_sym;

/* A candidate merge of symbols left and right into a piece of `size` bytes. */
typedef struct {
    float score;
    size_t left, right, size;
} tok_pair;

static int is_mergeable(int32_t type)
{
    return type == MDI_PIECE_NORMAL || type == MDI_PIECE_USER_DEFINED;
}

static int hex_val(uint8_t c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Byte value of a piece spelled exactly "<0xHH>" (upper-case hex), else -1. */
static int byte_piece_value(const uint8_t *p, uint64_t len)
{
    if (len != 6 || p[0] != '<' || p[1] != '0' || p[2] != 'x' || p[5] != '>')
        return -1;
    int hi = hex_val(p[3]), lo = hex_val(p[4]);
    return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

mdi_status mdi_vocab_alloc(mdi_vocab *v, int32_t n, uint64_t total_bytes, mdi_err *err)
{
    if (!v || n < 0)
        return mdi_errf(err, MDI_ERR_ARG, "vocab_alloc: bad arguments (n %d)", (int)n);
    memset(v, 0, sizeof *v);
    if (total_bytes >= SIZE_MAX / 2 || (uint64_t)n >= SIZE_MAX / 16)
        return mdi_errf(err, MDI_ERR_NOMEM, "vocab_alloc: %llu bytes of pieces is too large",
                        (unsigned long long)total_bytes);
    size_t un = (size_t)n;
    v->bytes = calloc(total_bytes ? (size_t)total_bytes : 1, 1);
    v->offsets = calloc(un + 1, sizeof *v->offsets);
    v->scores = calloc(un ? un : 1, sizeof *v->scores);
    v->types = calloc(un ? un : 1, sizeof *v->types);
    if (!v->bytes || !v->offsets || !v->scores || !v->types) {
        mdi_vocab_free(v);
        return mdi_errf(err, MDI_ERR_NOMEM, "vocab_alloc: out of memory for %d pieces, %llu bytes",
                        (int)n, (unsigned long long)total_bytes);
    }
    v->n = n;
    v->bos_id = v->eos_id = v->unk_id = -1;
    v->add_dummy_prefix = 1;
    return MDI_OK;
}

void mdi_vocab_free(mdi_vocab *v)
{
    if (!v)
        return;
    free(v->bytes);
    free(v->offsets);
    free(v->scores);
    free(v->types);
    memset(v, 0, sizeof *v);
    v->bos_id = v->eos_id = v->unk_id = -1;
}

static mdi_status check_special_id(const mdi_vocab *v, int32_t id, const char *name, mdi_err *err)
{
    if (id < -1 || id >= v->n)
        return mdi_errf(err, MDI_ERR_FORMAT, "vocab: %s %d out of range [-1, %d)", name, (int)id,
                        (int)v->n);
    return MDI_OK;
}

mdi_status mdi_vocab_validate(const mdi_vocab *v, mdi_err *err)
{
    if (!v)
        return mdi_errf(err, MDI_ERR_ARG, "vocab: NULL");
    if (v->n <= 0)
        return mdi_errf(err, MDI_ERR_FORMAT, "vocab: %d pieces (need at least 1)", (int)v->n);
    if (!v->bytes || !v->offsets || !v->scores || !v->types)
        return mdi_errf(err, MDI_ERR_ARG, "vocab: arrays not allocated");
    if (v->offsets[0] != 0)
        return mdi_errf(err, MDI_ERR_FORMAT, "vocab: offsets[0] is %llu, not 0",
                        (unsigned long long)v->offsets[0]);
    if (v->offsets[v->n] >= SIZE_MAX / 2)
        return mdi_errf(err, MDI_ERR_FORMAT, "vocab: %llu bytes of pieces is too large",
                        (unsigned long long)v->offsets[v->n]);
    for (int32_t i = 0; i < v->n; i++) {
        uint64_t a = v->offsets[i], b = v->offsets[i + 1];
        if (b < a)
            return mdi_errf(err, MDI_ERR_FORMAT,
                            "vocab: piece %d ends at %llu before it starts (%llu)", (int)i,
                            (unsigned long long)b, (unsigned long long)a);
        int32_t ty = v->types[i];
        if (ty < MDI_PIECE_NORMAL || ty > MDI_PIECE_BYTE)
            return mdi_errf(err, MDI_ERR_FORMAT, "vocab: piece %d has unknown type %d", (int)i,
                            (int)ty);
        if (ty == MDI_PIECE_BYTE && byte_piece_value(v->bytes + a, b - a) < 0)
            return mdi_errf(err, MDI_ERR_FORMAT, "vocab: byte piece %d is not spelled <0xHH>",
                            (int)i);
        if (isnan(v->scores[i]))
            return mdi_errf(err, MDI_ERR_FORMAT, "vocab: piece %d has score NaN", (int)i);
    }
    mdi_status st = check_special_id(v, v->bos_id, "bos_id", err);
    if (st == MDI_OK)
        st = check_special_id(v, v->eos_id, "eos_id", err);
    if (st == MDI_OK)
        st = check_special_id(v, v->unk_id, "unk_id", err);
    if (st == MDI_OK && v->add_dummy_prefix != 0 && v->add_dummy_prefix != 1)
        st = mdi_errf(err, MDI_ERR_FORMAT, "vocab: add_dummy_prefix is %d, not 0 or 1",
                      (int)v->add_dummy_prefix);
    return st;
}

static uint64_t piece_hash(const uint8_t *p, size_t len)
{
    return mdi_fnv1a(MDI_FNV_INIT, p, len);
}

static const uint8_t *piece_bytes(const mdi_vocab *v, int32_t id, size_t *len)
{
    *len = (size_t)(v->offsets[id + 1] - v->offsets[id]);
    return v->bytes + v->offsets[id];
}

/* Id of the NORMAL/USER_DEFINED piece spelled p[0 .. len), or -1. */
static int32_t lookup(const mdi_tokenizer *t, const uint8_t *p, size_t len)
{
    size_t i = (size_t)piece_hash(p, len) & t->table_mask;
    for (;;) {
        int32_t id = t->table[i];
        if (id < 0)
            return -1;
        size_t plen;
        const uint8_t *q = piece_bytes(&t->v, id, &plen);
        if (plen == len && memcmp(p, q, len) == 0)
            return id;
        i = (i + 1) & t->table_mask;
    }
}

/* Hash table of mergeable pieces, byte-piece ids and the longest user-defined piece. */
static mdi_status build_index(mdi_tokenizer *t, mdi_err *err)
{
    const mdi_vocab *v = &t->v;
    size_t count = 0, cap = 16;
    for (int32_t i = 0; i < v->n; i++)
        count += is_mergeable(v->types[i]);
    while (cap < 2 * count)
        cap *= 2;
    t->table = malloc(cap * sizeof *t->table);
    if (!t->table)
        return mdi_errf(err, MDI_ERR_NOMEM, "tokenizer: out of memory for %zu-slot index", cap);
    for (size_t i = 0; i < cap; i++)
        t->table[i] = -1;
    t->table_mask = cap - 1;
    for (int b = 0; b < 256; b++)
        t->byte_ids[b] = -1;
    for (int32_t id = 0; id < v->n; id++) {
        size_t len;
        const uint8_t *p = piece_bytes(v, id, &len);
        if (v->types[id] == MDI_PIECE_BYTE) {
            int b = byte_piece_value(p, len);
            if (t->byte_ids[b] < 0)
                t->byte_ids[b] = id;
            continue;
        }
        if (!is_mergeable(v->types[id]))
            continue;
        if (len == 0)
            return mdi_errf(err, MDI_ERR_FORMAT, "tokenizer: piece %d is empty", (int)id);
        int32_t dup = lookup(t, p, len);
        if (dup >= 0)
            return mdi_errf(err, MDI_ERR_FORMAT, "tokenizer: piece %d duplicates piece %d (%.*s)",
                            (int)id, (int)dup, (int)(len < 64 ? len : 64), (const char *)p);
        size_t i = (size_t)piece_hash(p, len) & t->table_mask;
        while (t->table[i] >= 0)
            i = (i + 1) & t->table_mask;
        t->table[i] = id;
        if (v->types[id] == MDI_PIECE_USER_DEFINED && len > t->ud_max_len)
            t->ud_max_len = len;
    }
    return MDI_OK;
}

/* Writes the decoded text of piece id to out (NULL: only measure); returns its length. */
static size_t decoded_text(const mdi_vocab *v, int32_t id, char *out)
{
    size_t len, n = 0;
    const uint8_t *p = piece_bytes(v, id, &len);
    switch (v->types[id]) {
    case MDI_PIECE_CONTROL:
        return 0;
    case MDI_PIECE_UNKNOWN:
        if (out)
            memcpy(out, TOK_UNK_SURFACE, sizeof TOK_UNK_SURFACE - 1);
        return sizeof TOK_UNK_SURFACE - 1;
    case MDI_PIECE_BYTE:
        if (out)
            out[0] = (char)byte_piece_value(p, len);
        return 1;
    default:
        break;
    }
    for (size_t i = 0; i < len; i++) {
        if (i + TOK_SPACE_LEN <= len && memcmp(p + i, TOK_SPACE, TOK_SPACE_LEN) == 0) {
            if (out)
                out[n] = ' ';
            i += TOK_SPACE_LEN - 1;
        } else if (out) {
            out[n] = (char)p[i];
        }
        n++;
    }
    return n;
}

static mdi_status build_decode_table(mdi_tokenizer *t, mdi_err *err)
{
    const mdi_vocab *v = &t->v;
    size_t total = 0;
    t->dec_off = malloc(((size_t)v->n + 1) * sizeof *t->dec_off);
    if (!t->dec_off)
        return mdi_errf(err, MDI_ERR_NOMEM, "tokenizer: out of memory for decode table");
    for (int32_t id = 0; id < v->n; id++) {
        t->dec_off[id] = total;
        total += decoded_text(v, id, NULL);
    }
    t->dec_off[v->n] = total;
    t->dec = malloc(total ? total : 1);
    if (!t->dec)
        return mdi_errf(err, MDI_ERR_NOMEM, "tokenizer: out of memory for decode table");
    for (int32_t id = 0; id < v->n; id++)
        decoded_text(v, id, t->dec + t->dec_off[id]);
    return MDI_OK;
}

mdi_status mdi_tokenizer_create(const mdi_vocab *v, mdi_tokenizer **out, mdi_err *err)
{
    if (!out)
        return mdi_errf(err, MDI_ERR_ARG, "tokenizer_create: out is NULL");
    *out = NULL;
    mdi_status st = mdi_vocab_validate(v, err);
    if (st != MDI_OK)
        return st;
    mdi_tokenizer *t = calloc(1, sizeof *t);
    if (!t)
        return mdi_errf(err, MDI_ERR_NOMEM, "tokenizer: out of memory");
    st = mdi_vocab_alloc(&t->v, v->n, v->offsets[v->n], err);
    if (st != MDI_OK)
        goto fail;
    memcpy(t->v.bytes, v->bytes, (size_t)v->offsets[v->n]);
    memcpy(t->v.offsets, v->offsets, ((size_t)v->n + 1) * sizeof *v->offsets);
    memcpy(t->v.scores, v->scores, (size_t)v->n * sizeof *v->scores);
    memcpy(t->v.types, v->types, (size_t)v->n * sizeof *v->types);
    t->v.bos_id = v->bos_id;
    t->v.eos_id = v->eos_id;
    t->v.unk_id = v->unk_id;
    t->v.add_dummy_prefix = v->add_dummy_prefix;
    t->max_cover = 4; /* a byte piece covers 1, an unknown character up to 4 */
    for (int32_t i = 0; i < v->n; i++)
        if (is_mergeable(v->types[i]) && (size_t)(v->offsets[i + 1] - v->offsets[i]) > t->max_cover)
            t->max_cover = (size_t)(v->offsets[i + 1] - v->offsets[i]);
    st = build_index(t, err);
    if (st == MDI_OK)
        st = build_decode_table(t, err);
    if (st != MDI_OK)
        goto fail;
    *out = t;
    return MDI_OK;
fail:
    mdi_tokenizer_free(t);
    return st;
}

void mdi_tokenizer_free(mdi_tokenizer *t)
{
    if (!t)
        return;
    mdi_vocab_free(&t->v);
    free(t->table);
    free(t->dec);
    free(t->dec_off);
    free(t);
}

int32_t mdi_tokenizer_n_pieces(const mdi_tokenizer *t)
{
    return t ? t->v.n : 0;
}

size_t mdi_tokenizer_min_ids(const mdi_tokenizer *t, size_t len)
{
    return t ? (len + t->max_cover - 1) / t->max_cover : 0;
}

int32_t mdi_tokenizer_bos(const mdi_tokenizer *t)
{
    return t ? t->v.bos_id : -1;
}

int32_t mdi_tokenizer_eos(const mdi_tokenizer *t)
{
    return t ? t->v.eos_id : -1;
}

/* Length of the well-formed UTF-8 character at s[0 .. n), or 0 if it is not one. */
static size_t utf8_char_len(const uint8_t *s, size_t n)
{
    uint8_t c = s[0];
    size_t len;
    uint8_t lo = 0x80, hi = 0xbf; /* allowed range of the second byte */
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf)
        len = 2;
    else if (c >= 0xe0 && c <= 0xef)
        len = 3;
    else if (c >= 0xf0 && c <= 0xf4)
        len = 4;
    else
        return 0;
    if (c == 0xe0)
        lo = 0xa0;
    else if (c == 0xed)
        hi = 0x9f;
    else if (c == 0xf0)
        lo = 0x90;
    else if (c == 0xf4)
        hi = 0x8f;
    if (n < len || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < len; i++)
        if ((s[i] & 0xc0) != 0x80)
            return 0;
    return len;
}

/* Writes the normalised text (dummy prefix, ' ' -> U+2581) to out; returns its length. */
static size_t normalize(const mdi_tokenizer *t, const uint8_t *text, size_t len, uint8_t *out)
{
    size_t n = 0;
    if (len > 0 && t->v.add_dummy_prefix) {
        memcpy(out, TOK_SPACE, TOK_SPACE_LEN);
        n = TOK_SPACE_LEN;
    }
    for (size_t i = 0; i < len; i++) {
        if (text[i] == ' ') {
            memcpy(out + n, TOK_SPACE, TOK_SPACE_LEN);
            n += TOK_SPACE_LEN;
        } else {
            out[n++] = text[i];
        }
    }
    return n;
}

/* Splits norm[0 .. len) into symbols: longest user-defined piece, else one
 * UTF-8 character, else one invalid byte. Returns the number of symbols. */
static size_t split_symbols(const mdi_tokenizer *t, const uint8_t *norm, size_t len, tok_sym *syms)
{
    size_t n = 0;
    for (size_t pos = 0; pos < len; n++) {
        size_t rest = len - pos, take = 0;
        int frozen = 0;
        for (size_t k = t->ud_max_len < rest ? t->ud_max_len : rest; k > 0; k--) {
            int32_t id = lookup(t, norm + pos, k);
            if (id >= 0 && t->v.types[id] == MDI_PIECE_USER_DEFINED) {
                take = k;
                frozen = 1;
                break;
            }
        }
        if (take == 0) {
            take = utf8_char_len(norm + pos, rest);
            if (take == 0) {
                take = 1;
                frozen = 2;
            }
        }
        syms[n] = (tok_sym){pos, take, n == 0 ? TOK_NONE : n - 1, TOK_NONE, frozen};
        if (n > 0)
            syms[n - 1].next = n;
        pos += take;
    }
    return n;
}

/* Heap order: higher score first, then the leftmost pair. */
static int pair_before(const tok_pair *a, const tok_pair *b)
{
    return a->score > b->score || (a->score == b->score && a->left < b->left);
}

static void heap_push(tok_pair *heap, size_t *n, tok_pair p)
{
    size_t i = (*n)++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!pair_before(&p, &heap[parent]))
            break;
        heap[i] = heap[parent];
        i = parent;
    }
    heap[i] = p;
}

static tok_pair heap_pop(tok_pair *heap, size_t *n)
{
    tok_pair top = heap[0], last = heap[--(*n)];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n)
            break;
        if (c + 1 < *n && pair_before(&heap[c + 1], &heap[c]))
            c++;
        if (!pair_before(&heap[c], &last))
            break;
        heap[i] = heap[c];
        i = c;
    }
    heap[i] = last;
    return top;
}

/* Queues the merge of symbols l and r if their concatenation is a piece. */
static void maybe_add_pair(const mdi_tokenizer *t, const uint8_t *norm, const tok_sym *syms,
                           size_t l, size_t r, tok_pair *heap, size_t *n_heap)
{
    if (l == TOK_NONE || r == TOK_NONE || syms[l].frozen || syms[r].frozen)
        return;
    size_t size = syms[l].len + syms[r].len;
    int32_t id = lookup(t, norm + syms[l].start, size);
    if (id >= 0)
        heap_push(heap, n_heap, (tok_pair){t->v.scores[id], l, r, size});
}

/* Runs BPE merges over the linked list of n symbols until no pair is a piece. */
static void merge_symbols(const mdi_tokenizer *t, const uint8_t *norm, tok_sym *syms, size_t n,
                          tok_pair *heap)
{
    size_t n_heap = 0;
    for (size_t i = 1; i < n; i++)
        maybe_add_pair(t, norm, syms, i - 1, i, heap, &n_heap);
    while (n_heap > 0) {
        tok_pair p = heap_pop(heap, &n_heap);
        tok_sym *l = &syms[p.left], *r = &syms[p.right];
        if (l->len == 0 || r->len == 0 || l->next != p.right || l->len + r->len != p.size)
            continue;
        l->len = p.size;
        l->next = r->next;
        if (r->next != TOK_NONE)
            syms[r->next].prev = p.left;
        r->len = 0;
        maybe_add_pair(t, norm, syms, l->prev, p.left, heap, &n_heap);
        maybe_add_pair(t, norm, syms, p.left, l->next, heap, &n_heap);
    }
}

static void put_id(int32_t *ids, size_t cap, size_t *n, int32_t id)
{
    if (*n < cap)
        ids[*n] = id;
    (*n)++;
}

/* Emits the ids of one final symbol: its piece, else its byte pieces, else unk. */
static mdi_status emit_symbol(const mdi_tokenizer *t, const uint8_t *p, size_t len, int frozen,
                              int32_t *ids, size_t cap, size_t *n, mdi_err *err)
{
    int32_t id = frozen == 2 ? -1 : lookup(t, p, len);
    if (id >= 0) {
        put_id(ids, cap, n, id);
        return MDI_OK;
    }
    size_t have = 0;
    while (have < len && t->byte_ids[p[have]] >= 0)
        have++;
    if (have == len) {
        for (size_t i = 0; i < len; i++)
            put_id(ids, cap, n, t->byte_ids[p[i]]);
        return MDI_OK;
    }
    if (t->v.unk_id < 0)
        return mdi_errf(err, MDI_ERR_UNSUPPORTED,
                        "tokenizer: byte 0x%02X has no byte piece and the vocab has no unk_id",
                        (unsigned)p[have]);
    put_id(ids, cap, n, t->v.unk_id);
    return MDI_OK;
}

mdi_status mdi_tokenizer_encode(const mdi_tokenizer *t, const char *text, size_t len, int add_bos,
                                int32_t *ids, size_t cap, size_t *n_ids, mdi_err *err)
{
    if (!t || (!text && len > 0) || (!ids && cap > 0) || !n_ids)
        return mdi_errf(err, MDI_ERR_ARG, "tokenizer_encode: bad arguments");
    *n_ids = 0;
    if (len > SIZE_MAX / 512)
        return mdi_errf(err, MDI_ERR_RANGE, "tokenizer_encode: text of %zu bytes is too long", len);
    const uint8_t *in = (const uint8_t *)text;
    size_t norm_cap = TOK_SPACE_LEN + len;
    for (size_t i = 0; i < len; i++)
        norm_cap += in[i] == ' ' ? TOK_SPACE_LEN - 1 : 0;
    /* Each merge queues at most two pairs, after at most norm_cap initial ones. */
    size_t heap_cap = 3 * norm_cap;
    char *block = malloc(norm_cap * sizeof(tok_sym) + heap_cap * sizeof(tok_pair) + norm_cap);
    if (!block)
        return mdi_errf(err, MDI_ERR_NOMEM, "tokenizer_encode: out of memory for %zu bytes", len);
    tok_pair *heap = (tok_pair *)block;
    tok_sym *syms = (tok_sym *)(block + heap_cap * sizeof(tok_pair));
    uint8_t *norm = (uint8_t *)(block + heap_cap * sizeof(tok_pair) + norm_cap * sizeof(tok_sym));

    size_t norm_len = normalize(t, in, len, norm);
    size_t n_syms = split_symbols(t, norm, norm_len, syms);
    merge_symbols(t, norm, syms, n_syms, heap);

    mdi_status st = MDI_OK;
    size_t n = 0;
    if (add_bos && t->v.bos_id >= 0)
        put_id(ids, cap, &n, t->v.bos_id);
    for (size_t s = n_syms ? 0 : TOK_NONE; s != TOK_NONE && st == MDI_OK; s = syms[s].next)
        st = emit_symbol(t, norm + syms[s].start, syms[s].len, syms[s].frozen, ids, cap, &n, err);
    free(block);
    if (st != MDI_OK)
        return st;
    *n_ids = n;
    if (n > cap)
        return mdi_errf(err, MDI_ERR_RANGE, "tokenizer_encode: %zu ids do not fit in %zu", n, cap);
    return MDI_OK;
}

const char *mdi_tokenizer_decode(const mdi_tokenizer *t, int32_t prev_id, int32_t id, char buf[8],
                                 size_t *len)
{
    (void)buf;
    if (!t || id < 0 || id >= t->v.n) {
        if (len)
            *len = 0;
        return "";
    }
    const char *s = t->dec + t->dec_off[id];
    size_t n = t->dec_off[id + 1] - t->dec_off[id];
    int32_t ty = t->v.types[id];
    /* Undo the dummy prefix (sentencepiece only does so when it adds one). */
    if (t->v.add_dummy_prefix && (prev_id < 0 || prev_id == t->v.bos_id) && n > 0 && s[0] == ' ' &&
        ty != MDI_PIECE_BYTE && ty != MDI_PIECE_UNKNOWN) {
        s++;
        n--;
    }
    if (len)
        *len = n;
    return s;
}

/* libFuzzer target: mdi_tokenizer_encode on arbitrary bytes, checked by decoding.
 *
 * Input: one flags byte, then the text. Flags bits 0-1 pick the vocabulary:
 * 0 the file named by $MDI_FUZZ_TOKENIZER (the Llama 2 tokenizer.model in
 * jobs/fuzz.sh; the built-in one when unset), 1 the built-in one (every byte
 * piece, merges with ties, user-defined and unused pieces), 2 the built-in one
 * without byte pieces for 0x80-0xFF (unknown pieces instead), 3 the same with
 * no unk_id (an error for such bytes). Bit 2 adds BOS.
 * Checks: ids are in range; a buffer one id short gives MDI_ERR_RANGE and the
 * same count; with every byte piece, decoding gives the text back (unless it
 * contains a literal U+2581, which decodes to a space, as in sentencepiece).
 * Both vocabularies add a dummy prefix, which decoding drops after BOS only. */
#include "fuzz_util.h"

#define FUZZ_TOK_SPACE "\xe2\x96\x81"

/* Built-in vocabulary: <unk> <s> </s>, byte pieces [0, n_bytes), then words
 * ('_' stands for U+2581). */
static void fuzz_tok_builtin(int n_bytes, int with_unk, mdi_vocab *v)
{
    static const char *const words[] = {"_",   "_t",  "he",   "_the",     "in",           "_a",
                                        "an",  "er",  "on",   "_o",       "re",           "_in",
                                        "nd",  "and", "_and", "\xc3\xa9", "\xe2\x82\xac", "ab",
                                        "abc", "bc",  "__",   "<ud>",     "@@",           "xyz"};
    enum { N_WORDS = sizeof words / sizeof words[0] };
    int32_t n = 3 + n_bytes + N_WORDS;
    mdi_err err;
    if (mdi_vocab_alloc(v, n, 16 * (uint64_t)n, &err) != MDI_OK)
        fuzz_fail("cannot allocate the built-in vocabulary");
    uint64_t off = 0;
    for (int32_t i = 0; i < n; i++) {
        char piece[16];
        const char *p = piece;
        int32_t type = MDI_PIECE_NORMAL;
        if (i < 3) {
            p = (const char *[]){"<unk>", "<s>", "</s>"}[i];
            type = i == 0 ? MDI_PIECE_UNKNOWN : MDI_PIECE_CONTROL;
        } else if (i < 3 + n_bytes) {
            snprintf(piece, sizeof piece, "<0x%02X>", (unsigned)(i - 3));
            type = MDI_PIECE_BYTE;
        } else {
            p = words[i - 3 - n_bytes];
            type = strcmp(p, "<ud>") == 0 || strcmp(p, "@@") == 0 ? MDI_PIECE_USER_DEFINED
                   : strcmp(p, "xyz") == 0                        ? MDI_PIECE_UNUSED
                                                                  : MDI_PIECE_NORMAL;
        }
        for (; *p; p++) {
            size_t k = *p == '_' ? 3 : 1;
            memcpy(v->bytes + off, *p == '_' ? FUZZ_TOK_SPACE : p, k);
            off += k;
        }
        v->offsets[i + 1] = off;
        v->types[i] = type;
        v->scores[i] = -(float)(i / 2); /* pairs of equal scores: ties go leftmost */
    }
    v->unk_id = with_unk ? 0 : -1;
    v->bos_id = 1;
    v->eos_id = 2;
}

/* The four tokenizers of the flags, built on first use. */
static mdi_tokenizer *fuzz_tok_get(int which)
{
    static mdi_tokenizer *toks[4];
    static int ready;
    mdi_err err;
    if (!ready) {
        mdi_vocab v;
        const char *path = getenv("MDI_FUZZ_TOKENIZER");
        for (int i = 1; i < 4; i++) {
            fuzz_tok_builtin(i == 1 ? 256 : 128, i != 3, &v);
            if (mdi_tokenizer_create(&v, &toks[i], &err) != MDI_OK)
                fuzz_fail(err.msg);
            mdi_vocab_free(&v);
        }
        toks[0] = toks[1];
        if (path && *path) {
            if (cv_read_tokenizer_file(path, 0, &v, &err) != MDI_OK ||
                mdi_tokenizer_create(&v, &toks[0], &err) != MDI_OK)
                fuzz_fail(err.msg);
            mdi_vocab_free(&v);
        }
        ready = 1;
    }
    return toks[which];
}

/* Whether text holds the bytes of U+2581. */
static int fuzz_tok_has_space_mark(const char *text, size_t len)
{
    for (size_t i = 0; i + 3 <= len; i++)
        if (memcmp(text + i, FUZZ_TOK_SPACE, 3) == 0)
            return 1;
    return 0;
}

/* Decode ids (after BOS when bos) and compare, piece by piece, with text: the
 * dummy prefix goes at the start of the text as after BOS. */
static void fuzz_tok_roundtrip(const mdi_tokenizer *t, const int32_t *ids, size_t n, int bos,
                               const uint8_t *text, size_t len)
{
    size_t k = 0, m;
    int32_t prev = bos ? ids[0] : -1;
    char buf[8];
    for (size_t i = bos ? 1 : 0; i < n; i++) {
        const char *s = mdi_tokenizer_decode(t, prev, ids[i], buf, &m);
        for (size_t j = 0; j < m; j++, k++)
            if (k >= len || s[j] != (char)text[k])
                fuzz_fail("decode(encode(text)) differs from text");
        prev = ids[i];
    }
    if (k != len)
        fuzz_fail("decode(encode(text)) is shorter than text");
}

mdi_status fuzz_tokenizer(const uint8_t *data, size_t size)
{
    mdi_err err;
    size_t n = 0, n2 = 0;
    mdi_err_clear(&err);
    if (size < 1)
        return fuzz_result(mdi_errf(&err, MDI_ERR_FORMAT, "input too short"), &err);
    int which = data[0] & 3, bos = (data[0] >> 2) & 1;
    const mdi_tokenizer *t = fuzz_tok_get(which);
    const char *text = (const char *)data + 1;
    size_t len = size - 1, cap = 4 + 3 * len;
    int32_t *ids = malloc(cap * sizeof *ids);
    if (!ids)
        fuzz_fail("out of memory");
    mdi_status s = mdi_tokenizer_encode(t, text, len, bos, ids, cap, &n, &err);
    if (s == MDI_OK) {
        for (size_t i = 0; i < n; i++)
            if (ids[i] < 0 || ids[i] >= mdi_tokenizer_n_pieces(t))
                fuzz_fail("encode returned an id outside the vocabulary");
        if (n > 0 &&
            (mdi_tokenizer_encode(t, text, len, bos, ids, n - 1, &n2, &err) != MDI_ERR_RANGE ||
             n2 != n))
            fuzz_fail("a buffer one id short did not give MDI_ERR_RANGE and the count");
        s = mdi_tokenizer_encode(t, text, len, bos, ids, cap, &n, &err);
        int lossless = which <= 1 && !fuzz_tok_has_space_mark(text, len);
        if (s == MDI_OK && lossless && mdi_tokenizer_bos(t) >= 0)
            fuzz_tok_roundtrip(t, ids, n, bos, data + 1, len);
    }
    free(ids);
    return fuzz_result(s, &err);
}

#ifndef MDI_FUZZ_NO_MAIN
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_tokenizer(data, size);
    return 0;
}
#endif

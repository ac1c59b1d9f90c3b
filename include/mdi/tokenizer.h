/* SentencePiece-style BPE tokenizer with byte fallback (rank 0 only).
 *
 * mdi_vocab is the plain data stored in a model file; mdi_tokenizer is the
 * ready-to-use form built from it once at start-up. No I/O here: the loader
 * and the converter fill mdi_vocab. */
#ifndef MDI_TOKENIZER_H
#define MDI_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "mdi/status.h"

/* Piece types, numbered as in SentencePiece's ModelProto.SentencePiece.Type. */
typedef enum {
    MDI_PIECE_NORMAL = 1,
    MDI_PIECE_UNKNOWN = 2,
    MDI_PIECE_CONTROL = 3,
    MDI_PIECE_USER_DEFINED = 4,
    MDI_PIECE_UNUSED = 5,
    MDI_PIECE_BYTE = 6
} mdi_piece_type;

/* The vocabulary exactly as stored: piece i is bytes[offsets[i] .. offsets[i+1]).
 * Pieces use U+2581 ("\xe2\x96\x81") for spaces, byte pieces are "<0xHH>". */
typedef struct mdi_vocab {
    int32_t n;                /* number of pieces */
    uint8_t *bytes;           /* (offsets[n]) all pieces concatenated, no terminators */
    uint64_t *offsets;        /* (n + 1) */
    float *scores;            /* (n) merge priority: higher merges first */
    int32_t *types;           /* (n) mdi_piece_type */
    int32_t bos_id;           /* -1 if none */
    int32_t eos_id;           /* -1 if none */
    int32_t unk_id;           /* -1 if none */
    int32_t add_dummy_prefix; /* 1: prepend U+2581 to non-empty text before encoding */
} mdi_vocab;

/* Allocate the arrays of v for n pieces and total_bytes of piece text
 * (zero-filled, ids set to -1, add_dummy_prefix 1). */
mdi_status mdi_vocab_alloc(mdi_vocab *v, int32_t n, uint64_t total_bytes, mdi_err *err);
/* Free the arrays of v (v itself is the caller's); safe on a zeroed struct. */
void mdi_vocab_free(mdi_vocab *v);
/* Check offsets are monotone and in range, types known, ids in range. */
mdi_status mdi_vocab_validate(const mdi_vocab *v, mdi_err *err);

typedef struct mdi_tokenizer mdi_tokenizer; /* opaque */

/* Build a tokenizer from v (v is copied; the caller keeps ownership of v). */
mdi_status mdi_tokenizer_create(const mdi_vocab *v, mdi_tokenizer **out, mdi_err *err);
void mdi_tokenizer_free(mdi_tokenizer *t);

int32_t mdi_tokenizer_n_pieces(const mdi_tokenizer *t);
/* A lower bound on the ids that text of len bytes encodes to (BOS not counted):
 * normalising never shortens text, and no piece covers more bytes than the
 * longest. Cheap, so that a huge prompt can be refused before it is encoded. */
size_t mdi_tokenizer_min_ids(const mdi_tokenizer *t, size_t len);
int32_t mdi_tokenizer_bos(const mdi_tokenizer *t);
int32_t mdi_tokenizer_eos(const mdi_tokenizer *t);

/* Encode len bytes of text (any bytes: invalid UTF-8 falls back to byte pieces)
 * into ids, BOS first when add_bos. Writes at most cap ids; *n_ids gets the
 * count needed. Returns MDI_ERR_RANGE if cap was too small. */
mdi_status mdi_tokenizer_encode(const mdi_tokenizer *t, const char *text, size_t len, int add_bos,
                                int32_t *ids, size_t cap, size_t *n_ids, mdi_err *err);

/* The bytes that piece id contributes to output text when it follows prev_id:
 * byte pieces become their raw byte, U+2581 becomes ' ', the leading space of
 * the first piece of the text (prev_id < 0) or after BOS is dropped (if the
 * vocab adds a dummy prefix),
 * control pieces give nothing, unknown pieces give " ⁇ " (U+2047, as sentencepiece).
 * Returns a pointer into tokenizer-owned memory (or buf) and sets *len. */
const char *mdi_tokenizer_decode(const mdi_tokenizer *t, int32_t prev_id, int32_t id, char buf[8],
                                 size_t *len);

#endif /* MDI_TOKENIZER_H */

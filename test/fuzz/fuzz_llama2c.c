/* libFuzzer target: the llama2.c checkpoint reader (cv_detect, cv_open_llama2c),
 * its tokenizer file (cv_read_tokenizer_file) and every tensor read.
 *
 * Input: the 28-byte header (seven int32), one mode byte, then the tokenizer
 * file (tokenizer.bin or tokenizer.model). The checkpoint written is the
 * header followed by zeros up to the size the header implies: mode bit 0 adds
 * the legacy RoPE tables, (int8)mode / 2 bytes are added to the size (0 for a
 * consistent file). Sizes above 8 MiB, or a header that implies none, give the
 * bare header. */
#include "fuzz_util.h"

#define FUZZ_L2C_HEADER 28
#define FUZZ_L2C_MAX ((uint64_t)8 << 20)

static int32_t fuzz_l2c_field(const uint8_t *h, int i)
{
    uint32_t u = (uint32_t)h[4 * i] | (uint32_t)h[4 * i + 1] << 8 | (uint32_t)h[4 * i + 2] << 16 |
                 (uint32_t)h[4 * i + 3] << 24;
    int32_t v;
    memcpy(&v, &u, sizeof v);
    return v;
}

/* File size the header implies (layout in weights-tools/read_llama2c.c), or 0. */
static uint64_t fuzz_l2c_size(const uint8_t *h, int rope)
{
    int64_t f[7];
    for (int i = 0; i < 7; i++)
        f[i] = fuzz_l2c_field(h, i);
    int64_t vocab = f[5] < 0 ? -f[5] : f[5];
    if (f[0] < 1 || f[0] > MDI_MAX_DIM || f[1] < 1 || f[1] > MDI_MAX_HIDDEN || f[2] < 1 ||
        f[2] > MDI_MAX_LAYERS || f[3] < 1 || f[3] > MDI_MAX_HEADS || f[4] < 1 || f[4] > f[3] ||
        vocab < 1 || vocab > MDI_MAX_VOCAB || f[6] < 1 || f[6] > MDI_MAX_SEQ)
        return 0;
    uint64_t d = (uint64_t)f[0], hid = (uint64_t)f[1], hs = d / (uint64_t)f[3];
    uint64_t kvd = hs * (uint64_t)f[4], v = (uint64_t)vocab;
    uint64_t per_layer = 2 * d + 2 * d * d + 2 * kvd * d + 3 * hid * d;
    uint64_t floats = v * d + (uint64_t)f[2] * per_layer + d + (f[5] < 0 ? v * d : 0);
    if (rope)
        floats += (uint64_t)f[6] * hs;
    return FUZZ_L2C_HEADER + 4 * floats;
}

mdi_status fuzz_llama2c(const uint8_t *data, size_t size)
{
    char ckpt[FUZZ_PATH_MAX], tok[FUZZ_PATH_MAX];
    mdi_err err;
    cv_source src;
    mdi_err_clear(&err);
    if (size < FUZZ_L2C_HEADER + 1)
        return fuzz_result(mdi_errf(&err, MDI_ERR_FORMAT, "input too short"), &err);
    uint8_t mode = data[FUZZ_L2C_HEADER];
    int64_t bytes = (int64_t)fuzz_l2c_size(data, mode & 1) + (int8_t)mode / 2;
    if (bytes <= FUZZ_L2C_HEADER || (uint64_t)bytes > FUZZ_L2C_MAX)
        bytes = FUZZ_L2C_HEADER;
    fuzz_write("model.bin", data, FUZZ_L2C_HEADER, (uint64_t)bytes, ckpt);
    fuzz_write("tokenizer.bin", data + FUZZ_L2C_HEADER + 1, size - FUZZ_L2C_HEADER - 1, 0, tok);
    cv_detect(ckpt);
    return fuzz_finish_source(cv_open_llama2c(ckpt, tok, &src, &err), &src, (uint64_t)bytes, &err);
}

#ifndef MDI_FUZZ_NO_MAIN
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_llama2c(data, size);
    return 0;
}
#endif

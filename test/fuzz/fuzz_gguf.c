/* libFuzzer target: the GGUF reader (cv_open_gguf), then every tensor read and
 * the vocabulary it found.
 *
 * Input: a GGUF file, typically its header, metadata and tensor table only.
 * The file written is the input followed by zeros up to 2 MiB, so the tensor
 * table of a real model still finds data for its offsets. */
#include "fuzz_util.h"

#define FUZZ_GGUF_PAD ((uint64_t)2 << 20)

mdi_status fuzz_gguf(const uint8_t *data, size_t size)
{
    char path[FUZZ_PATH_MAX];
    mdi_err err;
    cv_source src;
    uint64_t bytes = size > FUZZ_GGUF_PAD ? size : FUZZ_GGUF_PAD;
    mdi_err_clear(&err);
    fuzz_write("model.gguf", data, size, bytes, path);
    return fuzz_finish_source(cv_open_gguf(path, &src, &err), &src, bytes, &err);
}

#ifndef MDI_FUZZ_NO_MAIN
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_gguf(data, size);
    return 0;
}
#endif

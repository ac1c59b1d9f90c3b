/* libFuzzer target: the Hugging Face reader (cv_open_hf): config.json and
 * model.safetensors.index.json through the JSON parser, the safetensors
 * header, tokenizer.model; then every tensor read.
 *
 * Input: up to four files separated by FUZZ_SEP, written into the temporary
 * directory: config.json, model.safetensors (typically its 8-byte length and
 * JSON header only: the file is padded with zeros to 2 MiB so the offsets of
 * a real header find data), tokenizer.model and, when present,
 * model.safetensors.index.json. */
#include "fuzz_util.h"

#define FUZZ_HF_PAD ((uint64_t)2 << 20)

mdi_status fuzz_safetensors(const uint8_t *data, size_t size)
{
    static const char *const names[4] = {"config.json", "model.safetensors", "tokenizer.model",
                                         "model.safetensors.index.json"};
    char path[FUZZ_PATH_MAX];
    const uint8_t *part[4];
    size_t len[4];
    uint64_t total = 0;
    mdi_err err;
    cv_source src;
    mdi_err_clear(&err);
    size_t n = fuzz_split(data, size, part, len, 4);
    for (size_t i = 0; i < 4; i++) {
        if (i >= n) {
            unlink(fuzz_path(names[i], path));
            continue;
        }
        uint64_t pad = i == 1 && len[i] < FUZZ_HF_PAD ? FUZZ_HF_PAD : 0;
        fuzz_write(names[i], part[i], len[i], pad, path);
        total += pad > len[i] ? pad : len[i];
    }
    return fuzz_finish_source(cv_open_hf(fuzz_dir(), NULL, &src, &err), &src, total, &err);
}

#ifndef MDI_FUZZ_NO_MAIN
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_safetensors(data, size);
    return 0;
}
#endif

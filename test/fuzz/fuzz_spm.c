/* libFuzzer target: the SentencePiece ModelProto reader (cv_read_spm_model),
 * the by-content tokenizer reader (cv_read_tokenizer_file, which also takes
 * llama2.c tokenizer.bin), and a tokenizer built from what they accept.
 *
 * Input: a tokenizer.model (or tokenizer.bin) file. */
#include "fuzz_util.h"

mdi_status fuzz_spm(const uint8_t *data, size_t size)
{
    char path[FUZZ_PATH_MAX];
    mdi_err err, err2;
    mdi_vocab v, v2;
    mdi_err_clear(&err);
    mdi_err_clear(&err2);
    fuzz_write("tokenizer.model", data, size, 0, path);
    mdi_status s = cv_read_spm_model(path, &v, &err);
    if (s == MDI_OK)
        fuzz_use_vocab(&v);
    mdi_vocab_free(&v);
    if (fuzz_result(cv_read_tokenizer_file(path, 0, &v2, &err2), &err2) == MDI_OK)
        fuzz_use_vocab(&v2);
    mdi_vocab_free(&v2);
    return fuzz_result(s, &err);
}

#ifndef MDI_FUZZ_NO_MAIN
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_spm(data, size);
    return 0;
}
#endif

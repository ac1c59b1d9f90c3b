/* Reading model files and shards (docs/FORMAT.md) into a stage.
 * The only engine code that calls HDF5. */
#ifndef MDI_SHARD_LOADER_H
#define MDI_SHARD_LOADER_H

#include <stddef.h>
#include <stdint.h>

#include "mdi/model_config.h"
#include "mdi/stage.h"
#include "mdi/status.h"
#include "mdi/tokenizer.h"

#define MDI_FORMAT_NAME "mdi-llm"
#define MDI_FORMAT_VERSION 2

/* Open path, read and validate its root attributes, close it. */
mdi_status mdi_shard_probe(const char *path, mdi_shard_info *info, mdi_err *err);

/* The *.h5 names in directory dir, sorted, so that every host reads its
 * files in the same order whatever readdir gives (none: MDI_OK and *n 0).
 * Free them with mdi_shard_names_free. */
mdi_status mdi_shard_list(const char *dir, char ***names, size_t *n, mdi_err *err);
void mdi_shard_names_free(char **names, size_t n);

/* Find the file that serves `rank` under model_path: a file is used as is; a
 * directory's *.h5 files are all probed (in name order) for the one whose
 * shard_index == rank. Two such files are an error naming both; unreadable
 * files are passed over when the rank's shard is found, and named when not.
 * Writes the file's path to out and its attributes to info. */
mdi_status mdi_shard_locate(const char *model_path, int32_t rank, char *out, size_t cap,
                            mdi_shard_info *info, mdi_err *err);

/* Told after each tensor read: bytes of this stage's tensors loaded so far
 * (as f32, in memory; an f16 or bf16 file holds half as many), of total. */
typedef void (*mdi_shard_progress_fn)(void *ctx, uint64_t done, uint64_t total);

/* Read the stage's layers (and extras if the stage has them) from path, which
 * must hold them all. Checks every dataset's shape and that every value is
 * finite. progress (may be NULL) is called with ctx after each tensor. */
mdi_status mdi_shard_load(const char *path, mdi_stage *st, mdi_shard_progress_fn progress,
                          void *ctx, mdi_err *err);

/* Read the tokenizer group of a layer-0 file into v (zeroed by the caller). */
mdi_status mdi_shard_load_vocab(const char *path, mdi_vocab *v, mdi_err *err);

#endif /* MDI_SHARD_LOADER_H */

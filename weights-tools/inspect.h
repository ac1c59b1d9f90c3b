/* mdi-convert --inspect: describe and validate a model file or shard directory. */
#ifndef MDI_CV_INSPECT_H
#define MDI_CV_INSPECT_H

#include <stdio.h>

#include "mdi/status.h"

/* Print what path holds (one model file, or a directory of model-*.h5 shards)
 * to out, checking every attribute, dataset shape and layout against
 * docs/FORMAT.md; for a directory, also that the shards fit together.
 * Returns MDI_ERR_FORMAT with a one-line message on the first problem. */
mdi_status cv_inspect(const char *path, FILE *out, mdi_err *err);

#endif /* MDI_CV_INSPECT_H */

/* Checks on HDF5 files, shared by the two modules that read HDF5: the
 * loader (shard_loader.c, which defines them) and mdi-convert --inspect. */
#ifndef MDI_H5CHECK_H
#define MDI_H5CHECK_H

#include <hdf5.h>

#include "mdi/status.h"

/* 1 if t is an integer or binary floating-point type laid out as any HDF5
 * writer lays them out: 1, 2, 4 or 8 whole bytes with no padding bits; for
 * a float, sign, exponent and mantissa filling them in that order, with the
 * usual bias and an implied leading bit (IEEE f16/f32/f64, and bf16). A
 * damaged file can declare a type HDF5 accepts but cannot convert (a 4-byte
 * integer of 49184 bits), and libhdf5 crashes converting it: check before
 * any read that converts. */
int mdi_h5_number_type_ok(hid_t t);

/* For a file HDF5 cannot open: MDI_ERR_FORMAT, with a message in err saying
 * so, if it is an HDF5 file cut short (an interrupted copy): its superblock,
 * found where HDF5 looks for it (offset 0, 512, 1024, 2048, ...), records an
 * end of file past the file's size, or the file ends inside the superblock.
 * MDI_OK otherwise, including when the file cannot be read or holds no HDF5
 * signature. */
mdi_status mdi_h5_truncated(const char *path, mdi_err *err);

/* 1 if a dataset whose creation property list is pl cannot be read because
 * of a filter (a compressor such as blosc or zstd, through a plugin) that
 * this HDF5 library lacks, or that it cannot describe, with "HDF5 filter
 * <id> '<name>'" in what (cap bytes); 0 if every filter a read needs is here
 * (optional filters may be missing), or pl < 0. */
int mdi_h5_missing_filter(hid_t pl, char *what, size_t cap);

#endif /* MDI_H5CHECK_H */

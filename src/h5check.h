/* A check on HDF5 datatypes, shared by the two modules that read HDF5: the
 * loader (shard_loader.c, which defines it) and mdi-convert --inspect. */
#ifndef MDI_H5CHECK_H
#define MDI_H5CHECK_H

#include <hdf5.h>

/* 1 if t is an integer or binary floating-point type laid out as any HDF5
 * writer lays them out: 1, 2, 4 or 8 whole bytes with no padding bits; for
 * a float, sign, exponent and mantissa filling them in that order, with the
 * usual bias and an implied leading bit (IEEE f16/f32/f64, and bf16). A
 * damaged file can declare a type HDF5 accepts but cannot convert (a 4-byte
 * integer of 49184 bits), and libhdf5 crashes converting it: check before
 * any read that converts. */
int mdi_h5_number_type_ok(hid_t t);

#endif /* MDI_H5CHECK_H */

/* Token sampling on rank 0: greedy, temperature, top-k, top-p, and a small
 * seeded generator per sample so that runs are reproducible. */
#ifndef MDI_SAMPLER_H
#define MDI_SAMPLER_H

#include <stddef.h>
#include <stdint.h>

#include "mdi/status.h"

/* Random stream: one per sample. */
typedef struct mdi_rng {
    uint64_t state;
    uint64_t inc;
} mdi_rng;

/* Seed a stream from (seed, stream index); distinct indices give independent streams. */
void mdi_rng_seed(mdi_rng *r, uint64_t seed, uint64_t stream);
uint32_t mdi_rng_u32(mdi_rng *r);
/* Uniform float in [0, 1). */
float mdi_rng_f32(mdi_rng *r);

/* Largest accepted temperature. */
#define MDI_SAMPLER_MAX_TEMPERATURE 100.0f

typedef struct mdi_sampler_params {
    float temperature; /* 0 = greedy (argmax); must be >= 0 */
    int32_t top_k;     /* 0 = off; else keep the k most likely */
    float top_p;       /* 1 = off; else keep the smallest set with mass >= top_p; in (0, 1] */
} mdi_sampler_params;

/* Defaults: temperature 0.8, top_k 0, top_p 0.95 ... see the .c file. */
mdi_sampler_params mdi_sampler_default_params(void);
mdi_status mdi_sampler_params_validate(const mdi_sampler_params *p, mdi_err *err);

/* A sampler owns scratch space for one vocabulary; it is shared by all samples
 * (each sample brings its own mdi_rng). */
typedef struct mdi_sampler {
    mdi_sampler_params params;
    int32_t vocab_size;
    void *scratch; /* (vocab_size) probability/index pairs, allocated once */
} mdi_sampler;

mdi_status mdi_sampler_init(mdi_sampler *s, int32_t vocab_size, const mdi_sampler_params *p,
                            mdi_err *err);
void mdi_sampler_free(mdi_sampler *s);

/* Pick the next token from logits (vocab_size floats, modified in place).
 * Greedy ignores rng; ties go to the lowest id. Never allocates. */
int32_t mdi_sampler_sample(mdi_sampler *s, float *logits, mdi_rng *rng);

#endif /* MDI_SAMPLER_H */

/* FNV-1a, 64 bits: model ids, the tokenizer's piece table and the ranks'
 * comparison of their options. Not for anything an adversary chooses keys
 * for. */
#ifndef MDI_HASH_H
#define MDI_HASH_H

#include <stddef.h>
#include <stdint.h>

#define MDI_FNV_INIT 0xcbf29ce484222325ULL

/* h continued over n bytes at data; start with MDI_FNV_INIT. */
static inline uint64_t mdi_fnv1a(uint64_t h, const void *data, size_t n)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

#endif /* MDI_HASH_H */

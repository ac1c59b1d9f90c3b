/* The packed weight layout (include/mdi/tensor.h) as offsets, shared by the
 * tensor module's files: tensor.c (packing, BLIS) and tensor_stream.c. */
#ifndef MDI_TENSOR_LAYOUT_H
#define MDI_TENSOR_LAYOUT_H

#include <stddef.h>

#include "mdi/tensor.h"

/* Columns per panel for a matrix whose rows are n floats and whose layout
 * says `panel`: n itself for a row-major matrix or a single panel. */
static inline size_t panel_width(size_t panel, size_t n)
{
    return panel == 0 || panel >= n ? n : panel;
}

/* Rows per group of a matrix whose layout says `panel`: a row-major matrix
 * is the packed layout with one panel and groups of one row. */
static inline size_t panel_group(size_t panel)
{
    return panel == 0 ? 1 : MDI_PANEL_GROUP;
}

static inline size_t min_z(size_t a, size_t b)
{
    return a < b ? a : b;
}

/* Offset in W (d, n), columns in panels of P, rows in groups of G (see
 * tensor.h; P = n, G = 1: row-major), of W[j][i]; past W's end for j >= d
 * (a prefetch target). */
static inline size_t wpos(size_t j, size_t i, size_t n, size_t d, size_t P, size_t G)
{
    if (j >= d || G == 1) /* G == 1: row-major */
        return j * n + i;
    size_t jb = j / MDI_PANEL_ROWS * MDI_PANEL_ROWS, p0 = i / P * P;
    size_t nr = min_z(d - jb, MDI_PANEL_ROWS), pw = min_z(n - p0, P), pw16 = pw - pw % 16;
    size_t a = j - jb, g0 = a / MDI_PANEL_GROUP * MDI_PANEL_GROUP;
    size_t gr = min_z(nr - g0, MDI_PANEL_GROUP), c = i - p0;
    size_t at = jb * n + nr * p0 + g0 * pw;
    if (c < pw16)
        return at + c / 16 * 16 * gr + (a - g0) * 16 + c % 16;
    return at + gr * pw16 + (a - g0) * (pw - pw16) + (c - pw16);
}

/* Rows in the group of W's row j (columns in panels, rows in groups of G). */
static inline size_t group_rows(size_t j, size_t d, size_t G)
{
    if (G == 1)
        return 1;
    size_t jb = j / MDI_PANEL_ROWS * MDI_PANEL_ROWS, nr = min_z(d - jb, MDI_PANEL_ROWS);
    return min_z(nr - (j - jb) / MDI_PANEL_GROUP * MDI_PANEL_GROUP, MDI_PANEL_GROUP);
}

#endif

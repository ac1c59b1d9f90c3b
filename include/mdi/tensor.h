/* Dense kernels: matrix products over BLIS, RMSNorm, softmax, SwiGLU, RoPE.
 * The only code that includes blis.h. No allocation except in the
 * explicitly named init functions. */
#ifndef MDI_TENSOR_H
#define MDI_TENSOR_H

#include <stddef.h>
#include <stdint.h>

#include "mdi/status.h"

/* What the math backend runs on, for logs and stats. */
typedef struct mdi_tensor_info {
    int n_threads;
    char blis_arch[32]; /* BLIS's kernel set, e.g. "zen3" */
    int slow_kernels;   /* 1: BLIS runs generic kernels on a CPU that has AVX2/FMA */
} mdi_tensor_info;

/* Call once per process before any other BLIS use, and before MPI_Init (a
 * set BLIS_ARCH_TYPE is tried in a forked child):
 * - BLIS_ARCH_TYPE unset on a CPU that BLIS 0.9 does not recognise (AMD family
 *   >= 0x19): select the zen3 kernels and set *chosen (may be NULL) to 1;
 * - BLIS_ARCH_TYPE set: refuse, with a message, a value that BLIS would abort
 *   on (out of range, a kernel set it was not built with), misread (not a
 *   number: BLIS reads "zen3" as 0) or whose kernels this CPU cannot run.
 * After an error, no BLIS function may be called in this process. */
mdi_status mdi_tensor_choose_arch(int *chosen, mdi_err *err);

/* Set the thread count for matrix work and report the kernel set in use. */
mdi_status mdi_tensor_init(int n_threads, mdi_tensor_info *info, mdi_err *err);

/* How a weight matrix W (d, n) lies in memory, as `panel` below tells:
 * - panel 0: row-major;
 * - otherwise packed: in blocks of MDI_PANEL_ROWS rows (the last block may
 *   have fewer, nr), each block starting at W + jb * n (jb its first row)
 *   and holding its rows cut into column panels of P = min(panel, n) floats
 *   (panel a multiple of 16; the last panel is narrower), panel after panel.
 *   Within a panel (nr, pw), the rows come in groups of MDI_PANEL_GROUP (the
 *   last group of a block may have fewer, gr), group after group, each
 *   group's gr * pw floats holding first its full 16-column blocks, the gr
 *   rows' 16 floats side by side for each block in turn, then the gr rows'
 *   last pw % 16 floats, row after row.
 * Read front to back, the packed matrix is still one stream; the part of
 * the activation row that meets a panel stays in L1, so rows too long to
 * share L1 with the stream read at the rate of short ones; and one stream
 * feeds a group's rows, so a single activation row meets several weight
 * rows at once, whose independent sums hide the latency of the fused
 * multiply-adds (mdi-bench; see tensor_stream.c). The products below give the
 * same bits for every layout. */
enum { MDI_PANEL_ROWS = 96, MDI_PANEL_GROUP = 4 };

/* The panel width the streaming product wants for weight rows of n floats
 * met by `rows` activation rows per call: a multiple of 16; for one row, at
 * least n (one panel) for rows shorter than 16 KiB; for a few rows
 * (AVX-512: up to 4), narrow enough that their panel parts stay in L1; 0
 * (row-major) where the layout would not help (more rows; AVX2 or no
 * vector unit with more than one). */
size_t mdi_weight_panel(size_t n, size_t rows);

/* Re-lay a row-major W (d, n) in place into the packed layout with panels
 * of `panel` floats (a multiple of 16, or 0 for no change); scratch holds
 * MDI_PANEL_ROWS * n floats. */
void mdi_weight_to_panels(float *w, size_t d, size_t n, size_t panel, float *scratch);

/* Floats of scratch that mdi_matmul needs for W (d, n) laid out as `panel`
 * says: 0 for row-major. */
size_t mdi_matmul_scratch(size_t n, size_t panel);

/* y (rows, d) = beta * y + x (rows, n) @ W^T, W (d, n) laid out as `panel`
 * says. BLIS; a packed W takes one call per block and panel, each copied
 * row-major into scratch (mdi_matmul_scratch floats; NULL for row-major). */
void mdi_matmul(float *y, const float *x, const float *w, size_t rows, size_t n, size_t d,
                float beta, size_t panel, float *scratch);

/* Same product for a few rows (generated tokens), bandwidth-bound: W is
 * streamed from memory once per call, in register blocks of several weight
 * and activation rows. Every output element is summed in one documented
 * order (16 lanes of fused multiply-adds, a fixed reduction tree, then the
 * tail; see tensor_stream.c), so a row's result does not depend on how many rows
 * share the call, on n_threads, on the vector unit or on W's layout. */
void mdi_matmul_stream(float *y, const float *x, const float *w, size_t rows, size_t n, size_t d,
                       float beta, size_t panel, int n_threads);

/* The largest block of rows that mdi_matmul_stream computes faster than
 * mdi_matmul on this build's vector unit (measured with mdi-bench on Zen 5
 * against BLIS's zen3 sgemm, TinyLlama shapes): 256 with AVX-512, whose
 * register blocks then run at about twice BLIS's rate; 4 with AVX2; 1
 * without vectors. A stage whose calls never exceed this many rows streams
 * its prompt rows too (mdi_stage_forward_mixed). */
size_t mdi_matmul_stream_max_rows(void);

/* Weight bytes per second that mdi_matmul_stream reads for one row on
 * n_threads threads: a fresh buffer of `bytes` streamed for at least
 * `seconds` (the pass that fills it not counted). This host's decode speed,
 * as --speeds auto compares it across ranks. 0 if the buffer cannot be had. */
double mdi_matmul_stream_rate(size_t bytes, double seconds, int n_threads);

/* out (n) = x (n) / rms(x) * w (n); out may alias x. */
void mdi_rmsnorm(float *out, const float *x, const float *w, size_t n, float eps);

/* In place: x (n) = softmax(x). */
void mdi_softmax(float *x, size_t n);

/* In place: a (n) = silu(a) * b. */
void mdi_swiglu(float *a, const float *b, size_t n);

/* Dot product of two float vectors of length n. */
float mdi_dot(const float *a, const float *b, size_t n);

/* a (n) += s * b (n). */
void mdi_axpy(float *a, float s, const float *b, size_t n);

/* Attention's scores of nq queries (q's rows, n floats each) against count
 * keys (rows of n floats, stride floats apart from k): out[a * out_stride +
 * t] = mdi_dot(q + a * n, k + t * stride, n) * scale, bit for bit. */
void mdi_dot_rows(float *out, size_t out_stride, const float *q, size_t nq, const float *k,
                  size_t stride, size_t count, size_t n, float scale);

/* Attention's weighted sums of count values (rows of n floats, stride floats
 * apart from v) for nq queries: out's row a (n floats, rows n apart) = the
 * sum over t < count of s[a * s_stride + t] * value t, bit for bit as
 * zeroing it and then mdi_axpy(row, s[a * s_stride + t], value t, n) for t
 * = 0, 1, .... */
void mdi_weighted_rows(float *out, const float *s, size_t s_stride, size_t nq, const float *v,
                       size_t stride, size_t count, size_t n);

/* RoPE cos/sin for every position and pair, computed once. */
typedef struct mdi_rope_table {
    size_t max_pos;
    size_t half;    /* head_dim / 2 */
    float *cos_sin; /* (max_pos, half, 2) */
} mdi_rope_table;

mdi_status mdi_rope_init(mdi_rope_table *t, size_t max_pos, size_t head_dim, float theta,
                         mdi_err *err);
void mdi_rope_free(mdi_rope_table *t);

/* Rotate interleaved pairs (0,1), (2,3), ... of each of n_heads heads of
 * v (n_heads * head_dim) to position pos (< t->max_pos). */
void mdi_rope_apply(const mdi_rope_table *t, float *v, size_t n_heads, size_t pos);

/* 64-byte aligned allocation of n floats (NULL on failure), and its free.
 * Allocations of 4 MiB and more are 2 MiB aligned and advised to use
 * transparent huge pages, for streaming weights. */
float *mdi_alloc_floats(size_t n);
void mdi_free_floats(float *p);

#endif /* MDI_TENSOR_H */

/* The C kernels of bpcore: their constants and their one table of entry points.
 *
 * The kernels (_elementwise_impl.h, _small_gemm_impl.h, _output_loss_impl.h, _guard.h,
 * _pool.h) are compiled once, in src/_kernels.c, into the extension bpcore._kernels,
 * which hands this table to the Cython modules in a capsule (src/_loops.h): each
 * kernel is built once per build, not once per module that calls it. C code outside
 * Python (a kernel test, a cross-compiled check) links src/_kernels.c and calls
 * bp_kernels_get().
 *
 * Plain C99: no compiler extension in this header. Pointers documented as "may be
 * NULL" in the implementation headers accept NULL here too.
 */
#ifndef BPCORE_KERNELS_H
#define BPCORE_KERNELS_H

/* MSVC's C compiler spells C99's inline and restrict with underscores before
 * /std:c11 */
#if defined(_MSC_VER) && !defined(__clang__) && (!defined(__STDC_VERSION__) || __STDC_VERSION__ < 201112L)
#ifndef inline
#define inline __inline
#endif
#ifndef restrict
#define restrict __restrict
#endif
#endif

/* bumped whenever the table below changes: a module built against another layout
 * refuses to import (src/_loops.h) */
#define BP_KERNEL_API_VERSION 3

/* entries of the scratch buffer bp_small_gemm takes (see _small_gemm_impl.h) */
#define BP_SMALL_SCRATCH 4096

/* the most rows of the SGD update that forms dW in registers (bp_outer_sgd) */
#define BP_OUTER_ROWS 4

/* the most inputs of the one-unit output layer that bp_unit_mse takes, in vectors of
 * BP_VECTOR_BYTES */
#define BP_UNIT_VECTORS 4
#define BP_VECTOR_BYTES 32

/* epilogues of bp_small_gemm (see _small_gemm_impl.h) */
enum { BP_EP_FORWARD = 1, BP_EP_DELTA = 2 };

/* activation codes: the registry in bpcore/nn/layers.py maps names to these */
enum {
    BP_IDENTITY = 0, BP_SIGMOID = 1, BP_TANH = 2, BP_RELU = 3, BP_LEAKY_RELU = 4,
    BP_SCALED_SIGMOID = 5
};

/* Whether bp_unit_mse takes an output layer of k inputs of `size` bytes each: k a
 * multiple of the vector width, at most BP_UNIT_VECTORS vectors. The same rule on
 * every path (the portable kernels take what the vector ones take), so that a build
 * changes no decision of the engine. */
static inline int bp_unit_mse_fits(long k, long size) {
    const long width = BP_VECTOR_BYTES / size;
    return k > 0 && k % width == 0 && k / width <= BP_UNIT_VECTORS;
}

/* The kernels, by element type: f32 (float) and f64 (double). See the implementation
 * headers for what each computes. */
#define BP_KERNEL_ENTRIES(T, S)                                                        \
    void (*bias_activation_##S)(long n, long m, T *A, const T *b, const T *scale,      \
                                T *Z, T *D, T *G, int kind, T slope);                  \
    void (*delta_##S)(long n, long m, const T *upstream, const T *D, const T *G,       \
                      T *delta, T *db, T *dscale, int overwrite);                      \
    int (*all_finite_##S)(long n, const T *x);                                         \
    void (*transpose_##S)(long k, long m, const T *B, T *Bt);                          \
    void (*sgd_##S)(long n, T *params, const T *grads, T *velocity, T lr, T momentum,  \
                    T weight_decay, int nesterov);                                     \
    void (*outer_sgd_##S)(long k, long m, long n, const T *X, long ldx,                \
                          const T *delta, long ldd, T *W, T *velocity, T lr,           \
                          T momentum, T weight_decay, int nesterov);                   \
    void (*adam_##S)(long n, T *params, const T *grads, T *exp_avg, T *exp_avg_sq,     \
                     T step_size, T beta1, T beta2, T eps, T l2, T decay,              \
                     T inv_root_bc2);                                                  \
    void (*small_gemm_##S)(int trans_a, int trans_b, long m, long n, long k, T alpha,  \
                           const T *A, long lda, const T *B, long ldb, T beta, T *C,   \
                           long ldc, T *Bt);                                           \
    void (*small_dense_forward_##S)(long m, long n, long k, const T *A, const T *B,    \
                                    const T *bias, T *C, T *D, int act, T slope,       \
                                    T *Bt);                                            \
    void (*small_delta_back_##S)(long m, long n, long k, const T *A, const T *B,       \
                                 const T *M, T *C, T *colsum, int relu_output, T *Bt); \
    double (*unit_mse_##S)(long m, long k, const T *A, const T *w, const T *b,         \
                           const T *target, double scale, T *out, T *grad,             \
                           const T *M, int relu_output, T *delta, T *colsum, T *dW,    \
                           T *db);                                                     \
    double (*abs_sum_##S)(long n, const T *x, double *negative);                       \
    void (*adam_shared_##S)(long n, T *params, const T *grads, T *exp_avg,             \
                            T *exp_avg_sq, T step_size, T beta1, T beta2, T eps,       \
                            T l2, T decay, T inv_root_bc2);                            \
    void (*sgd_shared_##S)(long n, T *params, const T *grads, T *velocity, T lr,       \
                           T momentum, T weight_decay, int nesterov);                  \
    void (*exp_nonpositive_##S)(long n, const T *x, T *out);                           \
    void (*softplus_neg_abs_##S)(long n, const T *z, T *out);                          \
    void (*sigmoid_array_##S)(long n, const T *z, T *out);

typedef struct {
    int version;             /* BP_KERNEL_API_VERSION */
    int size;                /* sizeof(bp_kernel_table) */
    /* how these kernels were built: "vector" (GNU vector extensions, with
     * target_clones where listed) or "portable" (plain C99) */
    const char *path;
    const char *target_clones;   /* e.g. "x86-64-v4,x86-64-v3,default"; "" when none */
    const char *compiler;
    /* the most multiply-adds of a product that the own loops compute instead of BLAS
     * on this CPU (see bp_small_work_limit in _kernels.c) */
    long (*small_work_limit)(void);
    /* the most multiply-adds of a layer's product with an epilogue (bias and
     * activation, or the delta below) that the own loops take beyond that limit, at
     * batches above 8 rows; 0: none (see bp_fused_work_limit in _kernels.c) */
    long (*fused_work_limit)(void);
    long (*pool_helper_chunks)(void);
    int (*pool_helper_on_turn)(void);
    BP_KERNEL_ENTRIES(float, f32)
    BP_KERNEL_ENTRIES(double, f64)
} bp_kernel_table;

/* The table of this build's kernels (filled once; safe to call from any thread after
 * the first call returns). */
const bp_kernel_table *bp_kernels_get(void);

#endif

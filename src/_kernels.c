/* bpcore's C kernels, compiled once (see _kernels.h for how they are reached): this
 * file holds their table, the guard's sums and the helper thread; _kernels_f32.c and
 * _kernels_f64.c the kernels of each element type (built with _kernels_config.h).
 *
 * Two paths, chosen by the preprocessor:
 *   vector    GCC or clang on x86-64 or aarch64: the register-blocked products and the
 *             vector sums of _small_gemm_impl.h, _output_loss_impl.h and _guard.h are
 *             written with GNU vector extensions (32-byte vectors, which every target
 *             splits or widens as it can). On x86-64 GCC, target_clones builds each
 *             kernel for AVX-512, AVX2 and baseline x86-64 and picks one at load time,
 *             so a portable wheel (no -march) still runs wide vectors.
 *   portable  any other C99 compiler (MSVC), or a build with BP_PORTABLE defined
 *             (BPCORE_PORTABLE=1 in setup.py): the same kernels as plain loops
 *             (_portable_impl.h), the element-wise loops of _elementwise_impl.h
 *             unchanged, and every entry summed in the order of the plain loop.
 * Both give the same results up to the order of summation (and FMA contraction): the
 * tests hold each path to the same tolerances.
 */
#include "_kernels_config.h"

/* the kernels of _kernels_f32.c and _kernels_f64.c */
#define BP_KERNEL_PROTOTYPES(T, S)                                                     \
    BP_KERNEL void bp_bias_activation_##S(long n, long m, T *A, const T *b,             \
                                          const T *scale, T *Z, T *D, T *G, int kind,   \
                                          T slope);                                     \
    BP_KERNEL void bp_delta_##S(long n, long m, const T *upstream, const T *D,          \
                                const T *G, T *delta, T *db, T *dscale, int overwrite); \
    BP_KERNEL int bp_all_finite_##S(long n, const T *x);                                \
    BP_KERNEL void bp_transpose_##S(long k, long m, const T *B, T *Bt);                 \
    BP_KERNEL void bp_sgd_##S(long n, T *params, const T *grads, T *velocity, T lr,     \
                              T momentum, T weight_decay, int nesterov);                \
    BP_KERNEL void bp_outer_sgd_##S(long k, long m, long n, const T *X, long ldx,       \
                                    const T *delta, long ldd, T *W, T *velocity, T lr,  \
                                    T momentum, T weight_decay, int nesterov);          \
    BP_KERNEL void bp_adam_##S(long n, T *params, const T *grads, T *exp_avg,           \
                               T *exp_avg_sq, T step_size, T beta1, T beta2, T eps,     \
                               T l2, T decay, T inv_root_bc2);                          \
    BP_KERNEL void bp_small_gemm_##S(int trans_a, int trans_b, long m, long n, long k,  \
                                     T alpha, const T *A, long lda, const T *B,         \
                                     long ldb, T beta, T *C, long ldc, T *Bt);          \
    BP_KERNEL void bp_small_dense_forward_##S(long m, long n, long k, const T *A,       \
                                              const T *B, const T *bias, T *C, T *D,    \
                                              int act, T slope, T *Bt);                 \
    BP_KERNEL void bp_small_delta_back_##S(long m, long n, long k, const T *A,          \
                                           const T *B, const T *M, T *C, T *colsum,     \
                                           int relu_output, T *Bt);                     \
    BP_KERNEL double bp_unit_mse_##S(long m, long k, const T *A, const T *w,            \
                                     const T *b, const T *target, double scale,         \
                                     T *out, T *grad, const T *M, int relu_output,      \
                                     T *delta, T *colsum, T *dW, T *db);            \
    BP_KERNEL void bp_exp_nonpositive_##S(long n, const T *x, T *out);                  \
    BP_KERNEL void bp_softplus_neg_abs_##S(long n, const T *z, T *out);                 \
    BP_KERNEL void bp_sigmoid_array_##S(long n, const T *z, T *out);

BP_KERNEL_PROTOTYPES(float, f32)
BP_KERNEL_PROTOTYPES(double, f64)
#undef BP_KERNEL_PROTOTYPES

/* The most multiply-adds a product may have for bp_small_gemm to compute it instead
 * of BLAS: the crossover measured by benches/small_gemm.py. With AVX2 (OpenBLAS's
 * Haswell kernels, which pay about 1 us per call here), the own loops (3 x 4 blocks)
 * win X.W and X^T.delta up to 2^19 multiply-adds and delta.W^T (which copies W^T
 * first) up to 2^17: the limit is 2^18, halved for delta.W^T (small_product in
 * _blas.pxd). Where AVX-512 is present, OpenBLAS runs 64-byte vectors and
 * small-matrix kernels with little fixed cost, and beat earlier 32-byte loops of ours
 * on a 2-16-16-1 step (5.5 against 6.9 us): there the own loops keep only plain
 * products of at most 4096 multiply-adds (a batch-1 step of a 64-wide layer), where
 * BLAS's fixed cost dominates anyway; a layer's product with its epilogue goes
 * further (bp_fused_work_limit below). The portable loops (no register blocks) keep only those
 * too, on every CPU. Decided once per process, by the CPU, not by timing: the same
 * machine always takes the same path (and gets the same bits). */
static long bp_small_work_limit(void) {
    static long limit = 0;
    if (limit == 0) {
#if BP_VECTOR && defined(__x86_64__)
        limit = __builtin_cpu_supports("avx512f") ? 4096 : 262144;
#elif BP_VECTOR
        limit = 262144;
#else
        limit = 4096;
#endif
    }
    return limit;
}

/* How far beyond bp_small_work_limit the own loops take a layer's product whose
 * store carries an epilogue (fused_product in _blas.pxd): X.W with the bias and
 * activation, delta.W^T with the derivative of the layer below and its bias gradient.
 * Such a product saves the separate pass over its output that BLAS's route makes
 * after the call. With AVX-512, where OpenBLAS's small kernels take plain products
 * above 4096 multiply-adds, benches/fused_gemm.py found the fused loops ahead on
 * products of 16, 24 or 32 columns up to 2^18 multiply-adds (own / BLAS route
 * 0.44-0.94, two rows level at 1.02 and 1.03), except delta.W^T at 8 rows or fewer
 * (1.5-3.8), and behind or level at 8 columns (1.0-1.6 in float32), 10 (tails as dot
 * products: 1.19-1.86) and 64 (0.84-1.23): _blas.pxd holds the rows' and columns'
 * conditions. A 2-16-16-1 step (W1) went from 4.74 to 4.17 us. Returns 0 where there
 * is no such extension: without AVX-512 the plain rule decides alone (its limit is
 * 2^18, halved for delta.W^T), and on the portable path the plain loops do not win. */
static long bp_fused_work_limit(void) {
    static long limit = -1;
    if (limit < 0) {
#if BP_VECTOR && defined(__x86_64__)
        limit = __builtin_cpu_supports("avx512f") ? 262144 : 0;
#else
        limit = 0;
#endif
    }
    return limit;
}

#include "_guard.h"
#include "_pool.h"

#if defined(__clang__)
#define BP_COMPILER "clang " __clang_version__
#elif defined(__GNUC__)
#define BP_COMPILER "gcc " __VERSION__
#elif defined(_MSC_VER)
#define BP_STR2(x) #x
#define BP_STR(x) BP_STR2(x)
#define BP_COMPILER "msvc " BP_STR(_MSC_VER)
#else
#define BP_COMPILER "unknown"
#endif

#define BP_KERNEL_POINTERS(S)                                                          \
    bp_bias_activation_##S, bp_delta_##S, bp_all_finite_##S, bp_transpose_##S,         \
    bp_sgd_##S, bp_outer_sgd_##S, bp_adam_##S, bp_small_gemm_##S,                      \
    bp_small_dense_forward_##S, bp_small_delta_back_##S, bp_unit_mse_##S,              \
    bp_abs_sum_##S, bp_adam_shared_##S, bp_sgd_shared_##S, bp_exp_nonpositive_##S,     \
    bp_softplus_neg_abs_##S, bp_sigmoid_array_##S

static const bp_kernel_table bp_table = {
    BP_KERNEL_API_VERSION,
    (int) sizeof(bp_kernel_table),
    BP_VECTOR ? "vector" : "portable",
    BP_CLONE_LIST,
    BP_COMPILER,
    bp_small_work_limit,
    bp_fused_work_limit,
    bp_pool_helper_chunks,
    bp_pool_helper_on_turn,
    BP_KERNEL_POINTERS(f32),
    BP_KERNEL_POINTERS(f64),
};

const bp_kernel_table *bp_kernels_get(void) {
    return &bp_table;
}

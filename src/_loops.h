/* Element-wise loops of the dense core, compiled once per instruction set.
 *
 * Every function here is a plain loop over contiguous buffers that GCC vectorises;
 * `target_clones` builds it for AVX-512, AVX2 and baseline x86-64 and picks the
 * best at load time, so a portable wheel (-O3, no -march) still runs wide vectors.
 * The loops are written once in _elementwise_impl.h and instantiated for float and
 * double below. They own nothing, allocate nothing and never touch Python.
 * Pointers documented as "may be NULL" mark optional outputs.
 */
#ifndef BPCORE_LOOPS_H
#define BPCORE_LOOPS_H

#include <math.h>
#include <string.h>

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && !defined(BPCORE_NO_CLONES)
#define BP_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define BP_CLONES
#endif

#if defined(__GNUC__)
#define BP_INLINE __attribute__((always_inline))
#else
#define BP_INLINE
#endif

/* entries of the scratch buffer bp_small_gemm takes (see _small_gemm_impl.h) */
#define BP_SMALL_SCRATCH 4096

/* The most multiply-adds a product may have for bp_small_gemm to compute it instead
 * of BLAS: the crossover measured by benches/small_gemm.py. With AVX2 (OpenBLAS's
 * Haswell kernels, which pay about 1 us per call here), the own loops (3 x 4 blocks)
 * win X.W and X^T.delta up to 2^19 multiply-adds and delta.W^T (which copies W^T
 * first) up to 2^17: the limit is 2^18, halved for delta.W^T (small_product in
 * _blas.pxd). Where AVX-512 is
 * present, OpenBLAS runs 64-byte vectors and small-matrix kernels with little fixed
 * cost, and beat earlier 32-byte loops of ours on a 2-16-16-1 step (5.5 against
 * 6.9 us): there the own loops keep only products of at most 4096 multiply-adds
 * (a batch-1 step of a 64-wide layer), where BLAS's fixed cost dominates anyway.
 * Decided once per process, by the CPU, not by timing: the same machine always
 * takes the same path (and gets the same bits). */
static inline long bp_small_work_limit(void) {
    static long limit = 0;
    if (limit == 0) {
#if defined(__GNUC__) && defined(__x86_64__)
        limit = __builtin_cpu_supports("avx512f") ? 4096 : 262144;
#else
        limit = 262144;
#endif
    }
    return limit;
}

/* epilogues of bp_small_gemm (see _small_gemm_impl.h) */
enum { BP_EP_FORWARD = 1, BP_EP_DELTA = 2 };

/* activation codes: the registry in bpcore/nn/layers.py maps names to these */
enum {
    BP_IDENTITY = 0, BP_SIGMOID = 1, BP_TANH = 2, BP_RELU = 3, BP_LEAKY_RELU = 4,
    BP_SCALED_SIGMOID = 5
};

#define T float
#define ITYPE int
#define NAME(name) name##_f32
#define BP_DOUBLE 0
#define SQRT sqrtf
#define BP_LANES 8
#include "_elementwise_impl.h"
#include "_small_gemm_impl.h"
#include "_output_loss_impl.h"
#undef BP_GEMM_COLUMNS
#undef BP_GEMM_ROW_COLUMNS
#undef BP_ROWS
#undef BP_VL
#undef T
#undef ITYPE
#undef NAME
#undef BP_DOUBLE
#undef SQRT
#undef BP_LANES
#undef BP_BY_WIDTH

#define T double
#define ITYPE long long
#define NAME(name) name##_f64
#define BP_DOUBLE 1
#define SQRT sqrt
#define BP_LANES 4
#include "_elementwise_impl.h"
#include "_small_gemm_impl.h"
#include "_output_loss_impl.h"
#undef BP_GEMM_COLUMNS
#undef BP_GEMM_ROW_COLUMNS
#undef BP_ROWS
#undef BP_VL
#undef T
#undef ITYPE
#undef NAME
#undef BP_DOUBLE
#undef SQRT
#undef BP_LANES
#undef BP_BY_WIDTH

#endif

/* Element-wise loops of the dense core, compiled once per instruction set.
 *
 * Every function here is a plain loop over contiguous buffers that GCC vectorises;
 * `target_clones` builds it for AVX-512, AVX2 and baseline x86-64 and picks the
 * best at load time, so a portable wheel (-O3, no -march) still runs wide vectors.
 * The loops are written once in _loops_impl.h and instantiated for float and
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

/* activation codes: the registry in bpcore/layers.py maps names to these */
enum {
    BP_IDENTITY = 0, BP_SIGMOID = 1, BP_TANH = 2, BP_RELU = 3, BP_LEAKY_RELU = 4,
    BP_SCALED_SIGMOID = 5
};

#define T float
#define NAME(name) name##_f32
#define EXP expf
#define TANH tanhf
#define SQRT sqrtf
#include "_loops_impl.h"
#include "_small_gemm_impl.h"
#undef T
#undef NAME
#undef EXP
#undef TANH
#undef SQRT
#undef BP_BY_WIDTH

#define T double
#define NAME(name) name##_f64
#define EXP exp
#define TANH tanh
#define SQRT sqrt
#include "_loops_impl.h"
#include "_small_gemm_impl.h"
#undef T
#undef NAME
#undef EXP
#undef TANH
#undef SQRT
#undef BP_BY_WIDTH

#endif

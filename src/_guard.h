/* The fused step's divergence guard: sums of magnitudes over the flat buffers.
 *
 * fit runs each fused step with a guard (src/_engine.pyx, fused_step): after the
 * backward pass and before the update it sums |x| over the gradients, the parameters
 * and the optimizer's state. A sum is finite exactly when every entry is (a NaN or an
 * infinity makes it NaN or infinite), and it bounds every entry's magnitude, so the
 * engine can tell from four numbers whether a gradient is not finite and whether the
 * update could overflow, without a copy of anything: when either may be so, it takes
 * no update at all.
 *
 * One pass over each buffer with four vector accumulators (as bp_all_finite in
 * _elementwise_impl.h), summed in blocks of 1024 entries whose sums are added in
 * double, so that rounding costs the bound at most a few parts in a million.
 * Own nothing, allocate nothing, never touch Python. Included by _kernels.c, which
 * defines BP_VECTOR and BP_CLONES; the portable path sums each block in order.
 */
#ifndef BPCORE_GUARD_H
#define BPCORE_GUARD_H

#include <math.h>
#include <stdint.h>


/* The sum of |x[i]| over n entries, in double: finite exactly when every entry is
 * finite (+inf too when a block's sum overflows T, which only entries near T's
 * largest value can do). With `negative` not NULL, *negative is set to the sum of
 * |x[i]| - x[i] (2|x[i]| for each negative entry, 0 for the others): above 0
 * exactly when some entry is below 0, since terms that are not negative never cancel.
 * T: the element type, U: the unsigned integer of its width (the sign bit masked). */
#if BP_VECTOR
#define BP_GUARD_ABS_SUM(NAME, T, U)                                                      \
BP_CLONES static double NAME(long n, const T *restrict x, double *negative) {      \
    typedef T V __attribute__((vector_size(32), aligned(sizeof(T)), may_alias));         \
    typedef U W __attribute__((vector_size(32)));                                        \
    const long VL = (long) (32 / sizeof(T));                                             \
    const W mask = (W) {0} + (U) ~((U) 1 << (8 * sizeof(T) - 1));                        \
    double total = 0, below = 0;                                                         \
    for (long start = 0; start < n; start += 1024) {                                     \
        const long end = n - start > 1024 ? start + 1024 : n;                            \
        V a0 = (V) {0}, a1 = a0, a2 = a0, a3 = a0, s0 = a0, s1 = a0;                      \
        long i = start;                                                                  \
        if (negative) {                                                                  \
            for (; i + 2 * VL <= end; i += 2 * VL) {                                     \
                const V v0 = *(const V *) (x + i), v1 = *(const V *) (x + i + VL);       \
                const V m0 = (V) ((W) v0 & mask), m1 = (V) ((W) v1 & mask);              \
                a0 += m0;                                                                \
                a1 += m1;                                                                \
                s0 += m0 - v0;                                                           \
                s1 += m1 - v1;                                                           \
            }                                                                            \
        } else {                                                                         \
            for (; i + 4 * VL <= end; i += 4 * VL) {                                     \
                const V v0 = *(const V *) (x + i), v1 = *(const V *) (x + i + VL);       \
                const V v2 = *(const V *) (x + i + 2 * VL);                              \
                const V v3 = *(const V *) (x + i + 3 * VL);                              \
                a0 += (V) ((W) v0 & mask);                                               \
                a1 += (V) ((W) v1 & mask);                                               \
                a2 += (V) ((W) v2 & mask);                                               \
                a3 += (V) ((W) v3 & mask);                                               \
            }                                                                            \
        }                                                                                \
        a0 += (a1 + a2) + a3;                                                            \
        s0 += s1;                                                                        \
        T sum = 0, neg = 0;                                                              \
        for (; i < end; i++) {                                                           \
            const T a = x[i] < 0 ? -x[i] : x[i];                                         \
            sum += a;                                                                    \
            neg += a - x[i];                                                             \
        }                                                                                \
        for (long q = 0; q < VL; q++) {                                                  \
            sum += a0[q];                                                                \
            neg += s0[q];                                                                \
        }                                                                                \
        total += (double) sum;                                                           \
        below += (double) neg;                                                           \
    }                                                                                    \
    if (negative) *negative = below;                                                     \
    return total;                                                                        \
}

#else
#define BP_GUARD_ABS_SUM(NAME, T, U)                                                      \
static double NAME(long n, const T *restrict x, double *negative) {                      \
    double total = 0, below = 0;                                                         \
    for (long start = 0; start < n; start += 1024) {                                     \
        const long end = n - start > 1024 ? start + 1024 : n;                            \
        T sum = 0, neg = 0;                                                              \
        for (long i = start; i < end; i++) {                                             \
            const T a = x[i] < 0 ? -x[i] : x[i];                                         \
            sum += a;                                                                    \
            neg += a - x[i];                                                             \
        }                                                                                \
        total += (double) sum;                                                           \
        below += (double) neg;                                                           \
    }                                                                                    \
    if (negative) *negative = below;                                                     \
    return total;                                                                        \
}
#endif

BP_GUARD_ABS_SUM(bp_abs_sum_f32, float, uint32_t)
BP_GUARD_ABS_SUM(bp_abs_sum_f64, double, uint64_t)
#undef BP_GUARD_ABS_SUM

#endif

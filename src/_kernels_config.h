/* The build configuration of bpcore's C kernels, shared by the files that compile
 * them (_kernels.c, _kernels_f32.c, _kernels_f64.c); see _kernels.c. Private to
 * them: other C code includes _kernels.h.
 */
#ifndef BPCORE_KERNELS_CONFIG_H
#define BPCORE_KERNELS_CONFIG_H

/* sched_getcpu and CPU affinity for the helper thread (_pool.h): before any header */
#if defined(__linux__) && !defined(_GNU_SOURCE)
#define _GNU_SOURCE
#endif
#include <math.h>
#include <string.h>

#include "_kernels.h"

#if !(defined(BP_PORTABLE) && BP_PORTABLE) && defined(__GNUC__) \
    && (defined(__x86_64__) || defined(__aarch64__))
#define BP_VECTOR 1
#else
#define BP_VECTOR 0
#endif

/* target_clones: GCC on x86-64 only (clang's support differs by version; it gets the
 * vector code for its default target) */
#if BP_VECTOR && defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) \
    && !defined(BPCORE_NO_CLONES)
#define BP_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#define BP_CLONE_LIST "x86-64-v4,x86-64-v3,default"
#else
#define BP_CLONES
#define BP_CLONE_LIST ""
#endif

#if defined(__GNUC__)
#define BP_INLINE __attribute__((always_inline))
#else
#define BP_INLINE
#endif

/* a kernel that the table in _kernels.c points to: visible across the kernels' files,
 * not outside the extension */
#if defined(__GNUC__)
#define BP_KERNEL __attribute__((visibility("hidden")))
#else
#define BP_KERNEL
#endif

#endif

/* The C kernels of src/ on fixed inputs, written out bit for bit.
 *
 * Built natively and cross-built for aarch64 by tests/c/run_cross.sh, which runs the
 * aarch64 build under qemu-user and hands both outputs to tests/c/compare.py: that
 * checks the native results against NumPy references (so that this program calls
 * each kernel as documented) and the two architectures against each other.
 *
 * Every kernel the headers expose is run, for float and double, on inputs from a
 * fixed pseudo-random sequence (plus NaN, infinities, signed zeros and subnormals
 * where a kernel documents what it does with them). The output is text:
 *
 *     case <kind> <dtype> key=value ...      the kernel and its scalar arguments
 *     array <name> <f32|f64|i32> <n> <hex>...  an input or output, as raw bits
 *
 * Floating-point scalars are printed with %a, so they are read back exactly.
 * Usage: kernel_check [output file]   (standard output by default)
 */
/* the kernels' prototypes and table, and the guard's and the pool's kernels, which
 * src/_kernels.c compiles itself (the element-wise and product kernels come from
 * src/_kernels_f32.c and src/_kernels_f64.c, built beside this file) */
#include "_kernels.c"
#define bp_unit_mse_fits_f32(k) bp_unit_mse_fits((k), (long) sizeof(float))
#define bp_unit_mse_fits_f64(k) bp_unit_mse_fits((k), (long) sizeof(double))

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static FILE *out;

/* xorshift64*: the same sequence on every platform */
static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;

static double uniform(double lo, double hi) {
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    const uint64_t r = rng_state * 0x2545f4914f6cdd1dULL;
    return lo + (hi - lo) * ((double) (r >> 11) * 0x1p-53);
}

static void *alloc(long n, size_t size) {
    void *p = calloc((size_t) (n > 0 ? n : 1), size);
    if (!p) {
        fprintf(stderr, "kernel_check: out of memory\n");
        exit(2);
    }
    return p;
}

static void dump_bits(const char *name, const char *dtype, const void *x, long n,
                      size_t size) {
    fprintf(out, "array %s %s %ld", name, dtype, n);
    for (long i = 0; i < n; i++) {
        if (size == 4) {
            uint32_t b;
            memcpy(&b, (const char *) x + 4 * i, 4);
            fprintf(out, " %08x", (unsigned) b);
        } else {
            uint64_t b;
            memcpy(&b, (const char *) x + 8 * i, 8);
            fprintf(out, " %016llx", (unsigned long long) b);
        }
    }
    fputc('\n', out);
}

static void dump_int(const char *name, int value) {
    int32_t v = value;
    dump_bits(name, "i32", &v, 1, 4);
}

static void dump_double(const char *name, double value) {
    dump_bits(name, "f64", &value, 1, 8);
}

#define T float
#define SUF f32
#define DTYPE "f32"
#define K(name) name##_f32
#define CHUNK (BP_POOL_CHUNK_BYTES / 4)
#include "kernel_check_impl.h"
#undef T
#undef SUF
#undef DTYPE
#undef K
#undef CHUNK

#define T double
#define SUF f64
#define DTYPE "f64"
#define K(name) name##_f64
#define CHUNK (BP_POOL_CHUNK_BYTES / 8)
#include "kernel_check_impl.h"
#undef T
#undef SUF
#undef DTYPE
#undef K
#undef CHUNK

int main(int argc, char **argv) {
    out = argc > 1 ? fopen(argv[1], "w") : stdout;
    if (!out) {
        perror(argv[1]);
        return 2;
    }
    run_all_f32();
    run_all_f64();
    /* how many chunks the helper thread took depends on timing: not written out */
    (void) bp_pool_helper_chunks();
    (void) bp_pool_helper_on_turn();
    return fclose(out) == 0 ? 0 : 2;
}

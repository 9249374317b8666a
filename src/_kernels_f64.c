/* bpcore's C kernels for double (see _kernels.c): the element-wise loops, the small
 * products and the fused output layer, compiled apart from the other element type so
 * that a parallel build compiles both at once. */
#include "_kernels_config.h"

#define T double
#define ITYPE long long
#define NAME(name) name##_f64
#define BP_DOUBLE 1
#define SQRT sqrt
#define BP_LANES 4
#include "_elementwise_impl.h"
#if BP_VECTOR
#include "_small_gemm_impl.h"
#include "_output_loss_impl.h"
#else
#include "_portable_impl.h"
#endif

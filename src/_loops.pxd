# Cython's view of the C kernels (_kernels.h, reached through _loops.h): the
# element-wise loops and the small products, with one fused entry point each.
# All nogil, no exceptions; pointers marked "may be NULL" in the implementation
# headers accept NULL. A module that cimports any of them calls import_kernels() once
# at its top, before any kernel runs.
from cython cimport floating

cdef extern from "_loops.h":
    int bp_import_kernels() except -1

cdef extern from "_loops.h" nogil:
    void bp_bias_activation_f32(long n, long m, float* A, const float* b,
                                const float* scale, float* Z, float* D, float* G,
                                int kind, float slope)
    void bp_bias_activation_f64(long n, long m, double* A, const double* b,
                                const double* scale, double* Z, double* D, double* G,
                                int kind, double slope)
    void bp_delta_f32(long n, long m, const float* upstream, const float* D,
                      const float* G, float* delta, float* db, float* dscale, int overwrite)
    void bp_delta_f64(long n, long m, const double* upstream, const double* D,
                      const double* G, double* delta, double* db, double* dscale,
                      int overwrite)
    void bp_softplus_neg_abs_f32(long n, const float* z, float* out)
    void bp_softplus_neg_abs_f64(long n, const double* z, double* out)
    void bp_sigmoid_array_f32(long n, const float* z, float* out)
    void bp_sigmoid_array_f64(long n, const double* z, double* out)
    void bp_exp_nonpositive_f32(long n, const float* x, float* out)
    void bp_exp_nonpositive_f64(long n, const double* x, double* out)
    int bp_all_finite_f32(long n, const float* x)
    int bp_all_finite_f64(long n, const double* x)
    void bp_transpose_f32(long k, long m, const float* B, float* Bt)
    void bp_transpose_f64(long k, long m, const double* B, double* Bt)
    void bp_sgd_f32(long n, float* params, const float* grads, float* velocity,
                    float lr, float momentum, float weight_decay, int nesterov)
    void bp_sgd_f64(long n, double* params, const double* grads, double* velocity,
                    double lr, double momentum, double weight_decay, int nesterov)
    enum: BP_OUTER_ROWS
    enum: BP_IDENTITY, BP_RELU, BP_LEAKY_RELU, BP_SCALED_SIGMOID, BP_SMALL_SCRATCH
    void bp_small_dense_forward_f32(long m, long n, long k, const float* A, const float* B,
                                    const float* bias, float* C, float* D, int act,
                                    float slope, float* Bt)
    void bp_small_dense_forward_f64(long m, long n, long k, const double* A,
                                    const double* B, const double* bias, double* C,
                                    double* D, int act, double slope, double* Bt)
    void bp_small_delta_back_f32(long m, long n, long k, const float* A, const float* B,
                                 const float* M, float* C, float* colsum,
                                 int relu_output, float* Bt)
    void bp_small_delta_back_f64(long m, long n, long k, const double* A,
                                 const double* B, const double* M, double* C,
                                 double* colsum, int relu_output, double* Bt)
    double bp_unit_mse_f32(long m, long k, const float* A, const float* w,
                           const float* b, const float* target, double scale, float* out,
                           float* grad, const float* M, int relu_output, float* delta,
                           float* colsum, float* dW, float* db)
    double bp_unit_mse_f64(long m, long k, const double* A, const double* w,
                           const double* b, const double* target, double scale,
                           double* out, double* grad, const double* M, int relu_output,
                           double* delta, double* colsum, double* dW, double* db)
    int bp_unit_mse_fits_f32(long k)
    int bp_unit_mse_fits_f64(long k)
    double bp_abs_sum_f32(long n, const float* x, double* negative)
    double bp_abs_sum_f64(long n, const double* x, double* negative)
    void bp_outer_sgd_f32(long k, long m, long n, const float* X, long ldx,
                          const float* delta, long ldd, float* W, float* velocity,
                          float lr, float momentum, float weight_decay, int nesterov)
    void bp_outer_sgd_f64(long k, long m, long n, const double* X, long ldx,
                          const double* delta, long ldd, double* W, double* velocity,
                          double lr, double momentum, double weight_decay, int nesterov)
    void bp_adam_f32(long n, float* params, const float* grads, float* exp_avg,
                     float* exp_avg_sq, float step_size, float beta1, float beta2,
                     float eps, float l2, float decay, float inv_root_bc2)
    void bp_adam_f64(long n, double* params, const double* grads, double* exp_avg,
                     double* exp_avg_sq, double step_size, double beta1, double beta2,
                     double eps, double l2, double decay, double inv_root_bc2)


cdef inline void exp_nonpositive(long n, const floating* x, floating* out) noexcept nogil:
    if floating is float:
        bp_exp_nonpositive_f32(n, x, out)
    else:
        bp_exp_nonpositive_f64(n, x, out)


cdef inline void softplus_neg_abs(long n, const floating* z, floating* out) noexcept nogil:
    if floating is float:
        bp_softplus_neg_abs_f32(n, z, out)
    else:
        bp_softplus_neg_abs_f64(n, z, out)


cdef inline void sigmoid_array(long n, const floating* z, floating* out) noexcept nogil:
    if floating is float:
        bp_sigmoid_array_f32(n, z, out)
    else:
        bp_sigmoid_array_f64(n, z, out)


cdef inline int import_kernels() except -1:
    """Load the kernels' table from bpcore._kernels (at a module's import)."""
    return bp_import_kernels()


cdef inline void bias_activation(long n, long m, floating* A, const floating* b,
                                 const floating* scale, floating* Z, floating* D,
                                 floating* G, int kind, double slope) noexcept nogil:
    if floating is float:
        bp_bias_activation_f32(n, m, A, b, scale, Z, D, G, kind, <float> slope)
    else:
        bp_bias_activation_f64(n, m, A, b, scale, Z, D, G, kind, slope)


cdef inline void delta_and_bias_grad(long n, long m, const floating* upstream,
                                     const floating* D, const floating* G,
                                     floating* delta, floating* db, floating* dscale,
                                     bint overwrite) noexcept nogil:
    if floating is float:
        bp_delta_f32(n, m, upstream, D, G, delta, db, dscale, overwrite)
    else:
        bp_delta_f64(n, m, upstream, D, G, delta, db, dscale, overwrite)


cdef inline void transpose(long k, long m, const floating* B, floating* Bt) noexcept nogil:
    if floating is float:
        bp_transpose_f32(k, m, B, Bt)
    else:
        bp_transpose_f64(k, m, B, Bt)


cdef inline void sgd_update(long n, floating* params, const floating* grads,
                            floating* velocity, double lr, double momentum,
                            double weight_decay, bint nesterov) noexcept nogil:
    if floating is float:
        bp_sgd_f32(n, params, grads, velocity, <float> lr, <float> momentum,
                   <float> weight_decay, nesterov)
    else:
        bp_sgd_f64(n, params, grads, velocity, lr, momentum, weight_decay, nesterov)


cdef inline void adam_update(long n, floating* params, const floating* grads,
                             floating* exp_avg, floating* exp_avg_sq, double step_size,
                             double beta1, double beta2, double eps, double l2,
                             double decay, double inv_root_bc2) noexcept nogil:
    if floating is float:
        bp_adam_f32(n, params, grads, exp_avg, exp_avg_sq, <float> step_size,
                    <float> beta1, <float> beta2, <float> eps, <float> l2, <float> decay,
                    <float> inv_root_bc2)
    else:
        bp_adam_f64(n, params, grads, exp_avg, exp_avg_sq, step_size, beta1, beta2, eps,
                    l2, decay, inv_root_bc2)


cdef inline bint all_finite(const floating* x, long count) noexcept nogil:
    """True when none of x[0:count] is NaN or infinite (vectorised)."""
    if floating is float:
        return bp_all_finite_f32(count, x)
    else:
        return bp_all_finite_f64(count, x)


cdef inline void outer_sgd_update(long k, long m, long n, const floating* X,
                                  const floating* delta, floating* W, floating* velocity,
                                  double lr, double momentum, double weight_decay,
                                  bint nesterov) noexcept nogil:
    """SGD on W (m x n) with the gradient X^T.delta of k <= BP_OUTER_ROWS rows (X is
    k x m, delta k x n, both contiguous), formed entry by entry: dW is not written."""
    if floating is float:
        bp_outer_sgd_f32(k, m, n, X, m, delta, n, W, velocity, <float> lr,
                         <float> momentum, <float> weight_decay, nesterov)
    else:
        bp_outer_sgd_f64(k, m, n, X, m, delta, n, W, velocity, lr, momentum,
                         weight_decay, nesterov)


cdef inline void small_dense_forward(long n, long n_out, long n_in, const floating* X,
                                     const floating* W, const floating* b, floating* A,
                                     floating* D, int kind, double slope) noexcept nogil:
    """A = f(X.W + b) and D = f'(X.W + b) (D may be NULL) for kind relu, leaky relu or
    identity, by the small-product loops with the activation in their store; only
    where _blas.own_can_take(False, False, n, n_out, n_in) holds (the engine takes it
    where _blas.fused_product(False, n, n_out, n_in) does)."""
    cdef floating scratch[BP_SMALL_SCRATCH]
    if floating is float:
        bp_small_dense_forward_f32(n, n_out, n_in, X, W, b, A, D, kind, <float> slope,
                                   scratch)
    else:
        bp_small_dense_forward_f64(n, n_out, n_in, X, W, b, A, D, kind, slope, scratch)


cdef inline void small_delta_back(long n, long n_in, long n_out, const floating* delta,
                                  const floating* W, const floating* D_below,
                                  floating* delta_below, floating* db_below,
                                  bint relu_output) noexcept nogil:
    """delta_below = (delta . W^T) * D_below and db_below = its column sums
    (overwritten): dL/dX of a layer (W is n_in x n_out) carried through the
    derivative cache of the layer below, by the small-product loops; only where
    _blas.own_can_take(False, True, n, n_in, n_out) holds (the engine takes it where
    _blas.fused_product(True, n, n_in, n_out) does). relu_output: D_below is
    instead the output of the ReLU layer below, whose derivative is 1 where it is
    positive and 0 elsewhere (its cache need not be written)."""
    cdef floating scratch[BP_SMALL_SCRATCH]
    if floating is float:
        bp_small_delta_back_f32(n, n_in, n_out, delta, W, D_below, delta_below, db_below,
                                relu_output, scratch)
    else:
        bp_small_delta_back_f64(n, n_in, n_out, delta, W, D_below, delta_below, db_below,
                                relu_output, scratch)


cdef inline bint unit_mse_fits(long k, bint single) noexcept nogil:
    """Whether unit_mse takes a one-unit output layer of k inputs (float32 when
    single): k a multiple of the vector width, at most 4 vectors (16 doubles, 32
    floats)."""
    if single:
        return bp_unit_mse_fits_f32(k)
    return bp_unit_mse_fits_f64(k)


cdef inline double unit_mse(long n, long k, const floating* A, const floating* w,
                            const floating* b, const floating* target, double scale,
                            floating* out, floating* grad, const floating* M,
                            bint relu_output, floating* delta, floating* colsum,
                            floating* dW, floating* db) noexcept nogil:
    """A one-unit identity output layer under the unweighted squared error, forward
    and backward in one call (two passes over its input A, n x k): its output, the
    loss (returned),
    dL/doutput in grad, its gradients dW and db, and the delta of the layer below with
    that layer's bias gradient colsum, through M (its derivative cache, or with
    relu_output its ReLU output). Only where unit_mse_fits(k) holds (see
    bp_unit_mse in _output_loss_impl.h)."""
    if floating is float:
        return bp_unit_mse_f32(n, k, A, w, b, target, scale, out, grad, M, relu_output,
                               delta, colsum, dW, db)
    else:
        return bp_unit_mse_f64(n, k, A, w, b, target, scale, out, grad, M, relu_output,
                               delta, colsum, dW, db)

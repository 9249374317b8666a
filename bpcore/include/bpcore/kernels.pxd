# bpcore's C-level API for other Cython extensions: the stable kernels.
#
#     from bpcore.kernels cimport adam_f64, dense_forward_f64, ACT_TANH
#
# Every function here runs without the GIL, allocates nothing, cannot raise, and
# trusts its arguments: buffers are contiguous, of the lengths stated, and do not
# overlap unless stated. The declarations in this file are stable from 0.1 on (a
# change of one is a breaking change, named in the CHANGELOG); anything else that
# bpcore compiles (its modules starting with an underscore, and the declarations of
# src/) is internal. The functions are found at import time through the module's
# __pyx_capi__, as SciPy's cython_blas is: an extension that cimports them needs no
# compiler flags of bpcore's and does not link against it; import bpcore.kernels
# before use is done by Cython itself. Build with bpcore.get_include() on Cython's
# include path (see docs/interop.md).

# activation codes of dense_forward (the numbering of bpcore.nn.layers' registry)
cdef enum:
    ACT_IDENTITY = 0
    ACT_SIGMOID = 1
    ACT_TANH = 2
    ACT_RELU = 3

# One Adam step (PyTorch's rule, bp.Adam's arithmetic: the same bits) over n entries
# in place: params, exp_avg and exp_avg_sq updated from grads. `step` is the step
# being taken, counted from 1 (bias corrections 1 - beta ** step). weight_decay is
# the L2 term added to the gradient, as bp.Adam's.
cdef void adam_f32(long n, float* params, const float* grads, float* exp_avg,
                   float* exp_avg_sq, double lr, double beta1, double beta2, double eps,
                   double weight_decay, long step) noexcept nogil
cdef void adam_f64(long n, double* params, const double* grads, double* exp_avg,
                   double* exp_avg_sq, double lr, double beta1, double beta2, double eps,
                   double weight_decay, long step) noexcept nogil

# One SGD step in place, bp.SGD's arithmetic: velocity may be NULL when momentum is 0.
cdef void sgd_f32(long n, float* params, const float* grads, float* velocity, double lr,
                  double momentum, double weight_decay, bint nesterov) noexcept nogil
cdef void sgd_f64(long n, double* params, const double* grads, double* velocity,
                  double lr, double momentum, double weight_decay,
                  bint nesterov) noexcept nogil

# A dense layer's forward, as bp.Dense(n_in, n_out, activation).forward computes it:
# A (n x n_out) = f(X (n x n_in) . W (n_in x n_out) + b (n_out)), all row-major; D
# (n x n_out, or NULL) receives f'(z). A must not overlap X, W or b.
cdef void dense_forward_f32(long n, long n_in, long n_out, const float* X, const float* W,
                            const float* b, float* A, float* D, int activation) noexcept nogil
cdef void dense_forward_f64(long n, long n_in, long n_out, const double* X,
                            const double* W, const double* b, double* A, double* D,
                            int activation) noexcept nogil

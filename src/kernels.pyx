# The stable C-level API of bpcore (declared, and documented, in bpcore/kernels.pxd):
# thin nogil entry points over the internal kernels, exported to other Cython
# extensions through __pyx_capi__. Nothing here is called from bpcore's own Python.
from libc.math cimport pow, sqrt

from _blas cimport gemm
from _loops cimport adam_update, bias_activation, import_kernels, sgd_update

import_kernels()


cdef void adam_f32(long n, float* params, const float* grads, float* exp_avg,
                   float* exp_avg_sq, double lr, double beta1, double beta2, double eps,
                   double weight_decay, long step) noexcept nogil:
    adam_update(n, params, grads, exp_avg, exp_avg_sq,
                lr / (1.0 - pow(beta1, <double> step)), beta1, beta2, eps, weight_decay,
                1.0, 1.0 / sqrt(1.0 - pow(beta2, <double> step)))


cdef void adam_f64(long n, double* params, const double* grads, double* exp_avg,
                   double* exp_avg_sq, double lr, double beta1, double beta2, double eps,
                   double weight_decay, long step) noexcept nogil:
    adam_update(n, params, grads, exp_avg, exp_avg_sq,
                lr / (1.0 - pow(beta1, <double> step)), beta1, beta2, eps, weight_decay,
                1.0, 1.0 / sqrt(1.0 - pow(beta2, <double> step)))


cdef void sgd_f32(long n, float* params, const float* grads, float* velocity, double lr,
                  double momentum, double weight_decay, bint nesterov) noexcept nogil:
    sgd_update(n, params, grads, velocity, lr, momentum, weight_decay, nesterov)


cdef void sgd_f64(long n, double* params, const double* grads, double* velocity,
                  double lr, double momentum, double weight_decay,
                  bint nesterov) noexcept nogil:
    sgd_update(n, params, grads, velocity, lr, momentum, weight_decay, nesterov)


cdef void dense_forward_f32(long n, long n_in, long n_out, const float* X, const float* W,
                            const float* b, float* A, float* D,
                            int activation) noexcept nogil:
    gemm(False, False, <int> n, <int> n_out, <int> n_in, <float> 1.0, X, <int> n_in, W,
         <int> n_out, <float> 0.0, A, <int> n_out)
    bias_activation(n, n_out, A, b, NULL, NULL, D, NULL, activation, 0.0)


cdef void dense_forward_f64(long n, long n_in, long n_out, const double* X,
                            const double* W, const double* b, double* A, double* D,
                            int activation) noexcept nogil:
    gemm(False, False, <int> n, <int> n_out, <int> n_in, 1.0, X, <int> n_in, W,
         <int> n_out, 0.0, A, <int> n_out)
    bias_activation(n, n_out, A, b, NULL, NULL, D, NULL, activation, 0.0)

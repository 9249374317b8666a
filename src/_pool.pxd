# bpcore's helper thread for element-wise passes (_pool.h, in the kernels' table of
# _loops.h): the Adam and SGD updates shared between the calling thread and the
# helper, with the same results as adam_update and sgd_update. Its users call
# _loops.import_kernels() at import.
from cython cimport floating

cdef extern from "_loops.h" nogil:
    void bp_adam_shared_f32(long n, float* params, const float* grads, float* exp_avg,
                            float* exp_avg_sq, float step_size, float beta1, float beta2,
                            float eps, float l2, float decay, float inv_root_bc2)
    void bp_adam_shared_f64(long n, double* params, const double* grads,
                            double* exp_avg, double* exp_avg_sq, double step_size,
                            double beta1, double beta2, double eps, double l2,
                            double decay, double inv_root_bc2)
    void bp_sgd_shared_f32(long n, float* params, const float* grads, float* velocity,
                           float lr, float momentum, float weight_decay, int nesterov)
    void bp_sgd_shared_f64(long n, double* params, const double* grads, double* velocity,
                           double lr, double momentum, double weight_decay, int nesterov)
    long bp_pool_helper_chunks()
    int bp_pool_helper_on_turn()


cdef inline void adam_update_shared(long n, floating* params, const floating* grads,
                                    floating* exp_avg, floating* exp_avg_sq,
                                    double step_size, double beta1, double beta2,
                                    double eps, double l2, double decay,
                                    double inv_root_bc2) noexcept nogil:
    """adam_update (_loops.pxd) on this thread and bpcore's helper thread."""
    if floating is float:
        bp_adam_shared_f32(n, params, grads, exp_avg, exp_avg_sq, <float> step_size,
                           <float> beta1, <float> beta2, <float> eps, <float> l2,
                           <float> decay, <float> inv_root_bc2)
    else:
        bp_adam_shared_f64(n, params, grads, exp_avg, exp_avg_sq, step_size, beta1,
                           beta2, eps, l2, decay, inv_root_bc2)


cdef inline void sgd_update_shared(long n, floating* params, const floating* grads,
                                   floating* velocity, double lr, double momentum,
                                   double weight_decay, bint nesterov) noexcept nogil:
    """sgd_update (_loops.pxd) on this thread and bpcore's helper thread."""
    if floating is float:
        bp_sgd_shared_f32(n, params, grads, velocity, <float> lr, <float> momentum,
                          <float> weight_decay, nesterov)
    else:
        bp_sgd_shared_f64(n, params, grads, velocity, lr, momentum, weight_decay, nesterov)

# Optimizer updates: one fused pass over the flat parameter and gradient buffers.
#
# Owns nothing and allocates nothing: bpcore/optim.py owns the state buffers
# (momentum, Adam moments), checks that every buffer has the parameters' length and
# dtype, and computes the per-step scalars (bias corrections) in double.
# Kernels release the GIL and cannot raise. They never write the gradient: zeroing
# it is the caller's explicit choice (Model.zero_grad).
#
# The rules are PyTorch's (torch.optim.SGD / Adam, dampening 0, amsgrad off):
#   SGD:  g = grad + wd*p;  buf = mu*buf + g;  g = g + mu*buf (nesterov) or buf;
#         p -= lr*g
#   Adam: g = grad + wd*p;  m = b1*m + (1-b1)*g;  v = b2*v + (1-b2)*g^2;
#         p -= lr/bc1 * m / (sqrt(v)/sqrt(bc2) + eps)   with bci = 1 - bi^t
from cython cimport floating
from libc.math cimport sqrt, sqrtf


def sgd(floating[::1] params not None, const floating[::1] grads not None,
        floating[::1] velocity not None, double lr, double momentum,
        double weight_decay, bint nesterov):
    """One SGD step in place. IN: grads. OUT: params, velocity (unused when momentum == 0)."""
    cdef Py_ssize_t i, n = params.shape[0]
    cdef floating g, v
    cdef floating flr = <floating> lr, mu = <floating> momentum
    cdef floating wd = <floating> weight_decay
    with nogil:
        if momentum == 0:
            for i in range(n):
                params[i] -= flr * (grads[i] + wd * params[i])
        else:
            for i in range(n):
                g = grads[i] + wd * params[i]
                v = mu * velocity[i] + g
                velocity[i] = v
                if nesterov:
                    g = g + mu * v
                else:
                    g = v
                params[i] -= flr * g


def adam(floating[::1] params not None, const floating[::1] grads not None,
         floating[::1] exp_avg not None, floating[::1] exp_avg_sq not None,
         double lr, double beta1, double beta2, double eps, double weight_decay,
         double bias_correction1, double bias_correction2):
    """One Adam step in place. IN: grads. OUT: params, exp_avg, exp_avg_sq."""
    cdef Py_ssize_t i, n = params.shape[0]
    cdef floating g, m, v, denom
    cdef floating b1 = <floating> beta1, b2 = <floating> beta2
    cdef floating wd = <floating> weight_decay, fe = <floating> eps
    cdef floating step_size = <floating> (lr / bias_correction1)
    cdef floating root_bc2 = <floating> sqrt(bias_correction2)
    with nogil:
        for i in range(n):
            g = grads[i] + wd * params[i]
            m = b1 * exp_avg[i] + (1 - b1) * g
            v = b2 * exp_avg_sq[i] + (1 - b2) * g * g
            exp_avg[i] = m
            exp_avg_sq[i] = v
            if floating is float:
                denom = sqrtf(v) / root_bc2 + fe
            else:
                denom = sqrt(v) / root_bc2 + fe
            params[i] -= step_size * m / denom


def squared_norm(const floating[::1] values not None):
    """Sum of squares, accumulated in double (no overflow for large float32 values)."""
    cdef Py_ssize_t i, n = values.shape[0]
    cdef double total = 0.0
    with nogil:
        for i in range(n):
            total += <double> values[i] * <double> values[i]
    return total

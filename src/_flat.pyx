# Kernels over the flat parameter and gradient buffers: the optimizer updates, gradient
# clipping, the L2 penalty on weights and the finiteness check, each one pass.
#
# Owns nothing and allocates nothing: bpcore/optim/optimizers.py owns the state buffers
# (momentum, Adam moments, RMSprop averages, Rprop step sizes), checks that every
# buffer has the parameters' length and dtype, and computes the per-step scalars
# (bias corrections, AdamW's decay factor) in double.
# Each kernel checks the lengths of what it is handed all the same (a few integer
# compares, with the GIL held: a ValueError, nothing written), since the memoryviews
# check only dtype and contiguity: no Python call can make a pass run off a buffer.
# Past those checks kernels release the GIL and cannot raise. They never write the gradient: zeroing
# it is the caller's explicit choice (Model.zero_grad). Only clip_value writes it,
# because clipping the gradient is what the caller asked for.
# No argument may alias another (each state buffer is its own array).
# all_finite and l2 allocate nothing either (np.isfinite(x).all() allocates a boolean
# array of x's size per call, which a training step must not do).
#
# The rules are PyTorch's (torch.optim.SGD / Adam / AdamW / RMSprop / Rprop,
# dampening 0, amsgrad off):
#   SGD:  g = grad + wd*p;  buf = mu*buf + g;  g = g + mu*buf (nesterov) or buf;
#         p -= lr*g
#   Adam: g = grad + wd*p;  m = b1*m + (1-b1)*g;  v = b2*v + (1-b2)*g^2;
#         p -= lr/bc1 * m / (sqrt(v)/sqrt(bc2) + eps)   with bci = 1 - bi^t
#   AdamW: p *= 1 - lr*wd (decoupled decay), then Adam with g = grad.
#   SGD, Adam and AdamW run the vectorised loops of _elementwise_impl.h (shared with the
#   fused training step); Adam and AdamW are one loop with the decay placed differently.
#   RMSprop: g = grad + wd*p;  v = a*v + (1-a)*g^2;  centered: c = a*c + (1-a)*g,
#         w = v - c^2 (clamped at 0: rounding may make it negative, torch then gives NaN);
#         d = sqrt(w) + eps;  momentum: buf = mu*buf + g/d, p -= lr*buf;  else p -= lr*g/d
#   Rprop (iRPROP-): s = sign(grad*prev);  step = clamp(step * (eta+ if s > 0,
#         eta- if s < 0, 1 if s == 0), step_min, step_max);  g = 0 where s < 0, else grad;
#         p -= sign(g)*step;  prev = g.  The zeroed g lives only in prev: model.grads
#         is read, never written.
from cython cimport floating
from libc.math cimport sqrt, sqrtf

from _loops cimport adam_update, all_finite as finite, import_kernels, sgd_update

import_kernels()


cdef int same_length(Py_ssize_t n, Py_ssize_t length, str name) except -1:
    """Raise ValueError unless the buffer ``name`` holds n entries (the parameters')."""
    if length != n:
        raise ValueError(f"{name} must hold {n} entries, as params does; got {length}")
    return 0


def sgd(floating[::1] params not None, const floating[::1] grads not None,
        floating[::1] velocity not None, double lr, double momentum,
        double weight_decay, bint nesterov):
    """One SGD step in place. IN: grads. OUT: params, velocity (unused when momentum == 0:
    then it may be empty)."""
    cdef Py_ssize_t n = params.shape[0]
    same_length(n, grads.shape[0], "grads")
    if momentum != 0 or velocity.shape[0] != 0:
        same_length(n, velocity.shape[0], "velocity")
    if n == 0:
        return
    cdef floating* v = &velocity[0] if momentum != 0 else NULL
    with nogil:
        sgd_update(params.shape[0], &params[0], &grads[0], v, lr, momentum, weight_decay,
                   nesterov)


cdef bint four_lengths(floating[::1] params, const floating[::1] grads,
                       floating[::1] first, floating[::1] second) except -1:
    """Adam's and Rprop's check: the gradients and both state buffers hold as many
    entries as the parameters (ValueError otherwise); False when there are none."""
    cdef Py_ssize_t n = params.shape[0]
    same_length(n, grads.shape[0], "grads")
    same_length(n, first.shape[0], "the first state buffer")
    same_length(n, second.shape[0], "the second state buffer")
    return n > 0


def adam(floating[::1] params not None, const floating[::1] grads not None,
         floating[::1] exp_avg not None, floating[::1] exp_avg_sq not None,
         double lr, double beta1, double beta2, double eps, double weight_decay,
         double bias_correction1, double bias_correction2):
    """One Adam step in place. IN: grads. OUT: params, exp_avg, exp_avg_sq."""
    if not four_lengths(params, grads, exp_avg, exp_avg_sq):
        return
    with nogil:
        adam_update(params.shape[0], &params[0], &grads[0], &exp_avg[0], &exp_avg_sq[0],
                    lr / bias_correction1, beta1, beta2, eps, weight_decay, 1.0,
                    1.0 / sqrt(bias_correction2))


def adamw(floating[::1] params not None, const floating[::1] grads not None,
          floating[::1] exp_avg not None, floating[::1] exp_avg_sq not None,
          double lr, double beta1, double beta2, double eps, double weight_decay,
          double bias_correction1, double bias_correction2):
    """One AdamW step in place (decay decoupled from the gradient).
    IN: grads. OUT: params, exp_avg, exp_avg_sq."""
    if not four_lengths(params, grads, exp_avg, exp_avg_sq):
        return
    with nogil:
        adam_update(params.shape[0], &params[0], &grads[0], &exp_avg[0], &exp_avg_sq[0],
                    lr / bias_correction1, beta1, beta2, eps, 0.0, 1.0 - lr * weight_decay,
                    1.0 / sqrt(bias_correction2))


def rmsprop(floating[::1] params not None, const floating[::1] grads not None,
            floating[::1] square_avg not None, floating[::1] grad_avg not None,
            floating[::1] momentum_buffer not None, double lr, double alpha, double eps,
            double weight_decay, double momentum, bint centered):
    """One RMSprop step in place. IN: grads. OUT: params, square_avg, grad_avg (used
    only when centered), momentum_buffer (used only when momentum > 0)."""
    cdef Py_ssize_t i, n = params.shape[0]
    cdef floating g, v, c, w, denom, b
    same_length(n, grads.shape[0], "grads")
    same_length(n, square_avg.shape[0], "square_avg")
    if centered:
        same_length(n, grad_avg.shape[0], "grad_avg")
    if momentum > 0:
        same_length(n, momentum_buffer.shape[0], "momentum_buffer")
    cdef floating flr = <floating> lr, a = <floating> alpha, fe = <floating> eps
    cdef floating wd = <floating> weight_decay, mu = <floating> momentum
    cdef bint use_momentum = momentum > 0
    with nogil:
        for i in range(n):
            g = grads[i] + wd * params[i]
            v = a * square_avg[i] + (1 - a) * g * g
            square_avg[i] = v
            if centered:
                c = a * grad_avg[i] + (1 - a) * g
                grad_avg[i] = c
                w = v - c * c
                if w < 0:
                    w = 0
            else:
                w = v
            if floating is float:
                denom = sqrtf(w) + fe
            else:
                denom = sqrt(w) + fe
            if use_momentum:
                b = mu * momentum_buffer[i] + g / denom
                momentum_buffer[i] = b
                params[i] -= flr * b
            else:
                params[i] -= flr * (g / denom)


def rprop(floating[::1] params not None, const floating[::1] grads not None,
          floating[::1] prev not None, floating[::1] step_size not None,
          double eta_minus, double eta_plus, double step_min, double step_max):
    """One iRPROP- step in place. IN: grads. OUT: params, prev (the gradient this step
    used: zero where its sign flipped), step_size (per-weight, within the bounds)."""
    cdef Py_ssize_t i, n = params.shape[0]
    cdef floating g, s, product
    cdef floating lo = <floating> step_min, hi = <floating> step_max
    cdef floating up = <floating> eta_plus, down = <floating> eta_minus
    same_length(n, grads.shape[0], "grads")
    same_length(n, prev.shape[0], "prev")
    same_length(n, step_size.shape[0], "step_size")
    with nogil:
        for i in range(n):
            g = grads[i]
            product = g * prev[i]      # its sign, as torch: an underflow to 0 is "no change"
            s = step_size[i]
            if product > 0:
                s = s * up
            elif product < 0:
                s = s * down
                g = 0
            if s < lo:
                s = lo
            elif s > hi:
                s = hi
            step_size[i] = s
            if g > 0:
                params[i] -= s
            elif g < 0:
                params[i] += s
            prev[i] = g


def clip_value(floating[::1] values not None, double limit):
    """Clamp every value into [-limit, limit] in place (NaN stays NaN). OUT: values."""
    cdef Py_ssize_t i, n = values.shape[0]
    cdef floating hi = <floating> limit, lo = -(<floating> limit)
    with nogil:
        for i in range(n):
            if values[i] > hi:
                values[i] = hi
            elif values[i] < lo:
                values[i] = lo


def squared_norm(const floating[::1] values not None):
    """Sum of squares, accumulated in double (no overflow for large float32 values)."""
    cdef Py_ssize_t i, n = values.shape[0]
    cdef double total = 0.0
    with nogil:
        for i in range(n):
            total += <double> values[i] * <double> values[i]
    return total


def all_finite(const floating[::1] values not None):
    """True when no entry of the 1-D contiguous buffer is NaN or infinite."""
    cdef bint ok
    if values.shape[0] == 0:
        return True
    with nogil:
        ok = finite(&values[0], values.shape[0])
    return ok


def l2(const floating[::1] W not None, floating[::1] dW not None, double strength):
    """The L2 penalty on weights: add strength * W to dW (IN: W; OUT: dW, accumulated)
    and return 0.5 * strength * sum(W^2) (in double)."""
    cdef Py_ssize_t i, n = W.shape[0]
    cdef double total = 0.0
    cdef floating s = <floating> strength
    if dW.shape[0] != n:
        raise ValueError(f"dW must hold {n} entries, as W does; got {dW.shape[0]}")
    with nogil:
        for i in range(n):
            total += <double> W[i] * <double> W[i]
            dW[i] += s * W[i]
    return 0.5 * strength * total

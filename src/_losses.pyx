# Loss kernels, each fused with the gradient of the loss with respect to its input.
#
# Owns nothing and allocates nothing; bpcore/losses.py validates and hands in every
# buffer. Each kernel releases the GIL and cannot raise. Sums are accumulated in
# double whatever the buffer dtype.
#
# Every kernel computes   value = scale * sum_i w_i * l_i   and writes
# grad = d value / d output, where l_i is sample i's loss summed over its outputs and
# w_i its weight (an empty `weight` means all ones). The caller picks `scale` for the
# reduction (1 for "sum", 1/(K * sum w) or 1/sum w for the means).
#
# Softmax cross-entropy and binary cross-entropy take logits: the softmax/sigmoid is
# fused into the loss so the output delta is simply  prediction - target  (this
# identity holds for softmax + cross-entropy and sigmoid + binary cross-entropy,
# which is why those losses take logits and the last layer stays "identity").
# Log-sum-exp subtracts the row maximum and the binary form uses
# max(z, 0) - z*t + log1p(exp(-|z|)), so logits of any size give finite values.
from cython cimport floating
from libc.stdint cimport int64_t
from libc.math cimport log, fabs

from _scalar_math cimport fexp, flog1p, sigmoid


cdef inline double weight_of(const floating[::1] weight, Py_ssize_t i) noexcept nogil:
    if weight.shape[0] == 0:
        return 1.0
    return weight[i]


def mse(const floating[:, ::1] output not None, const floating[:, ::1] target not None,
        const floating[::1] weight not None, floating[:, ::1] grad not None,
        double scale):
    """l_i = sum_k (o_ik - t_ik)^2; grad = 2 * scale * w_i * (o - t)."""
    cdef Py_ssize_t n = output.shape[0], k = output.shape[1], i, j
    cdef double total = 0.0, row, w, r
    with nogil:
        for i in range(n):
            w = weight_of(weight, i)
            row = 0.0
            for j in range(k):
                r = <double> output[i, j] - <double> target[i, j]
                row += r * r
                grad[i, j] = <floating> (2.0 * scale * w * r)
            total += w * row
    return scale * total


cdef inline double log_softmax_row(const floating[:, ::1] z, Py_ssize_t i,
                                   floating[:, ::1] probs) noexcept nogil:
    """Write softmax(z_i) into probs[i] and return logsumexp(z_i)."""
    cdef Py_ssize_t j, k = z.shape[1]
    cdef double m = z[i, 0], s = 0.0, e
    for j in range(1, k):
        if z[i, j] > m:
            m = z[i, j]
    for j in range(k):
        e = fexp(<floating> (z[i, j] - m))
        probs[i, j] = <floating> e
        s += e
    for j in range(k):
        probs[i, j] = <floating> (probs[i, j] / s)
    return m + log(s)


def cross_entropy_labels(const floating[:, ::1] logits not None,
                         const int64_t[::1] labels not None,
                         const floating[::1] weight not None,
                         floating[:, ::1] grad not None, double scale):
    """l_i = logsumexp(z_i) - z_i[y_i]; grad = scale * w_i * (softmax(z_i) - onehot(y_i))."""
    cdef Py_ssize_t n = logits.shape[0], k = logits.shape[1], i, j
    cdef double total = 0.0, lse, w
    with nogil:
        for i in range(n):
            w = weight_of(weight, i)
            lse = log_softmax_row(logits, i, grad)
            total += w * (lse - logits[i, labels[i]])
            grad[i, labels[i]] -= 1
            for j in range(k):
                grad[i, j] = <floating> (scale * w * grad[i, j])
    return scale * total


def cross_entropy_probs(const floating[:, ::1] logits not None,
                        const floating[:, ::1] target not None,
                        const floating[::1] weight not None,
                        floating[:, ::1] grad not None, double scale):
    """l_i = sum_k t_ik * (logsumexp(z_i) - z_ik);
    grad = scale * w_i * (softmax(z_i) * sum_k t_ik - t_i)."""
    cdef Py_ssize_t n = logits.shape[0], k = logits.shape[1], i, j
    cdef double total = 0.0, lse, w, mass, row
    with nogil:
        for i in range(n):
            w = weight_of(weight, i)
            lse = log_softmax_row(logits, i, grad)
            mass = 0.0
            row = 0.0
            for j in range(k):
                mass += target[i, j]
                row += target[i, j] * (lse - logits[i, j])
            total += w * row
            for j in range(k):
                grad[i, j] = <floating> (scale * w * (grad[i, j] * mass - target[i, j]))
    return scale * total


def bce_with_logits(const floating[:, ::1] logits not None,
                    const floating[:, ::1] target not None,
                    const floating[::1] weight not None,
                    floating[:, ::1] grad not None, double scale):
    """l_i = sum_k max(z,0) - z*t + log1p(exp(-|z|)); grad = scale * w_i * (sigmoid(z) - t)."""
    cdef Py_ssize_t n = logits.shape[0], k = logits.shape[1], i, j
    cdef double total = 0.0, w, row, z, t
    with nogil:
        for i in range(n):
            w = weight_of(weight, i)
            row = 0.0
            for j in range(k):
                z = logits[i, j]
                t = target[i, j]
                row += (z if z > 0 else 0.0) - z * t + flog1p(fexp(<floating> -fabs(z)))
                grad[i, j] = <floating> (scale * w * (sigmoid(logits[i, j]) - t))
            total += w * row
    return scale * total

# Python-facing loss kernels: thin wrappers that hand buffers to the pointer kernels
# of _loss_kernels.pxd (see there for the formulas and the stability notes).
#
# Own nothing, allocate nothing; bpcore/nn/losses.py validates and hands in every buffer.
# Each checks that the shapes agree (and the labels lie in [0, k)) all the same, with
# the GIL held: a ValueError, nothing written; then it releases the GIL and cannot
# raise. An empty `weight` means all ones.
from cython cimport floating
from libc.stdint cimport int64_t

from _loss_kernels cimport (bce_kernel, cross_entropy_labels_kernel,
                            cross_entropy_probs_kernel, mse_kernel, poisson_kernel)
from _loops cimport import_kernels

import_kernels()   # (the loss kernels call the vector exp through the table)


cdef inline const floating* weights_or_null(const floating[::1] weight) noexcept nogil:
    return &weight[0] if weight.shape[0] > 0 else NULL


cdef int check(const floating[:, ::1] output, const floating[:, ::1] target,
               const floating[::1] weight, floating[:, ::1] grad) except -1:
    """Raise ValueError unless target and grad have output's shape and weight holds
    one entry per row (or none). (Integer labels: the caller passes output as target
    and checks the labels itself.)"""
    cdef Py_ssize_t n = output.shape[0], k = output.shape[1]
    if target.shape[0] != n or target.shape[1] != k:
        raise ValueError(f"target must have the output's shape ({n}, {k}); got "
                         f"({target.shape[0]}, {target.shape[1]})")
    if grad.shape[0] != n or grad.shape[1] != k:
        raise ValueError(f"grad must have the output's shape ({n}, {k}); got "
                         f"({grad.shape[0]}, {grad.shape[1]})")
    if weight.shape[0] != 0 and weight.shape[0] != n:
        raise ValueError(f"weight must hold {n} entries (one per row) or none; got "
                         f"{weight.shape[0]}")
    return 0


def mse(const floating[:, ::1] output not None, const floating[:, ::1] target not None,
        const floating[::1] weight not None, floating[:, ::1] grad not None,
        double scale):
    """l_i = sum_k (o_ik - t_ik)^2; grad = 2 * scale * w_i * (o - t). Returns the value."""
    cdef double value
    check(output, target, weight, grad)
    with nogil:
        value = mse_kernel(output.shape[0], output.shape[1], &output[0, 0], &target[0, 0],
                           weights_or_null(weight), &grad[0, 0], scale)
    return value


def cross_entropy_labels(const floating[:, ::1] logits not None,
                         const int64_t[::1] labels not None,
                         const floating[::1] weight not None,
                         floating[:, ::1] grad not None, double scale):
    """Softmax cross-entropy of logits against integer labels. Returns the value."""
    cdef double value
    cdef Py_ssize_t i, n = logits.shape[0], k = logits.shape[1]
    check(logits, logits, weight, grad)
    if labels.shape[0] != n:
        raise ValueError(f"labels must hold {n} entries (one per row); got {labels.shape[0]}")
    for i in range(n):
        if labels[i] < 0 or labels[i] >= k:
            raise ValueError(f"labels must lie in [0, {k}); got {labels[i]} at row {i}")
    with nogil:
        value = cross_entropy_labels_kernel(logits.shape[0], logits.shape[1], &logits[0, 0],
                                            &labels[0], weights_or_null(weight),
                                            &grad[0, 0], scale)
    return value


def cross_entropy_probs(const floating[:, ::1] logits not None,
                        const floating[:, ::1] target not None,
                        const floating[::1] weight not None,
                        floating[:, ::1] grad not None, double scale):
    """Softmax cross-entropy of logits against class probabilities. Returns the value."""
    cdef double value
    check(logits, target, weight, grad)
    with nogil:
        value = cross_entropy_probs_kernel(logits.shape[0], logits.shape[1], &logits[0, 0],
                                           &target[0, 0], weights_or_null(weight),
                                           &grad[0, 0], scale)
    return value


def bce_with_logits(const floating[:, ::1] logits not None,
                    const floating[:, ::1] target not None,
                    const floating[::1] weight not None,
                    floating[:, ::1] grad not None, double scale):
    """Binary cross-entropy of logits against probabilities. Returns the value."""
    cdef double value
    check(logits, target, weight, grad)
    with nogil:
        value = bce_kernel(logits.shape[0], logits.shape[1], &logits[0, 0], &target[0, 0],
                           weights_or_null(weight), &grad[0, 0], scale)
    return value


def poisson(const floating[:, ::1] logrates not None,
            const floating[:, ::1] target not None,
            const floating[::1] weight not None,
            floating[:, ::1] grad not None, double scale):
    """Poisson negative log-likelihood of log-rates against counts: l = exp(z) - t*z,
    grad = scale * w * (exp(z) - t); +inf where exp(z) overflows. Returns the value."""
    cdef double value
    check(logrates, target, weight, grad)
    with nogil:
        value = poisson_kernel(logrates.shape[0], logrates.shape[1], &logrates[0, 0],
                               &target[0, 0], weights_or_null(weight), &grad[0, 0], scale)
    return value

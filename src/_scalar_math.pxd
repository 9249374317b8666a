# Scalar math helpers for the loss kernels, one fused entry point each.
#
# The dense layers' activations and their derivative caches live in _loops_impl.h
# (vectorised C); the losses need only the sigmoid (binary cross-entropy) and
# float/double dispatch of exp and log1p. sigmoid is evaluated by the sign of z, so
# exp never overflows for any input.
from cython cimport floating
from libc.math cimport exp, expf, log1p, log1pf


cdef inline floating fexp(floating x) noexcept nogil:
    if floating is float:
        return expf(x)
    else:
        return exp(x)


cdef inline floating flog1p(floating x) noexcept nogil:
    if floating is float:
        return log1pf(x)
    else:
        return log1p(x)


cdef inline floating sigmoid(floating z) noexcept nogil:
    """1 / (1 + exp(-z)), by the sign of z so that exp's argument is never positive."""
    cdef floating e
    if z >= 0:
        return 1 / (1 + fexp(-z))
    e = fexp(z)
    return e / (1 + e)

# Activations with their derivative caches, one inline function pair per kind.
#
# Design: the forward pass of a dense layer writes, for every unit, the activation
# a = f(z) AND the local derivative d = f'(z) into a cache the backward pass reads
# (delta = upstream * d). The derivative is stored rather than re-derived from a
# because it is not always a function of a alone (the scaled unit c*sigmoid(z) has
# d = c*g*(1-g), which loses g when c == 0; ReLU's mask at z == 0) and because
# backward then needs no branch per activation. The scaled sigmoid unit also caches
# g = sigmoid(z), since dL/dc = upstream * g.
#
# Conventions shared with scikit-learn and PyTorch: relu'(0) = 0, leaky_relu'(0) = slope.
# sigmoid is evaluated by the sign of z, so exp never overflows for any input.
from cython cimport floating
from libc.math cimport exp, expf, tanh, tanhf, log1p, log1pf

# Activation codes; the Python registry in bpcore/layers.py maps names to these.
cdef enum:
    ACT_IDENTITY = 0
    ACT_SIGMOID = 1
    ACT_TANH = 2
    ACT_RELU = 3
    ACT_LEAKY_RELU = 4
    ACT_SCALED_SIGMOID = 5


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


cdef inline floating activate(int kind, floating z, floating scale, floating slope,
                              floating* deriv, floating* gate) noexcept nogil:
    """Return f(z); write f'(z) to *deriv and, for the scaled unit, sigmoid(z) to *gate."""
    cdef floating g
    if kind == ACT_SIGMOID:
        g = sigmoid(z)
        deriv[0] = g * (1 - g)
        return g
    elif kind == ACT_TANH:
        if floating is float:
            g = tanhf(z)
        else:
            g = tanh(z)
        deriv[0] = 1 - g * g
        return g
    elif kind == ACT_RELU:
        if z > 0:
            deriv[0] = 1
            return z
        deriv[0] = 0
        return 0
    elif kind == ACT_LEAKY_RELU:
        if z > 0:
            deriv[0] = 1
            return z
        deriv[0] = slope
        return slope * z
    elif kind == ACT_SCALED_SIGMOID:
        g = sigmoid(z)
        gate[0] = g
        deriv[0] = scale * g * (1 - g)
        return scale * g
    deriv[0] = 1
    return z

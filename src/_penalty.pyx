# The L2 penalty on weights: value and gradient in one pass.
#
# Owns nothing, allocates nothing, releases the GIL. IN: W. OUT: dW (accumulated).
from cython cimport floating


def l2(const floating[::1] W not None, floating[::1] dW not None, double strength):
    """Add strength * W to dW and return 0.5 * strength * sum(W^2) (in double)."""
    cdef Py_ssize_t i, n = W.shape[0]
    cdef double total = 0.0
    cdef floating s = <floating> strength
    with nogil:
        for i in range(n):
            total += <double> W[i] * <double> W[i]
            dW[i] += s * W[i]
    return 0.5 * strength * total

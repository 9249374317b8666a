# A finiteness check that allocates nothing (np.isfinite(x).all() allocates a
# boolean array of x's size on every call, which a training step must not do).
# Releases the GIL; reads only.
from cython cimport floating
from libc.math cimport isfinite


def all_finite(const floating[::1] values not None):
    """True when no entry of the 1-D contiguous buffer is NaN or infinite."""
    cdef Py_ssize_t i, n = values.shape[0]
    cdef bint ok = True
    with nogil:
        for i in range(n):
            if not isfinite(values[i]):
                ok = False
                break
    return ok

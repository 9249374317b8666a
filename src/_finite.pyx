# A finiteness check that allocates nothing (np.isfinite(x).all() allocates a
# boolean array of x's size on every call, which a training step must not do).
# Releases the GIL; reads only.
from cython cimport floating

from _loops cimport all_finite as finite


def all_finite(const floating[::1] values not None):
    """True when no entry of the 1-D contiguous buffer is NaN or infinite."""
    cdef bint ok
    if values.shape[0] == 0:
        return True
    with nogil:
        ok = finite(&values[0], values.shape[0])
    return ok

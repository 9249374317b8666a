"""The teaching engine: a scalar reverse-mode gradient engine (``Value``) and a small
MLP library on it (``bpcore.scalar.nn``), independent of the Cython core and used to
check it number for number."""
from .engine import Value, render, to_dot

__all__ = ["Value", "render", "to_dot"]

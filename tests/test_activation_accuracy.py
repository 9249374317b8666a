"""Accuracy of the kernels' sigmoid and tanh (src/_elementwise_impl.h) in ulps.

The oracle is mpmath at 200 bits: each reference value is kept as a double-double
(hi + lo), and the error of a kernel value y is |y - (hi + lo)| in units of the
spacing of the kernel's type in the binade of the exact value (subnormal spacing
below the smallest normal). The bound asserted is 2 ulps everywhere.

float32 is also swept densely (every 1000th float32 between the extremes, 4.3
million points) against NumPy's float64 tanh and SciPy's float64 expit, whose own
errors (under a float64 ulp) are 2^-29 of a float32 ulp; mpmath checks the dense
sweep's oracle on a sample as well. The kernels are reached through
``_dense.activate`` (forward's element-wise pass) with a bias of -0.0, so that
z = A + b is A itself, -0.0 included.
"""
import numpy as np
import pytest

from bpcore import _dense

mp = pytest.importorskip("mpmath")

SIGMOID, TANH = 1, 2                  # the codes of src/_kernels.h
DTYPES = [np.float32, np.float64]
FUNCTIONS = {"sigmoid": SIGMOID, "tanh": TANH}


def kernel(x, kind, with_derivative=False, column=False):
    """The kernel's f(x) (and its derivative cache D) for a 1-D array x: as one row
    (the one-pass loop of wide layers) or, with column, as one column (the flat
    passes of narrow ones)."""
    A = np.array(x).reshape((-1, 1) if column else (1, -1)).copy()
    empty = np.empty((0, 0), A.dtype)
    D = np.empty_like(A) if with_derivative else empty
    _dense.activate(A, np.full(A.shape[1], -0.0, A.dtype), np.empty(0, A.dtype), empty,
                    D, empty, kind, 0.0)
    return (A.ravel(), D.ravel()) if with_derivative else A.ravel()


def exact(x, kind):
    """f(x) by mpmath at 200 bits, as float64 arrays (hi, lo) with hi + lo = f(x)."""
    hi, lo = np.empty(len(x)), np.empty(len(x))
    with mp.workprec(200):
        for i, value in enumerate(np.asarray(x, np.float64)):
            v = mp.mpf(float(value))
            f = mp.tanh(v) if kind == TANH else 1 / (1 + mp.exp(-v))
            hi[i] = float(f)
            lo[i] = float(f - mp.mpf(hi[i]))
    return hi, lo


def ulp_errors(y, hi, lo, dtype):
    """|y - (hi + lo)| in ulps of dtype at the exact value (all finite)."""
    info = np.finfo(dtype)
    mantissa, exponent = np.frexp(np.abs(hi))         # |hi| = mantissa * 2^exponent
    binade = exponent - 1
    # hi rounded up to a power of two from below: the exact value is one binade down
    binade = np.where((mantissa == 0.5) & (lo != 0) & (np.sign(lo) != np.sign(hi)),
                      binade - 1, binade)
    binade = np.maximum(binade, info.minexp)
    ulp = np.ldexp(1.0, binade - info.nmant)
    return np.abs((y.astype(np.float64) - hi) - lo) / ulp


def float32_sweep(step=1000):
    """Every step-th float32 bit pattern of either sign, ending at +-max (no inf, NaN)."""
    top = np.float32(np.finfo(np.float32).max).view(np.uint32)
    bits = np.append(np.arange(0, top, step, dtype=np.uint32), top)
    positive = bits.view(np.float32)
    return np.concatenate([positive, -positive])


def structured(dtype, count, rng):
    """Special and boundary points plus random ones across the whole range of dtype:
    fine grids near 0, around tanh's switch of form (0.55) and both functions'
    saturation, the subnormal results of sigmoid, random magnitudes 2^e for every e,
    and uniform samples of the interesting interval."""
    info = np.finfo(dtype)
    tiny, smallest = float(info.tiny), float(info.smallest_subnormal)
    points = [0.0, smallest, tiny, 1e-30, 1e-8, 1e-4, 0.1, 0.5, 0.55, 1.0, 2.0, 9.0, 17.0,
              19.0, 20.0, 36.0, 87.0, 88.7, 103.0, 104.0, 700.0, 708.4, 709.8, 745.0,
              746.0, 1e5, 1e30, float(info.max)]
    grids = [np.linspace(0, 1e-3, 501), np.linspace(0.54, 0.56, 1001),
             np.linspace(0, 3, 1501), np.linspace(8, 10, 501), np.linspace(15, 21, 501),
             np.linspace(36, 38, 201), np.linspace(85, 105, 1001),
             np.linspace(700, 746, 1001)]
    exponents = rng.uniform(np.log2(smallest), np.log2(float(info.max)), count // 4)
    magnitudes = [np.exp2(exponents), rng.uniform(0, 40, count // 4),
                  rng.uniform(0, 800 if dtype == np.float64 else 110, count // 4)]
    values = np.concatenate([points, *grids, *magnitudes])
    values = values[np.isfinite(values.astype(dtype))].astype(dtype)
    # nudge each point by one ulp either way too (the neighbours of round numbers)
    values = np.concatenate([values, np.nextafter(values, dtype(0)),
                             np.nextafter(values[values < info.max], dtype(np.inf))])
    return np.concatenate([values, -values])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", FUNCTIONS)
def test_within_two_ulps_of_mpmath(name, dtype):
    rng = np.random.default_rng(5)
    count = 40_000 if dtype == np.float64 else 12_000       # x 6: signs and neighbours
    x = structured(dtype, count, rng)
    kind = FUNCTIONS[name]
    hi, lo = exact(x, kind)
    for column in (False, True):
        errors = ulp_errors(kernel(x, kind, column=column), hi, lo, dtype)
        worst = int(np.argmax(errors))
        assert errors[worst] <= 2.0, (
            f"{name} {np.dtype(dtype).name}: {errors[worst]:.3f} ulp at x = {x[worst]!r}")


@pytest.mark.parametrize("name", FUNCTIONS)
def test_dense_float32_sweep_within_two_ulps(name):
    special = pytest.importorskip("scipy.special")
    x = float32_sweep()
    x64 = x.astype(np.float64)
    reference = np.tanh(x64) if name == "tanh" else special.expit(x64)
    # the float64 oracle is itself checked against mpmath on a sample of the sweep
    # (to 2 float64 ulps, or 1e-60 absolute: float64 expit underflows to 0 below
    # -709, where float32's sigmoid has long been 0)
    every = max(1, len(x) // 2000)
    hi, _ = exact(x[::every], FUNCTIONS[name])
    assert np.all(np.abs(reference[::every] - hi) <= 2 * np.spacing(np.abs(hi)) + 1e-60)
    errors = ulp_errors(kernel(x, FUNCTIONS[name]), reference, np.zeros_like(reference),
                        np.float32)
    worst = int(np.argmax(errors))
    assert errors[worst] <= 2.0, f"{name}: {errors[worst]:.3f} ulp at x = {x[worst]!r}"


@pytest.mark.parametrize("dtype", DTYPES)
def test_special_values(dtype):
    """Hand-worked: the limits, the signed zeros and NaN."""
    x = np.array([0.0, -0.0, np.inf, -np.inf, np.nan], dtype)
    s = kernel(x, SIGMOID)
    np.testing.assert_array_equal(s[:4], [0.5, 0.5, 1.0, 0.0])
    assert np.isnan(s[4])
    t = kernel(x, TANH)
    np.testing.assert_array_equal(t[:4], [0.0, -0.0, 1.0, -1.0])
    assert np.signbit(t[1]) and not np.signbit(t[0])
    assert np.isnan(t[4])


@pytest.mark.parametrize("dtype", DTYPES)
def test_saturation_and_tiny_arguments_are_exact(dtype):
    """Far out, tanh is +-1 and sigmoid is 1 or 0 exactly (their exact values round
    there); a subnormal or tiny argument gives tanh(x) = x and sigmoid(x) = 1/2."""
    info = np.finfo(dtype)
    big = np.array([40.0, 1e3, 1e20, float(info.max)], dtype)
    np.testing.assert_array_equal(kernel(big, TANH), 1.0)
    np.testing.assert_array_equal(kernel(-big, TANH), -1.0)
    np.testing.assert_array_equal(kernel(big, SIGMOID), 1.0)
    np.testing.assert_array_equal(kernel(-big[1:], SIGMOID), 0.0)
    tiny = np.array([info.smallest_subnormal, info.tiny, 1e-30], dtype)
    np.testing.assert_array_equal(kernel(tiny, TANH), tiny)
    np.testing.assert_array_equal(kernel(-tiny, TANH), -tiny)
    np.testing.assert_array_equal(kernel(tiny, SIGMOID), 0.5)


@pytest.mark.parametrize("dtype", DTYPES)
def test_no_nan_from_finite_input(dtype):
    x = float32_sweep(step=100_003).astype(dtype)
    if dtype == np.float64:
        x = np.concatenate([x, np.random.default_rng(1).standard_normal(10_000) * 1e300,
                            np.ldexp(1.0, np.arange(-1074, 1024))])
        x = np.concatenate([x, -x])
    for kind in (SIGMOID, TANH):
        assert not np.any(np.isnan(kernel(x, kind)))


@pytest.mark.parametrize("dtype", DTYPES)
def test_derivative_cache_follows_the_values(dtype):
    """D = s(1 - s) for sigmoid and 1 - t^2 for tanh, from the values the kernel
    returned (the double-precision products of them, to the type's epsilon)."""
    x = np.random.default_rng(2).normal(scale=4, size=5000).astype(dtype)
    eps = float(np.finfo(dtype).eps)
    s, D = kernel(x, SIGMOID, with_derivative=True)
    s64 = s.astype(np.float64)
    assert np.all(np.abs(D - s64 * (1 - s64)) <= eps * np.maximum(s64 * (1 - s64), 0.25))
    t, D = kernel(x, TANH, with_derivative=True)
    t64 = t.astype(np.float64)
    assert np.all(np.abs(D - (1 - t64 * t64)) <= eps)

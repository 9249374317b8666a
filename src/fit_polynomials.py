"""The polynomial coefficients of src/_elementwise_impl.h, and their error bounds.

    python src/fit_polynomials.py

Needs mpmath (the ``test`` extra). Each polynomial is a Chebyshev fit (interpolation
at Chebyshev nodes, within a small factor of the minimax polynomial) computed at 60
digits by ``mpmath.chebyfit``, then rounded to the target precision. The script prints
the coefficients as C hexadecimal literals (highest degree first, as Horner's rule
uses them) and the largest error of the rounded polynomial on a dense grid:

* exp: exp(r) = 1 + r + r^2 Q(r) on |r| <= ln(2)/2 (the reduced argument); the error
  printed is the relative error of 1 + r + r^2 Q(r) against exp(r).
* tanh: tanh(x) = x + x^3 G(x^2) on |x| <= 0.55; the error printed is the relative
  error of x + x^3 G(x^2) against tanh(x).

Both in units of 2^-53 (double) or 2^-24 (float), the relative spacing of the
floating-point numbers just below 1 (half an ulp of numbers in [1, 2)).
"""
import struct

import mpmath as mp

mp.mp.dps = 60
HALF_LN2 = mp.log(2) / 2
TANH_LIMIT = mp.mpf("0.55")
# the degree of each fitted part per precision: exp's Q for sigmoid, the lower-degree
# Q of the exp inside tanh (its error weighs at most half there), tanh's G
DEGREES = {"double": {"exp": 10, "tanh exp": 9, "tanh": 10},
           "float": {"exp": 5, "tanh exp": 4, "tanh": 4}}


def q_exp(r):
    """(exp(r) - 1 - r) / r^2, by its series near 0."""
    if abs(r) < mp.mpf("1e-12"):
        return sum(r ** k / mp.factorial(k + 2) for k in range(6))
    return (mp.exp(r) - 1 - r) / r ** 2


def g_tanh(s):
    """(tanh(x) - x) / x^3 at x = sqrt(s), by its series near 0."""
    if s < mp.mpf("1e-24"):
        return -mp.mpf(1) / 3 + 2 * s / 15 - 17 * s ** 2 / 315
    x = mp.sqrt(s)
    return (mp.tanh(x) - x) / (s * x)


def rounded(value, precision):
    """value rounded to the nearest double or float, as an mpf."""
    if precision == "double":
        return mp.mpf(float(value))
    return mp.mpf(struct.unpack("f", struct.pack("f", float(value)))[0])


def c_literal(value, precision):
    """A C hexadecimal literal of the (already rounded) value."""
    mantissa, exponent = float(value).hex().split("p")
    text = mantissa.rstrip("0").rstrip(".") + "p" + exponent
    return text + "f" if precision == "float" else text


def horner(coefficients, x):
    result = mp.mpf(0)
    for c in coefficients:
        result = result * x + c
    return result


def fit(function, lower, upper, degree, precision):
    poly = mp.chebyfit(function, [lower, upper], degree + 1)
    return [rounded(c, precision) for c in poly]     # highest degree first


def main():
    for precision, degrees in DEGREES.items():
        unit = mp.mpf(2) ** (-53 if precision == "double" else -24)
        grid = [HALF_LN2 * (2 * mp.mpf(i) / 4000 - 1) for i in range(4001)]
        for name in ("exp", "tanh exp"):
            q = fit(q_exp, -HALF_LN2, HALF_LN2, degrees[name], precision)
            exp_error = max(abs((1 + r + r * r * horner(q, r)) / mp.exp(r) - 1)
                            for r in grid)
            print(f"{precision}: {name} Q, degree {degrees[name]}, relative error "
                  f"{mp.nstr(exp_error / unit, 3)} units")
            print("   ", ", ".join(c_literal(c, precision) for c in q))
        g = fit(g_tanh, 0, TANH_LIMIT ** 2, degrees["tanh"], precision)
        grid = [TANH_LIMIT * mp.mpf(i) / 4000 for i in range(1, 4001)]
        tanh_error = max(abs((x + x ** 3 * horner(g, x * x)) / mp.tanh(x) - 1) for x in grid)
        print(f"{precision}: tanh G, degree {degrees['tanh']}, relative error "
              f"{mp.nstr(tanh_error / unit, 3)} units")
        print("   ", ", ".join(c_literal(c, precision) for c in g))


if __name__ == "__main__":
    main()

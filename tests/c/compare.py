"""Check the output of tests/c/kernel_check.c, and compare two of its outputs.

    python compare.py reference RUN        every case of RUN against a NumPy reference
    python compare.py same RUN OTHER       RUN and OTHER bit for bit
    python compare.py close RUN OTHER      RUN and OTHER within --ulps (default 32)

``reference`` recomputes each kernel's documented result from the inputs the run
wrote out, with NumPy in float64, and allows each entry an error bound proportional
to the rounding of the operations involved (a few units in the last place of the
element type times the magnitudes summed): it shows that the program calls each
kernel as documented, and catches a wrong index or branch, whose errors are of the
order of the values themselves. The accuracy of the activations is measured more
tightly by tests/test_activation_accuracy.py.

``same`` is for two builds whose order of operations is the same (the same source
with -ffp-contract=off on two architectures): every bit must agree, except that any
NaN matches any NaN (IEEE 754 leaves the sign and payload of a NaN that an operation
creates to the hardware: x86 and Arm differ).

``close`` is for builds where the compiler may contract a * b + c into a fused
multiply-add (GCC's default; Arm always has FMA, the baseline x86-64 clone has none,
its AVX2 and AVX-512 clones do): each contraction rounds once instead of twice, so
results may differ in their last bits. Each entry may differ by --ulps units in the
last place of the element type, relative to the largest finite magnitude among the
case's inputs and outputs (a sum's rounding errors scale with its terms, not with a
value that cancels); NaN and infinities must sit at the same places, and integers
must agree. Why 32: a contraction moves one rounding, by at most half an ulp of the
product it absorbs, and the longest chains of them here are the dot products of the
matrix kernels, of at most 40 terms (20 ulps); the activations' and optimizers'
chains are shorter. The largest difference measured between GCC 12's aarch64 build
and the x86-64 build without contraction is 2 ulps.

Exit status 0 when everything agrees, 1 otherwise (with the first differences
listed).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np

DTYPES = {"f32": (">u4", np.float32), "f64": (">u8", np.float64), "i32": (">u4", np.int32)}


@dataclass
class Case:
    """One kernel call: its kind, element type, scalar arguments and arrays."""

    kind: str
    dtype: str
    params: dict[str, float]
    line: int
    arrays: dict[str, np.ndarray] = field(default_factory=dict)

    def title(self) -> str:
        """The case as written in the file, for messages."""
        args = " ".join(f"{k}={v:g}" for k, v in self.params.items())
        return f"line {self.line}: {self.kind} {self.dtype} {args}"

    @property
    def eps(self) -> float:
        """Machine epsilon of the case's element type."""
        return float(np.finfo(np.float32 if self.dtype == "f32" else np.float64).eps)

    @property
    def tiny(self) -> float:
        """The smallest subnormal of the element type (an absolute floor of bounds)."""
        t = np.float32 if self.dtype == "f32" else np.float64
        return float(np.finfo(t).smallest_subnormal)


def parse_number(text: str) -> float:
    """An integer or a C99 hexadecimal float (%a) from the case line."""
    try:
        return int(text)
    except ValueError:
        return float.fromhex(text)


def read(path: str) -> list[Case]:
    """Every case of a kernel_check output file."""
    cases: list[Case] = []
    with open(path) as f:
        for number, line in enumerate(f, 1):
            words = line.split()
            if not words:
                continue
            if words[0] == "case":
                params = dict(w.split("=", 1) for w in words[3:])
                cases.append(Case(words[1], words[2],
                                  {k: parse_number(v) for k, v in params.items()}, number))
            elif words[0] == "array" and cases:
                name, dtype, n = words[1], words[2], int(words[3])
                if len(words) != 4 + n:
                    raise SystemExit(f"{path}:{number}: array {name} has "
                                     f"{len(words) - 4} entries, expected {n}")
                raw, kind = DTYPES[dtype]
                digits = "".join(words[4:])
                if len(digits) != 2 * int(raw[-1]) * n:
                    raise SystemExit(f"{path}:{number}: array {name}: entries of the "
                                     f"wrong width for {dtype}")
                data = np.frombuffer(bytes.fromhex(digits), dtype=raw)
                cases[-1].arrays[name] = data.view(raw.replace("u", "f" if dtype != "i32"
                                                               else "i")).astype(kind)
            else:
                raise SystemExit(f"{path}:{number}: cannot read {line[:60]!r}")
    if not cases:
        raise SystemExit(f"{path}: no cases (did the program run to its end?)")
    return cases


class Failures:
    """Collects the differences found, and prints the first few."""

    def __init__(self) -> None:
        self.count = 0

    def add(self, case: Case, message: str) -> None:
        self.count += 1
        if self.count <= 20:
            print(f"  {case.title()}\n    {message}")


def check_close(fail: Failures, case: Case, name: str, got: np.ndarray,
                ref: np.ndarray, bound: np.ndarray | float) -> None:
    """got within bound of ref entry by entry; NaN, +inf and -inf where ref has them."""
    got = np.asarray(got, dtype=np.float64)
    ref = np.broadcast_to(np.asarray(ref, dtype=np.float64), got.shape).ravel()
    bound = np.broadcast_to(np.asarray(bound, dtype=np.float64), got.shape).ravel()
    got = got.ravel()
    with np.errstate(invalid="ignore"):
        special = ~np.isfinite(ref)
        ok = np.where(special,
                      (np.isnan(got) & np.isnan(ref)) | (got == ref),
                      np.abs(got - ref) <= bound + case.tiny)
    if not ok.all():
        i = int(np.flatnonzero(~ok)[0])
        fail.add(case, f"{name}[{i}] = {got[i]!r}, expected {ref[i]!r} within "
                       f"{bound[i]:.3g} ({int((~ok).sum())} of {ok.size} entries off)")


def check_equal(fail: Failures, case: Case, name: str, got: np.ndarray,
                ref: np.ndarray) -> None:
    """got equal to ref entry by entry (NaN where ref is NaN)."""
    check_close(fail, case, name, got, ref, np.zeros(np.shape(got)) - case.tiny)


def _f(case: Case, name: str) -> np.ndarray:
    """An array of the case in float64."""
    return case.arrays[name].astype(np.float64)


def ref_gemm(case: Case, fail: Failures) -> None:
    p = case.params
    m, n, k = int(p["m"]), int(p["n"]), int(p["k"])
    lda, ldb, ldc = int(p["lda"]), int(p["ldb"]), int(p["ldc"])
    A = _f(case, "A").reshape(-1, lda)[:, : (m if p["ta"] else k)]
    B = _f(case, "B").reshape(-1, ldb)[:, : (k if p["tb"] else n)]
    A = A.T if p["ta"] else A
    B = B.T if p["tb"] else B
    C0 = _f(case, "C0").reshape(m, ldc)
    C = _f(case, "C").reshape(m, ldc)
    alpha, beta = p["alpha"], p["beta"]
    ref = alpha * (A @ B) + (beta * C0[:, :n] if beta != 0 else 0)
    mag = abs(alpha) * (np.abs(A) @ np.abs(B)) + (abs(beta) * np.abs(C0[:, :n])
                                                  if beta != 0 else 0)
    check_close(fail, case, "C", C[:, :n], ref, 2 * (k + 2) * case.eps * mag)
    check_equal(fail, case, "C padding", C[:, n:], C0[:, n:])


def _forward(act: int, slope: float, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """identity (0), relu (3) or leaky relu (4) and its derivative at z"""
    if act == 3:
        return np.where(z > 0, z, 0.0), np.where(z > 0, 1.0, 0.0)
    if act == 4:
        return np.where(z > 0, z, slope * z), np.where(z > 0, 1.0, slope)
    return z, np.ones_like(z)


def ref_dense_forward(case: Case, fail: Failures) -> None:
    p = case.params
    m, n, k = int(p["m"]), int(p["n"]), int(p["k"])
    A = _f(case, "A").reshape(m, k)
    B = _f(case, "B").reshape(k, n)
    bias = _f(case, "bias")
    z = A @ B + bias
    bound = 2 * (k + 2) * case.eps * (np.abs(A) @ np.abs(B) + np.abs(bias))
    value, slope = _forward(int(p["act"]), p["slope"], z)
    # near z = 0 a rounding may pick either side of a kink: the derivative is checked
    # where the sign of z is certain
    check_close(fail, case, "C", case.arrays["C"].reshape(m, n), value,
                bound * max(1.0, p["slope"]))
    if p["has_d"]:
        sure = np.abs(z) > bound
        check_equal(fail, case, "D", case.arrays["D"].reshape(m, n)[sure], slope[sure])


def ref_delta_back(case: Case, fail: Failures) -> None:
    p = case.params
    m, n, k = int(p["m"]), int(p["n"]), int(p["k"])
    A = _f(case, "A").reshape(m, k)
    B = _f(case, "B").reshape(n, k)
    M = _f(case, "M").reshape(m, n)
    prod = A @ B.T
    bound = 2 * (k + 2) * case.eps * (np.abs(A) @ np.abs(B).T)
    if p["relu_output"]:
        ref = np.where(M > 0, prod, 0.0)
        bound = np.where(M > 0, bound, 0.0)
    else:
        ref = prod * M
        bound = bound * np.abs(M)
    C = _f(case, "C").reshape(m, n)
    check_close(fail, case, "C", C, ref, bound)
    check_close(fail, case, "colsum", case.arrays["colsum"], ref.sum(axis=0),
                bound.sum(axis=0) + 2 * (m + 1) * case.eps * np.abs(ref).sum(axis=0))


def ref_bias_activation(case: Case, fail: Failures) -> None:
    p = case.params
    n, m, kind = int(p["n"]), int(p["m"]), int(p["kind"])
    t = np.float32 if case.dtype == "f32" else np.float64
    # z = A + b in the element type: one correctly rounded addition, as in the kernel
    z_t = case.arrays["A0"].reshape(n, m) + case.arrays["b"]
    z = z_t.astype(np.float64)
    A = _f(case, "A").reshape(n, m)
    eps = case.eps
    if p["has_z"]:
        check_equal(fail, case, "Z", case.arrays["Z"].reshape(n, m), z)
    with np.errstate(over="ignore", invalid="ignore"):
        if kind in (0, 3, 4):
            slope = float(t(p["slope"]))
            if kind == 4:  # slope * z rounded once in the element type
                z_low = (t(slope) * z_t).astype(np.float64)
                value = np.where(z > 0, z, z_low)
                deriv = np.where(z > 0, 1.0, slope)
            else:
                value, deriv = _forward(kind, slope, z)
            check_equal(fail, case, "A", A, value)
            if p["has_d"]:
                check_equal(fail, case, "D", case.arrays["D"].reshape(n, m), deriv)
            return
        if kind == 2:
            s = np.tanh(z)
            deriv = 1 - s * s
        else:
            s = 1 / (1 + np.exp(-z))
            deriv = s * (1 - s)
        scale = _f(case, "scale") if kind == 5 else np.ones(m)
    check_close(fail, case, "A", A, scale * s, 8 * eps * np.abs(scale * s))
    if p["has_d"]:
        check_close(fail, case, "D", case.arrays["D"].reshape(n, m), scale * deriv,
                    8 * eps * scale)
    if p["has_g"]:
        check_close(fail, case, "G", case.arrays["G"].reshape(n, m), s, 8 * eps * np.abs(s))


def ref_delta(case: Case, fail: Failures) -> None:
    p = case.params
    n, m = int(p["n"]), int(p["m"])
    up = case.arrays["upstream"].reshape(n, m)
    source = up.astype(np.float64)
    if p["has_d"]:
        product = up * case.arrays["D"].reshape(n, m)   # one rounding, as in the kernel
        check_equal(fail, case, "delta", case.arrays["delta"].reshape(n, m), product)
        source = product.astype(np.float64)
    keep = 0.0 if p["overwrite"] else 1.0
    sum_bound = 2 * (n + 1) * case.eps * (np.abs(source).sum(axis=0)
                                          + keep * np.abs(_f(case, "db0")))
    check_close(fail, case, "db", case.arrays["db"],
                keep * _f(case, "db0") + source.sum(axis=0), sum_bound)
    if p["has_g"]:
        g = source = up.astype(np.float64) * _f(case, "G").reshape(n, m)
        bound = 2 * (n + 1) * case.eps * (np.abs(g).sum(axis=0)
                                          + keep * np.abs(_f(case, "dscale0")))
        check_close(fail, case, "dscale", case.arrays["dscale"],
                    keep * _f(case, "dscale0") + g.sum(axis=0), bound)
    else:
        check_equal(fail, case, "dscale", case.arrays["dscale"], case.arrays["dscale0"])


def ref_all_finite(case: Case, fail: Failures) -> None:
    check_equal(fail, case, "ret", case.arrays["ret"],
                np.array([int(np.isfinite(case.arrays["x"]).all())]))


def ref_transpose(case: Case, fail: Failures) -> None:
    k, m = int(case.params["k"]), int(case.params["m"])
    check_equal(fail, case, "Bt", case.arrays["Bt"],
                case.arrays["B"].reshape(k, m).T.reshape(-1))


def _sgd(case: Case, fail: Failures, p0: np.ndarray, g0: np.ndarray, gmag: np.ndarray,
         v0: np.ndarray | None, v_got: np.ndarray | None, p_got: np.ndarray,
         name: str) -> None:
    """PyTorch's SGD from float64 inputs; gmag bounds |g0|'s own rounding error / eps"""
    q = case.params
    lr, mom, wd = q["lr"], q["momentum"], q["weight_decay"]
    eps = case.eps
    g = g0 + wd * p0
    gm = gmag + abs(wd) * np.abs(p0)
    if mom == 0:
        check_close(fail, case, name, p_got, p0 - lr * g,
                    4 * eps * (np.abs(p0) + abs(lr) * gm))
        return
    assert v0 is not None and v_got is not None
    v = mom * v0 + g
    vm = abs(mom) * np.abs(v0) + gm
    check_close(fail, case, "velocity", v_got, v, 4 * eps * vm)
    step = g + mom * v if q["nesterov"] else v
    sm = gm + abs(mom) * vm if q["nesterov"] else vm
    check_close(fail, case, name, p_got, p0 - lr * step, 4 * eps * (np.abs(p0) + abs(lr) * sm))


def ref_sgd(case: Case, fail: Failures) -> None:
    v0 = _f(case, "velocity0") if "velocity0" in case.arrays else None
    v = _f(case, "velocity") if "velocity" in case.arrays else None
    g = _f(case, "grads")
    _sgd(case, fail, _f(case, "params0"), g, np.abs(g), v0, v, _f(case, "params"), "params")
    check_equal(fail, case, "shared_same", case.arrays["shared_same"], np.array([1]))


def ref_outer_sgd(case: Case, fail: Failures) -> None:
    q = case.params
    k, m, n = int(q["k"]), int(q["m"]), int(q["n"])
    X = _f(case, "X").reshape(k, int(q["ldx"]))[:, :m]
    delta = _f(case, "delta").reshape(k, int(q["ldd"]))[:, :n]
    g = (X.T @ delta).reshape(-1)
    gmag = (k + 1) * (np.abs(X).T @ np.abs(delta)).reshape(-1)
    v0 = _f(case, "velocity0") if "velocity0" in case.arrays else None
    v = _f(case, "velocity") if "velocity" in case.arrays else None
    _sgd(case, fail, _f(case, "W0"), g, gmag, v0, v, _f(case, "W"), "W")


def ref_adam(case: Case, fail: Failures) -> None:
    q = case.params
    eps = case.eps
    p = _f(case, "params0") * q["decay"]
    g = _f(case, "grads") + q["l2"] * p
    gm = np.abs(g) + abs(q["l2"]) * np.abs(p)
    b1, b2 = q["beta1"], q["beta2"]
    m = b1 * _f(case, "exp_avg0") + (1 - b1) * g
    v = b2 * _f(case, "exp_avg_sq0") + (1 - b2) * g * g
    check_close(fail, case, "exp_avg", case.arrays["exp_avg"], m,
                8 * eps * (b1 * np.abs(_f(case, "exp_avg0")) + (1 - b1) * gm))
    check_close(fail, case, "exp_avg_sq", case.arrays["exp_avg_sq"], v, 8 * eps * np.abs(v))
    # the step's rounding errors are relative to its own size: a few operations, plus
    # the error of exp_avg (relative to its magnitude) carried through
    denom = np.sqrt(v) * q["inv_root_bc2"] + q["eps"]
    step = q["step_size"] * m / denom
    step_mag = q["step_size"] * (np.abs(m) + b1 * np.abs(_f(case, "exp_avg0"))
                                 + (1 - b1) * gm) / denom
    check_close(fail, case, "params", case.arrays["params"], p - step,
                16 * eps * (np.abs(p) + step_mag))
    check_equal(fail, case, "shared_same", case.arrays["shared_same"], np.array([1]))


def ref_unit_mse(case: Case, fail: Failures) -> None:
    q = case.params
    m, k = int(q["m"]), int(q["k"])
    vl = 8 if case.dtype == "f32" else 4
    fits = k % vl == 0 and 1 <= k // vl <= 4
    check_equal(fail, case, "fits", np.array([q["fits"]]), np.array([int(fits)]))
    if not fits:
        check_equal(fail, case, "ret", case.arrays["ret"], np.array([-1.0]))
        check_equal(fail, case, "out", case.arrays["out"], case.arrays["out0"])
        return
    eps = case.eps
    A = _f(case, "A").reshape(m, k)
    w, b, t = _f(case, "w"), _f(case, "b")[0], _f(case, "target")
    M = _f(case, "M").reshape(m, k)
    out = A @ w + b
    out_err = 2 * (k + 2) * eps * (np.abs(A) @ np.abs(w) + abs(b))
    check_close(fail, case, "out", case.arrays["out"], out, out_err)
    r = out - t
    scale = q["scale"]
    check_close(fail, case, "ret", case.arrays["ret"], [scale * (r @ r)],
                [scale * (2 * np.abs(r) @ out_err + 4 * (m + 2) * eps * (r @ r))])
    grad = 2 * scale * r
    grad_err = 2 * scale * (out_err + 4 * eps * np.abs(r))
    check_close(fail, case, "grad", case.arrays["grad"], grad, grad_err)
    check_close(fail, case, "dW", case.arrays["dW"], A.T @ grad,
                np.abs(A).T @ grad_err + 2 * (m + 2) * eps * (np.abs(A).T @ np.abs(grad)))
    check_close(fail, case, "db", case.arrays["db"], [grad.sum()],
                [grad_err.sum() + 2 * (m + 2) * eps * np.abs(grad).sum()])
    wide = np.outer(grad, w)
    wide_err = np.outer(grad_err, np.abs(w)) + 2 * eps * np.abs(wide)
    if q["relu_output"]:
        delta, delta_err = np.where(M > 0, wide, 0.0), np.where(M > 0, wide_err, 0.0)
    else:
        delta, delta_err = wide * M, (wide_err + eps * np.abs(wide)) * np.abs(M)
    check_close(fail, case, "delta", case.arrays["delta"].reshape(m, k), delta, delta_err)
    check_close(fail, case, "colsum", case.arrays["colsum"], delta.sum(axis=0),
                delta_err.sum(axis=0) + 2 * (m + 2) * eps * np.abs(delta).sum(axis=0))


def ref_abs_sum(case: Case, fail: Failures) -> None:
    x = _f(case, "x")
    n = x.size
    # blocks of 1024 summed in the element type, the blocks' sums in double
    rel = 2 * (min(n, 1024) + 2) * case.eps
    with np.errstate(invalid="ignore"):
        total, below = np.abs(x).sum(), (np.abs(x) - x).sum()
    for name in ("ret", "ret_neg"):
        check_close(fail, case, name, case.arrays[name], [total], [rel * total])
    check_close(fail, case, "negative", case.arrays["negative"], [below], [rel * below])


REFERENCES: dict[str, Callable[[Case, Failures], None]] = {
    "gemm": ref_gemm,
    "dense_forward": ref_dense_forward,
    "delta_back": ref_delta_back,
    "bias_activation": ref_bias_activation,
    "delta": ref_delta,
    "all_finite": ref_all_finite,
    "transpose": ref_transpose,
    "sgd": ref_sgd,
    "outer_sgd": ref_outer_sgd,
    "adam": ref_adam,
    "unit_mse": ref_unit_mse,
    "abs_sum": ref_abs_sum,
}


def pairs(run: list[Case], other: list[Case], fail: Failures) -> Iterator[tuple[Case, Case]]:
    """The cases of two runs side by side, checked to be the same calls."""
    if len(run) != len(other):
        fail.add(run[0], f"{len(run)} cases against {len(other)}")
        return
    for a, b in zip(run, other):
        if (a.kind, a.dtype, a.params) != (b.kind, b.dtype, b.params) \
                or a.arrays.keys() != b.arrays.keys():
            fail.add(a, f"is not the same call as {b.title()}")
            continue
        yield a, b


def compare(run: list[Case], other: list[Case], ulps: float | None,
            fail: Failures) -> float:
    """Two runs entry by entry (bit for bit when ulps is None); the largest difference
    seen, in ulps of its case's largest magnitude."""
    worst = 0.0
    for a, b in pairs(run, other, fail):
        # the scale of the case's arithmetic: its largest finite magnitude, input or
        # output (a sum that cancels keeps the rounding errors of its terms)
        scale = max((float(np.abs(v[np.isfinite(v)]).max(initial=0))
                     for v in b.arrays.values() if v.dtype.kind == "f"), default=0.0)
        for name, x in a.arrays.items():
            y = b.arrays[name]
            if x.dtype.kind == "i" or ulps is None:
                same = (x == y) | (np.isnan(x) & np.isnan(y)) if x.dtype.kind == "f" \
                    else x == y
                # bit for bit: +0 and -0 differ
                if x.dtype.kind == "f":
                    same &= (np.signbit(x) == np.signbit(y)) | np.isnan(x)
                if not same.all():
                    i = int(np.flatnonzero(~same)[0])
                    fail.add(a, f"{name}[{i}]: {x[i]!r} against {y[i]!r} "
                                f"({int((~same).sum())} of {x.size} entries differ)")
                continue
            finite = np.isfinite(x) & np.isfinite(y)
            placed = (np.isnan(x) == np.isnan(y)) & (np.isfinite(x) | (x == y) | np.isnan(x))
            if not placed.all():
                i = int(np.flatnonzero(~placed)[0])
                fail.add(a, f"{name}[{i}]: {x[i]!r} against {y[i]!r} (NaN or infinity)")
            if not finite.any():
                continue
            size = max(scale, a.tiny / a.eps)
            diff = np.abs(x[finite].astype(np.float64) - y[finite]) / (a.eps * size)
            worst = max(worst, float(diff.max()))
            if diff.max() > ulps:
                i = int(np.flatnonzero(finite)[int(np.argmax(diff))])
                fail.add(a, f"{name}[{i}]: {x[i]!r} against {y[i]!r}, {diff.max():.1f} "
                            f"ulps of the case's largest magnitude {size:.3g} (> {ulps})")
    return worst


def main(argv: list[str] | None = None) -> int:
    """Run the check named on the command line; 0 when it passes."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=["reference", "same", "close"])
    parser.add_argument("run")
    parser.add_argument("other", nargs="?")
    parser.add_argument("--ulps", type=float, default=32.0)
    args = parser.parse_args(argv)
    run = read(args.run)
    fail = Failures()
    if args.mode == "reference":
        for case in run:
            REFERENCES[case.kind](case, fail)
        summary = f"{len(run)} cases against NumPy references"
    else:
        if args.other is None:
            parser.error(f"{args.mode} needs two outputs")
        ulps = None if args.mode == "same" else args.ulps
        worst = compare(run, read(args.other), ulps, fail)
        summary = (f"{len(run)} cases bit for bit" if ulps is None else
                   f"{len(run)} cases within {ulps:g} ulps (largest difference "
                   f"{worst:.2f} ulps)")
    if fail.count:
        print(f"FAILED: {fail.count} differences ({summary})")
        return 1
    print(f"ok: {summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

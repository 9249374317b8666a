"""The exp inside softmax cross-entropy and binary cross-entropy is bpcore's own vector
exp (src/_elementwise_impl.h, bp_exp_nonpositive). Oracle: the same formulas in x87
extended precision (np.longdouble, 64-bit significands, where the platform has it) or
mpmath, rounded once to the buffer's type, over ordinary, large and extreme logits."""
import numpy as np
import pytest

import bpcore as bp


def _extended():
    if np.finfo(np.longdouble).nmant < 63:
        pytest.skip("np.longdouble is not wider than double on this platform")
    return np.longdouble


def _ulps(actual, expected, dtype):
    """|actual - expected| in units of the spacing of `dtype` at `expected`."""
    expected_t = np.asarray(expected, dtype=dtype)
    spacing = np.spacing(np.abs(expected_t)).astype(np.longdouble)
    tiny = np.finfo(dtype).smallest_subnormal
    spacing = np.maximum(spacing, tiny)
    return np.abs(np.asarray(actual, np.longdouble) - np.asarray(expected, np.longdouble)) / spacing


def _logits(rng, dtype, n=400, k=7):
    z = rng.standard_normal((n, k)) * rng.choice([0.1, 3.0, 30.0, 300.0], size=(n, 1))
    z[:5] = [[-1e30, 0, 1e-30, 5, -5, 80, -80][:k]] * 5 if k == 7 else z[:5]
    z[5] = np.array([np.finfo(dtype).max / 2, -np.finfo(dtype).max / 2, 0, 1, -1, 700, -700][:k]
                    if dtype == np.float64 else [3e38, -3e38, 0, 1, -1, 87, -87][:k])
    return z.astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_cross_entropy_gradient_within_a_few_ulps_of_extended_precision(dtype):
    ext = _extended()
    rng = np.random.default_rng(0)
    z = _logits(rng, dtype)
    labels = rng.integers(0, z.shape[1], z.shape[0])
    value, grad = bp.CrossEntropyLoss(reduction="sum")(z, labels)
    ze = z.astype(ext)
    # z - max z rounds to the buffer's type first, as in every softmax that shifts by
    # the maximum (bpcore's, NumPy's, torch's): exp's input is that rounded difference
    # (a difference beyond the type's range is -inf there, and exp gives 0)
    with np.errstate(over="ignore"):
        shifted = np.exp((z - z.max(axis=1, keepdims=True)).astype(ext))
    p = shifted / shifted.sum(axis=1, keepdims=True)
    # the gradient is p - onehot: compare p itself (the subtraction of 1 is exact or
    # rounds once more, in the entries of the labels)
    got_p = grad.astype(ext)
    got_p[np.arange(len(labels)), labels] += 1
    mask = np.ones_like(p, dtype=bool)
    mask[np.arange(len(labels)), labels] = False
    assert np.all(np.isfinite(grad))
    assert _ulps(got_p[mask], p[mask], dtype).max() <= 4
    lse = np.log(shifted.sum(axis=1)) + ze.max(axis=1)
    expected = float((lse - ze[np.arange(len(labels)), labels]).sum())
    assert np.isfinite(value)
    assert value == pytest.approx(expected, rel=8 * float(np.finfo(dtype).eps))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_binary_cross_entropy_within_a_few_ulps_of_extended_precision(dtype):
    ext = _extended()
    rng = np.random.default_rng(1)
    z = _logits(rng, dtype)
    t = rng.random(z.shape).astype(dtype)
    value, grad = bp.BCEWithLogitsLoss(reduction="sum")(z, t)
    ze, te = z.astype(ext), t.astype(ext)
    e = np.exp(-np.abs(ze))
    sig = np.where(ze >= 0, 1 / (1 + e), e / (1 + e))
    expected_grad = sig - te
    # measured against the spacing at the gradient: t is in [0, 1), so where sigmoid
    # and t nearly cancel, allow the spacing of the larger of the two instead
    scale = np.maximum(np.abs(expected_grad), np.maximum(sig, te))
    err = np.abs(grad.astype(ext) - expected_grad) / np.spacing(scale.astype(dtype)).astype(ext)
    assert np.all(np.isfinite(grad))
    assert err.max() <= 4
    expected = float((np.maximum(ze, 0) - ze * te + np.log1p(e)).sum())
    assert np.isfinite(value)
    assert value == pytest.approx(expected, rel=8 * float(np.finfo(dtype).eps))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_fused_step_and_the_loss_call_agree_on_the_new_exp(dtype):
    # the fused training step runs the same kernels: its loss equals the standalone
    # loss of the forward pass (same bits), for both logit losses
    rng = np.random.default_rng(2)
    X = rng.standard_normal((33, 4)).astype(dtype) * 5
    for loss, y in ((bp.CrossEntropyLoss(), rng.integers(0, 3, 33)),
                    (bp.BCEWithLogitsLoss(), rng.integers(0, 2, (33, 3)).astype(dtype))):
        model = bp.Model([bp.Dense(4, 8, "tanh"), bp.Dense(8, 3)], dtype=dtype, seed=0)
        expected, _ = loss(model.predict(X), y)
        got = model.train_step(X, y, loss, bp.SGD(model, lr=0.0))
        assert got == expected


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_softplus_term_of_each_entry_within_a_few_ulps(dtype):
    # one entry per call with t = 0 and z < 0: the loss is log1p(exp(z)) alone, the
    # term that bpcore computes with its own log1p (bp_log1p_unit); the oracle rounds
    # the extended-precision value once to the buffer's type
    ext = _extended()
    rng = np.random.default_rng(3)
    z = -np.concatenate([rng.random(300) * 2, rng.random(300) * 40, [0.0, 1e-30, 0.34657,
                                                                        0.34658, 0.6931, 80]])
    z = z.astype(dtype)
    loss = bp.BCEWithLogitsLoss(reduction="sum")
    got = np.array([loss(z[i:i + 1, None], np.zeros((1, 1), dtype))[0] for i in range(len(z))])
    expected = np.log1p(np.exp(z.astype(ext)))
    assert _ulps(got.astype(dtype), expected, dtype).max() <= 3

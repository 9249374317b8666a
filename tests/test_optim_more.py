"""AdamW, RMSprop, Rprop (iRPROP-) and clip_grad_value against NumPy references of
their published rules, against torch.optim where torch is present, and on bad input."""
import re

import numpy as np
import numpy_reference as ref
import pytest
from test_model import numpy_allocations_during
from test_optim import reference_gradient, setup

import bpcore as bp
from bpcore import _flat
from bpcore.optim import AdamW, RMSprop, Rprop, clip_grad_value


def _ids(options):
    return ",".join(f"{k}={v}" for k, v in options.items()) or "defaults"


def _train(model, opt, batches, steps, start=0):
    for step in range(start, steps):
        X, y = batches[step % len(batches)]
        opt.zero_grad()
        model.loss_and_grad(X, y, bp.CrossEntropyLoss(), accumulate=True)
        opt.step()


# ============================================================ trajectories
ADAMW_CASES = [dict(), dict(lr=0.01), dict(lr=0.02, betas=(0.8, 0.99), eps=1e-6),
               dict(lr=0.01, weight_decay=0.5), dict(lr=0.01, weight_decay=0.0)]


@pytest.mark.parametrize("options", ADAMW_CASES, ids=_ids)
def test_adamw_trajectory_equals_reference(options, rng):
    model, batches = setup(rng)
    full = {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 1e-2, **options}
    p = model.params.copy()
    m, v = np.zeros_like(p), np.zeros_like(p)
    opt = AdamW(model, **options)
    for step in range(1, 51):
        X, y = batches[step % len(batches)]
        g = reference_gradient(p, model, X, y)
        p, m, v = ref.adamw_step(p, g, m, v, step, full["lr"], *full["betas"], full["eps"],
                                 full["weight_decay"])
        model.loss_and_grad(X, y, bp.CrossEntropyLoss())
        opt.step()
    np.testing.assert_allclose(model.params, p, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(opt.state["exp_avg"], m, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(opt.state["exp_avg_sq"], v, rtol=1e-10, atol=1e-16)
    assert opt.steps == 50


def test_adamw_without_decay_is_adam(rng):
    model, batches = setup(rng)
    start = model.params.copy()
    _train(model, AdamW(model, lr=0.01, weight_decay=0.0), batches, 20)
    decoupled = model.params.copy()
    model.params[...] = start
    _train(model, bp.Adam(model, lr=0.01), batches, 20)
    np.testing.assert_array_equal(model.params, decoupled)


def test_adamw_decay_is_decoupled_from_the_moments(rng):
    """With a zero gradient AdamW only shrinks the weights (Adam's L2 would move the
    moments); the first step is exactly p * (1 - lr * wd)."""
    model, _ = setup(rng)
    p = model.params.copy()
    opt = AdamW(model, lr=0.1, weight_decay=0.5)
    model.zero_grad()
    opt.step()
    np.testing.assert_array_equal(model.params, p * (1 - 0.1 * 0.5))
    assert not opt.state["exp_avg"].any() and not opt.state["exp_avg_sq"].any()


RMSPROP_CASES = [dict(lr=0.01, momentum=momentum, centered=centered, weight_decay=weight_decay)
                 for momentum in (0.0, 0.9) for centered in (False, True)
                 for weight_decay in (0.0, 0.1)]
RMSPROP_CASES += [dict(), dict(lr=0.005, alpha=0.9, eps=1e-4, momentum=0.5, centered=True)]


@pytest.mark.parametrize("options", RMSPROP_CASES, ids=_ids)
def test_rmsprop_trajectory_equals_reference(options, rng):
    model, batches = setup(rng)
    full = {"lr": 0.01, "alpha": 0.99, "eps": 1e-8, "weight_decay": 0.0, "momentum": 0.0,
            "centered": False, **options}
    p = model.params.copy()
    v, c, buf = np.zeros_like(p), np.zeros_like(p), np.zeros_like(p)
    opt = RMSprop(model, **options)
    for step in range(50):
        X, y = batches[step % len(batches)]
        g = reference_gradient(p, model, X, y)
        p, v, c, buf = ref.rmsprop_step(p, g, v, c, buf, **full)
        model.loss_and_grad(X, y, bp.CrossEntropyLoss())
        opt.step()
    np.testing.assert_allclose(model.params, p, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(opt.state["square_avg"], v, rtol=1e-10, atol=1e-16)
    # only the buffers the options need exist
    assert set(opt.state) == ({"square_avg"} | ({"grad_avg"} if full["centered"] else set())
                              | ({"momentum_buffer"} if full["momentum"] else set()))
    if full["centered"]:
        np.testing.assert_allclose(opt.state["grad_avg"], c, rtol=1e-10, atol=1e-14)
    if full["momentum"]:
        np.testing.assert_allclose(opt.state["momentum_buffer"], buf, rtol=1e-10, atol=1e-12)


RPROP_CASES = [dict(), dict(lr=0.05, etas=(0.3, 1.5)),
               dict(lr=0.02, step_sizes=(1e-3, 0.05)),     # both bounds are reached
               dict(lr=0.1, etas=(0.5, 1.2), step_sizes=(0.0, 0.2))]


@pytest.mark.parametrize("options", RPROP_CASES, ids=_ids)
def test_rprop_trajectory_equals_reference(options, rng):
    model, batches = setup(rng)
    full = {"lr": 0.01, "etas": (0.5, 1.2), "step_sizes": (1e-6, 50.0), **options}
    p = model.params.copy()
    prev, delta = np.zeros_like(p), np.full_like(p, full["lr"])
    opt = Rprop(model, **options)
    rests = hit_low = hit_high = 0
    for step in range(50):
        X, y = batches[step % len(batches)]
        g = reference_gradient(p, model, X, y)
        p, prev, delta = ref.irprop_minus_step(p, g, prev, delta, *full["etas"],
                                               *full["step_sizes"])
        rests += int((prev == 0).sum())
        hit_low += int((delta == full["step_sizes"][0]).sum())
        hit_high += int((delta == full["step_sizes"][1]).sum())
        model.loss_and_grad(X, y, bp.CrossEntropyLoss())
        grads = model.grads.copy()
        opt.step()
        np.testing.assert_array_equal(model.grads, grads)      # read, never written
    np.testing.assert_allclose(model.params, p, rtol=1e-10, atol=1e-12)
    np.testing.assert_array_equal(opt.state["prev"] == 0, prev == 0)
    np.testing.assert_allclose(opt.state["prev"], prev, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(opt.state["step_size"], delta, rtol=1e-10)
    assert rests > 0                                 # sign flips happened and were forgotten
    if options.get("step_sizes") == (1e-3, 0.05):
        assert hit_low > 0 and hit_high > 0


def test_rprop_follows_the_hand_worked_rule():
    """One weight, gradients +1, +2, -1, +3 with lr 0.1, etas (0.5, 1.2):
    step 1: no previous gradient -> step stays 0.1, p = 1 - 0.1 = 0.9
    step 2: same sign -> step 0.12, p = 0.9 - 0.12 = 0.78
    step 3: sign flip -> step 0.06, weight rests, remembered gradient 0
    step 4: product with 0 -> step stays 0.06, p = 0.78 - 0.06 = 0.72"""
    model = bp.Model([bp.Dense(1, 1)], seed=0)
    model.params[...] = [1.0, 0.0]
    opt = Rprop(model, lr=0.1)
    want = [(0.9, 0.1), (0.78, 0.12), (0.78, 0.06), (0.72, 0.06)]
    for g, (p, step) in zip([1.0, 2.0, -1.0, 3.0], want):
        model.grads[...] = [g, 0.0]
        opt.step()
        assert model.params[0] == pytest.approx(p, rel=1e-15)
        assert opt.state["step_size"][0] == pytest.approx(step, rel=1e-15)
        assert model.grads[0] == g
    assert model.params[1] == 0.0 and opt.state["step_size"][1] == 0.1   # zero gradient: rests


def test_rprop_lr_outside_the_bounds_is_clamped_at_the_first_step():
    """As torch's code: every step size is clamped each step, so lr = 100 moves by 50."""
    model = bp.Model([bp.Dense(1, 1)], seed=0)
    model.params[...] = 0.0
    opt = Rprop(model, lr=100.0)
    model.grads[...] = [1.0, -1.0]
    opt.step()
    np.testing.assert_array_equal(model.params, [-50.0, 50.0])
    np.testing.assert_array_equal(opt.state["step_size"], [50.0, 50.0])


def test_rmsprop_centered_variance_rounded_below_zero_is_clamped():
    """v - c**2 can round below 0 when the gradient is constant; torch then gives NaN,
    the kernel uses 0 (so the denominator is eps)."""
    p, g = np.array([1.0]), np.array([1.0])
    v, c, empty = np.array([1.0]), np.array([1.0 + 1e-15]), np.empty(0)
    _flat.rmsprop(p, g, v, c, empty, 1e-3, 0.5, 1e-8, 0.0, 0.0, True)
    assert v[0] - c[0] ** 2 < 0
    assert p[0] == 1.0 - 1e-3 * (1.0 / 1e-8)


# ============================================ float32, state, allocations, grads
NEW_OPTIMIZERS = {
    "adamw": lambda m: AdamW(m, lr=0.01),
    "rmsprop": lambda m: RMSprop(m, lr=0.005),
    "rmsprop-all": lambda m: RMSprop(m, lr=0.005, momentum=0.9, centered=True,
                                     weight_decay=0.01),
    "rprop": lambda m: Rprop(m),
}


@pytest.mark.parametrize("name", NEW_OPTIMIZERS)
def test_float32_runs_close_to_float64(name, rng):
    model64, batches = setup(rng)
    model32 = bp.Model([bp.Dense(4, 8, "tanh"), bp.Dense(8, 3)], dtype=np.float32, seed=0)
    model32.params[...] = model64.params
    opt64, opt32 = NEW_OPTIMIZERS[name](model64), NEW_OPTIMIZERS[name](model32)
    _train(model64, opt64, batches, 10)
    _train(model32, opt32, batches, 10)
    assert model32.params.dtype == np.float32
    assert all(buf.dtype == np.float32 for buf in opt32.state.values())
    assert set(opt32.state) == set(opt64.state)
    np.testing.assert_allclose(model32.params, model64.params, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", NEW_OPTIMIZERS)
def test_state_dict_resume_equals_uninterrupted_run(name, rng):
    make = NEW_OPTIMIZERS[name]
    model, batches = setup(rng)
    start = model.params.copy()
    opt = make(model)
    _train(model, opt, batches, 30)
    uninterrupted = model.params.copy()

    model.params[...] = start
    opt = make(model)
    _train(model, opt, batches, 12)
    saved_params, saved_state = model.params.copy(), opt.state_dict()
    _train(model, opt, batches, 20, start=12)            # diverge, then restore
    model.params[...] = saved_params
    resumed = make(model)
    resumed.load_state_dict(saved_state)
    assert resumed.steps == 12
    _train(model, resumed, batches, 30, start=12)
    np.testing.assert_array_equal(model.params, uninterrupted)


def test_load_state_dict_checks_the_buffers_the_options_need(rng):
    model, batches = setup(rng)
    plain = RMSprop(model)
    _train(model, plain, batches, 2)
    state = plain.state_dict()
    assert sorted(state["state"]) == ["square_avg"]
    RMSprop(model).load_state_dict(state)                       # momentum 0: one buffer
    with_momentum = {**state, "hyperparameters": {**state["hyperparameters"], "momentum": 0.9}}
    target = RMSprop(model)
    with pytest.raises(ValueError, match=re.escape(
            "state_dict['state'] must be empty or hold ['square_avg', 'momentum_buffer'] and "
            "no names outside ['square_avg', 'momentum_buffer', 'grad_avg']; got keys "
            "[\"'square_avg'\"]")):
        target.load_state_dict(with_momentum)
    assert target.steps == 0 and target.momentum == 0.0 and not target.state   # unchanged
    with pytest.raises(ValueError, match="must be empty or hold"):
        target.load_state_dict({**state, "state": {**state["state"], "exp_avg": np.zeros(67)}})


def test_switching_momentum_on_later_creates_its_buffer(rng):
    model, batches = setup(rng)
    opt = RMSprop(model, lr=0.005)
    _train(model, opt, batches, 3)
    opt.momentum = 0.9
    square_avg = opt.state["square_avg"]
    _train(model, opt, batches, 5, start=3)
    assert opt.state["square_avg"] is square_avg          # kept, not recreated
    assert opt.state["momentum_buffer"].any()


def test_rprop_step_sizes_start_at_lr_in_the_models_dtype(rng):
    model, batches = setup(rng, np.float32)
    opt = Rprop(model, lr=0.03)
    model.zero_grad()
    opt.step()
    assert opt.state["step_size"].dtype == np.float32
    np.testing.assert_array_equal(opt.state["step_size"], np.float32(0.03))
    assert not opt.state["prev"].any()


@pytest.mark.parametrize("name", NEW_OPTIMIZERS)
def test_steps_never_write_the_gradient(name, rng):
    model, batches = setup(rng)
    opt = NEW_OPTIMIZERS[name](model)
    for step in range(4):
        model.loss_and_grad(*batches[step], bp.CrossEntropyLoss())
        grads = model.grads.copy()
        opt.step()
        np.testing.assert_array_equal(model.grads, grads)


def test_kernels_take_read_only_gradients(rng):
    grads = rng.normal(size=6)
    grads.setflags(write=False)
    p, a, b, c = (np.zeros(6) for _ in range(4))
    _flat.adamw(p, grads, a, b, 0.1, 0.9, 0.999, 1e-8, 0.01, 0.1, 0.001)
    _flat.rmsprop(p, grads, a, b, c, 0.1, 0.9, 1e-8, 0.0, 0.9, True)
    _flat.rprop(p, grads, a, np.full(6, 0.1), 0.5, 1.2, 1e-6, 50.0)
    assert np.isfinite(p).all() and p.any()


@pytest.mark.parametrize("name", NEW_OPTIMIZERS)
def test_step_allocates_no_arrays_after_the_first(name, rng):
    model = bp.Model([bp.Dense(64, 64, "relu"), bp.Dense(64, 8)], seed=0)
    model.grads[...] = rng.normal(size=model.n_params)
    opt = NEW_OPTIMIZERS[name](model)
    assert numpy_allocations_during(opt.step, repeat=5) < 4096
    assert numpy_allocations_during(lambda: clip_grad_value(model, 0.5), repeat=5) < 4096


# ========================================================== clip_grad_value
@pytest.mark.parametrize("clip", [1e-3, 0.5, 1e6])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_clip_grad_value_equals_np_clip(clip, dtype, rng):
    model, _ = setup(rng, dtype)
    model.grads[...] = rng.normal(size=model.n_params)
    model.grads[:3] = [np.nan, np.inf, -np.inf]
    grads = model.grads
    expected = np.clip(model.grads, dtype(-clip), dtype(clip))
    assert clip_grad_value(model, clip) is None
    assert model.grads is grads                                 # in place
    np.testing.assert_array_equal(model.grads, expected)
    assert np.isnan(model.grads[0]) and model.grads[1] == dtype(clip)


# ================================================================ bad input
def msg(argument, expected, came):
    """A match= regex demanding the argument's name, what was expected and what came."""
    parts = [rf"(?<![\w']){re.escape(argument)}(?![\w'])", re.escape(expected), re.escape(came)]
    return "(?s)" + "".join(f"(?=.*?{p})" for p in parts)


BAD_HYPER = [
    (AdamW, dict(lr=-0.1), ValueError, msg("lr", "finite number in [0.0, inf]", "got -0.1")),
    (AdamW, dict(betas=(0.9, 1.0)), ValueError, msg("betas[1]", "[0.0, 1.0)", "got 1.0")),
    (AdamW, dict(betas=0.9), ValueError, msg("betas", "pair (beta1, beta2)", "0.9")),
    (AdamW, dict(eps=0.0), ValueError, msg("eps", "(0.0, inf]", "got 0.0")),
    (AdamW, dict(weight_decay=-1e-2), ValueError,
     msg("weight_decay", "[0.0, inf]", "got -0.01")),
    (AdamW, dict(weight_decay="0.1"), TypeError, msg("weight_decay", "real number", "str")),
    (RMSprop, dict(lr=float("nan")), ValueError, msg("lr", "finite number", "got nan")),
    (RMSprop, dict(alpha=1.0), ValueError, msg("alpha", "[0.0, 1.0)", "got 1.0")),
    (RMSprop, dict(alpha=-0.5), ValueError, msg("alpha", "[0.0, 1.0)", "got -0.5")),
    (RMSprop, dict(eps=-1e-8), ValueError, msg("eps", "(0.0, inf]", "got -1e-08")),
    (RMSprop, dict(momentum=1.5), ValueError, msg("momentum", "[0.0, 1.0)", "got 1.5")),
    (RMSprop, dict(weight_decay=float("inf")), ValueError,
     msg("weight_decay", "finite number", "got inf")),
    (RMSprop, dict(centered=1), TypeError, msg("centered", "True or False", "got int 1")),
    (Rprop, dict(lr=-1.0), ValueError, msg("lr", "[0.0, inf]", "got -1.0")),
    (Rprop, dict(etas=(0.5,)), ValueError,
     msg("etas", "pair (eta_minus, eta_plus)", "a tuple of length 1")),
    (Rprop, dict(etas=(1.0, 1.2)), ValueError, msg("etas[0]", "(0.0, 1.0)", "got 1.0")),
    (Rprop, dict(etas=(0.5, 1.0)), ValueError, msg("etas[1]", "(1.0, inf]", "got 1.0")),
    (Rprop, dict(etas=(0.5, None)), TypeError, msg("etas[1]", "real number", "NoneType")),
    (Rprop, dict(step_sizes=(-1e-6, 50)), ValueError,
     msg("step_sizes[0]", "[0.0, inf]", "got -1e-06")),
    (Rprop, dict(step_sizes=(1.0, 0.5)), ValueError,
     msg("step_sizes", "step_min <= step_max", "got (1.0, 0.5)")),
    (Rprop, dict(step_sizes="small"), ValueError,
     msg("step_sizes", "pair (step_min, step_max)", "str 'small'")),
]


@pytest.mark.parametrize("cls, options, error, pattern", BAD_HYPER,
                         ids=[f"{c.__name__}-{_ids(o)}" for c, o, _, _ in BAD_HYPER])
def test_bad_hyperparameters_raise_naming_the_argument(cls, options, error, pattern, rng):
    model, _ = setup(rng)
    with pytest.raises(error, match=pattern):
        cls(model, **options)
    opt = cls(model)
    before = opt.hyperparameters
    name, value = next(iter(options.items()))
    with pytest.raises(error, match=pattern):
        setattr(opt, name, value)                              # later assignment too
    assert opt.hyperparameters == before
    state = opt.state_dict()
    state["hyperparameters"][name] = value
    with pytest.raises(error, match=msg(f"hyperparameters['{name}']", "", "")):
        opt.load_state_dict(state)


@pytest.mark.parametrize("cls", [AdamW, RMSprop, Rprop])
def test_optimizers_need_a_model(cls):
    with pytest.raises(TypeError, match="model must be a bpcore Model; got ndarray"):
        cls(np.zeros(3))


@pytest.mark.parametrize("clip, error, pattern", [
    (0.0, ValueError, msg("clip_value", "(0.0, inf]", "got 0.0")),
    (-1.0, ValueError, msg("clip_value", "(0.0, inf]", "got -1.0")),
    (float("nan"), ValueError, msg("clip_value", "finite number", "got nan")),
    ("1", TypeError, msg("clip_value", "real number", "str '1'")),
])
def test_clip_grad_value_rejects_bad_limits(clip, error, pattern, rng):
    model, _ = setup(rng)
    model.grads[...] = rng.normal(size=model.n_params)
    grads = model.grads.copy()
    with pytest.raises(error, match=pattern):
        clip_grad_value(model, clip)
    np.testing.assert_array_equal(model.grads, grads)
    with pytest.raises(TypeError, match="model must be a bpcore Model; got list"):
        clip_grad_value([model], 1.0)


# ================================================================== torch
def _torch_run(torch, make_torch_opt, model, batches, steps=50):
    """The same network trained by a torch optimizer over one flat float64 tensor
    (gradients from the NumPy reference at torch's own parameters)."""
    flat = torch.tensor(model.params.copy(), dtype=torch.float64, requires_grad=True)
    opt = make_torch_opt([flat])
    for step in range(steps):
        X, y = batches[step % len(batches)]
        opt.zero_grad()
        flat.grad = torch.tensor(reference_gradient(flat.detach().numpy(), model, X, y))
        opt.step()
    return flat.detach().numpy().copy(), opt


def _compare_with_torch(torch_class, bp_class, options, rng):
    torch = pytest.importorskip("torch")
    model, batches = setup(rng)
    start = model.params.copy()
    want, torch_opt = _torch_run(torch, lambda p: getattr(torch.optim, torch_class)(p, **options),
                                 model, batches)
    model.params[...] = start
    opt = bp_class(model, **options)
    _train(model, opt, batches, 50)
    np.testing.assert_allclose(model.params, want, rtol=1e-10, atol=1e-12)
    assert np.abs(model.params - start).max() > 1e-2              # the parameters did move
    return opt, torch_opt.state[torch_opt.param_groups[0]["params"][0]]


@pytest.mark.parametrize("options", [dict(), dict(lr=0.01, weight_decay=0.1),
                                     dict(lr=0.02, betas=(0.8, 0.95), eps=1e-6,
                                          weight_decay=0.5)], ids=_ids)
def test_adamw_equals_torch(options, rng):
    opt, state = _compare_with_torch("AdamW", AdamW, options, rng)
    for name in ("exp_avg", "exp_avg_sq"):
        np.testing.assert_allclose(opt.state[name], state[name].numpy(), rtol=1e-9, atol=1e-15)


@pytest.mark.parametrize("options", RMSPROP_CASES, ids=_ids)
def test_rmsprop_equals_torch(options, rng):
    opt, state = _compare_with_torch("RMSprop", RMSprop, options, rng)
    for name in opt.state:
        np.testing.assert_allclose(opt.state[name], state[name].numpy(), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("options", RPROP_CASES + [dict(lr=100.0), dict(lr=1e-9)], ids=_ids)
def test_rprop_equals_torch(options, rng):
    opt, state = _compare_with_torch("Rprop", Rprop, options, rng)
    np.testing.assert_allclose(opt.state["step_size"], state["step_size"].numpy(), rtol=1e-12)
    np.testing.assert_allclose(opt.state["prev"], state["prev"].numpy(), rtol=1e-10,
                               atol=1e-14)

"""Optimizer trajectories against NumPy references of PyTorch's update rules."""
import numpy as np
import numpy_reference as ref
import pytest
from conftest import layer_dicts, randomize

import bpcore as bp


def setup(rng, dtype=np.float64):
    model = bp.Model([bp.Dense(4, 8, "tanh"), bp.Dense(8, 3)], dtype=dtype, seed=0)
    randomize(model, rng)
    batches = [(rng.normal(size=(10, 4)), rng.integers(0, 3, 10)) for _ in range(5)]
    return model, batches


def reference_gradient(params, model, X, y):
    """Flat gradient of the mean cross-entropy at `params`, by the NumPy reference."""
    probe = bp.Model([bp.Dense(l.n_in, l.n_out, l.activation) for l in model.layers])
    probe.params[...] = params
    layers = layer_dicts(probe)
    out, caches = ref.network_forward(layers, X)
    _, grad_out = ref.cross_entropy(out, y)
    grads, _ = ref.network_backward(layers, caches, grad_out)
    return np.concatenate([np.concatenate([g["W"].ravel(), g["b"]]) for g in grads])


SGD_CASES = [
    dict(lr=0.1),
    dict(lr=0.1, weight_decay=0.01),
    dict(lr=0.05, momentum=0.9),
    dict(lr=0.05, momentum=0.9, nesterov=True),
    dict(lr=0.05, momentum=0.5, nesterov=True, weight_decay=0.1),
]


def case_id(options):
    return ",".join(f"{k}={v}" for k, v in options.items())


@pytest.mark.parametrize("options", SGD_CASES, ids=case_id)
def test_sgd_trajectory_equals_reference(options, rng):
    model, batches = setup(rng)
    p, buf = model.params.copy(), np.zeros(model.n_params)
    opt = bp.SGD(model, **options)
    for step in range(50):
        X, y = batches[step % len(batches)]
        g = reference_gradient(p, model, X, y)
        p, buf = ref.sgd_step(p, g, buf, options["lr"], options.get("momentum", 0.0),
                              options.get("weight_decay", 0.0), options.get("nesterov", False))
        opt.zero_grad()
        model.loss_and_grad(X, y, bp.CrossEntropyLoss(), accumulate=True)
        opt.step()
    np.testing.assert_allclose(model.params, p, rtol=1e-10, atol=1e-12)
    assert opt.steps == 50


ADAM_CASES = [dict(lr=0.01), dict(lr=0.02, betas=(0.8, 0.99), eps=1e-6),
              dict(lr=0.01, weight_decay=0.05)]


@pytest.mark.parametrize("options", ADAM_CASES, ids=case_id)
def test_adam_trajectory_equals_reference(options, rng):
    model, batches = setup(rng)
    p = model.params.copy()
    m, v = np.zeros_like(p), np.zeros_like(p)
    beta1, beta2 = options.get("betas", (0.9, 0.999))
    opt = bp.Adam(model, **options)
    for step in range(1, 51):
        X, y = batches[step % len(batches)]
        g = reference_gradient(p, model, X, y)
        p, m, v = ref.adam_step(p, g, m, v, step, options["lr"], beta1, beta2,
                                options.get("eps", 1e-8), options.get("weight_decay", 0.0))
        model.loss_and_grad(X, y, bp.CrossEntropyLoss())
        opt.step()
    np.testing.assert_allclose(model.params, p, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(opt.state["exp_avg"], m, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(opt.state["exp_avg_sq"], v, rtol=1e-10, atol=1e-16)


@pytest.mark.parametrize("make", [lambda m: bp.SGD(m, lr=0.05, momentum=0.9),
                                  lambda m: bp.Adam(m, lr=0.01)], ids=["sgd", "adam"])
def test_state_dict_resume_equals_uninterrupted_run(make, rng):
    model, batches = setup(rng)
    start = model.params.copy()

    def run(model, opt, steps):
        for step in steps:
            X, y = batches[step % len(batches)]
            model.loss_and_grad(X, y, bp.CrossEntropyLoss())
            opt.step()

    opt = make(model)
    run(model, opt, range(30))
    uninterrupted = model.params.copy()

    model.params[...] = start
    opt = make(model)
    run(model, opt, range(12))
    saved_params, saved_state = model.params.copy(), opt.state_dict()
    run(model, opt, range(12, 20))                 # diverge, then restore
    model.params[...] = saved_params
    resumed = make(model)
    resumed.load_state_dict(saved_state)
    assert resumed.steps == 12
    run(model, resumed, range(12, 30))
    np.testing.assert_array_equal(model.params, uninterrupted)


def test_state_dict_is_a_copy(rng):
    model, batches = setup(rng)
    opt = bp.SGD(model, lr=0.1, momentum=0.9)
    model.loss_and_grad(*batches[0], bp.CrossEntropyLoss())
    opt.step()
    state = opt.state_dict()
    state["state"]["momentum_buffer"][...] = 99.0
    assert not (opt.state["momentum_buffer"] == 99.0).any()
    assert state["hyperparameters"] == {"lr": 0.1, "momentum": 0.9, "nesterov": False,
                                        "weight_decay": 0.0}


def test_zero_grad_and_step_never_zero_behind_the_callers_back(rng):
    model, batches = setup(rng)
    opt = bp.Adam(model, lr=0.01)
    model.loss_and_grad(*batches[0], bp.CrossEntropyLoss())
    grads = model.grads.copy()
    opt.step()
    np.testing.assert_array_equal(model.grads, grads)
    opt.zero_grad()
    assert not model.grads.any()


def test_learning_rate_can_be_changed_between_steps(rng):
    model, batches = setup(rng)
    opt = bp.SGD(model, lr=0.1)
    model.loss_and_grad(*batches[0], bp.CrossEntropyLoss())
    p = model.params.copy()
    opt.lr = 0.5
    opt.step()
    np.testing.assert_allclose(model.params, p - 0.5 * model.grads, rtol=1e-15)
    with pytest.raises(ValueError, match="lr must be a finite number"):
        opt.lr = -1.0
    assert opt.lr == 0.5


@pytest.mark.parametrize("max_norm", [0.1, 1.0, 1e6])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_clip_grad_norm_follows_the_rule(max_norm, dtype, rng):
    model, _ = setup(rng, dtype)
    model.grads[...] = rng.normal(size=model.n_params)
    g = model.grads.astype(np.float64)
    total = np.sqrt((g * g).sum())
    returned = bp.clip_grad_norm(model, max_norm)
    np.testing.assert_allclose(returned, total, rtol=1e-6 if dtype == np.float32 else 1e-12)
    coefficient = max_norm / (total + 1e-6)
    expected = g * coefficient if coefficient < 1 else g
    np.testing.assert_allclose(model.grads, expected, rtol=1e-6 if dtype == np.float32 else 1e-14)
    if coefficient < 1:
        np.testing.assert_allclose(np.linalg.norm(model.grads.astype(np.float64)), max_norm,
                                   rtol=1e-5)


def test_float32_optimizers_keep_float32_state(rng):
    model, batches = setup(rng, np.float32)
    for opt in (bp.SGD(model, lr=0.1, momentum=0.9), bp.Adam(model)):
        model.loss_and_grad(*batches[0], bp.CrossEntropyLoss())
        opt.step()
        assert all(buf.dtype == np.float32 for buf in opt.state.values())
    assert model.params.dtype == np.float32

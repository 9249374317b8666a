"""Memory safety from Python: no assignment, replacement or rebinding of a buffer the
kernels point into may reach them unchecked.

Each case either raises a clear error, with parameters, gradients and optimizer state
unchanged, or keeps working correctly: then the oracle is a fresh, untouched model
and optimizer trained on the same data, given the same values the right way (written
in place), whose parameters and state must come out bit-identical. The kernels'
and the engine's own checks are probed directly too, with arrays that would make
them run off a buffer (the arrays must come out unchanged).

These tests are the ones CI runs under AddressSanitizer (.ci/run): there a write or a
read out of bounds is a report and a failed run, whatever the test asserts.
"""
import copy

import numpy as np
import pytest

import bpcore as bp
from bpcore import _dense, _engine, _flat, _losses
from bpcore.nn import fused

X = np.random.default_rng(0).normal(size=(8, 3))
Y = np.random.default_rng(1).normal(size=(8, 2))

OPTIMIZERS = {
    "sgd": lambda m: bp.SGD(m, lr=0.1),
    "momentum": lambda m: bp.SGD(m, lr=0.1, momentum=0.9),
    "nesterov": lambda m: bp.SGD(m, lr=0.05, momentum=0.8, nesterov=True,
                                 weight_decay=0.01),
    "adam": lambda m: bp.Adam(m, lr=0.01),
    "adamw": lambda m: bp.AdamW(m, lr=0.01),
    "rmsprop": lambda m: bp.RMSprop(m, lr=0.01, momentum=0.5, centered=True),
    "rprop": lambda m: bp.Rprop(m, lr=0.01),
}


def make(name, dtype=np.float64):
    """A model with a scaled-sigmoid layer (its ``c``) and an optimizer, seeded."""
    model = bp.Model([bp.Dense(3, 5, "tanh"), bp.Dense(5, 4, "scaled_sigmoid"),
                      bp.Dense(4, 2)], dtype=dtype, seed=3)
    return model, OPTIMIZERS[name](model)


def step(model, optimizer, path):
    """One training step: the fused train_step or loss_and_grad then step()."""
    if path == "fused":
        model.train_step(X, Y, bp.MSELoss(), optimizer, keep_grads=True)
    else:
        model.loss_and_grad(X, Y, bp.MSELoss())
        optimizer.step()


def snapshot(model, optimizer):
    return (model.params.copy(), model.grads.copy(), optimizer.steps,
            {name: buf.copy() for name, buf in optimizer.state.items()})


def assert_same(a, b):
    params_a, grads_a, steps_a, state_a = a
    params_b, grads_b, steps_b, state_b = b
    np.testing.assert_array_equal(params_a, params_b)
    np.testing.assert_array_equal(grads_a, grads_b)
    assert steps_a == steps_b
    assert sorted(state_a) == sorted(state_b)
    for name in state_a:
        np.testing.assert_array_equal(state_a[name], state_b[name])


def trained(name, path, steps=2, dtype=np.float64):
    model, optimizer = make(name, dtype)
    for _ in range(steps):
        step(model, optimizer, path)
    return model, optimizer


PATHS = ["fused", "two_call"]


# ------------------------------------------------------------------ refused
def bad_state_assignments(optimizer, n):
    """(description, callable) pairs that must raise, by the public API."""
    name = optimizer.state_names()[0]
    state = optimizer.state
    return [
        ("short", lambda: state.__setitem__(name, np.zeros(3))),
        ("long", lambda: state.__setitem__(name, np.zeros(n + 5))),
        ("2-D", lambda: state.__setitem__(name, np.zeros((n, 1)))),
        ("integer", lambda: state.__setitem__(name, np.zeros(n, np.int64))),
        ("complex", lambda: state.__setitem__(name, np.zeros(n, complex))),
        ("object", lambda: state.__setitem__(name, "not an array")),
        ("unknown name", lambda: state.__setitem__("bogus", np.zeros(n))),
        ("update", lambda: state.update({name: np.zeros(3)})),
        ("setdefault", lambda: (state.pop(name), state.setdefault(name, np.zeros(3)))),
        ("|=", lambda: state.__ior__({name: np.zeros(3)})),
        ("dict", lambda: setattr(optimizer, "state", {name: np.zeros(3)})),
        ("not a mapping", lambda: setattr(optimizer, "state", [np.zeros(n)])),
        ("model", lambda: setattr(optimizer, "model", bp.Model([bp.Dense(9, 9)]))),
    ]


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_bad_state_assignments_are_refused_and_change_nothing(name, path):
    model, optimizer = trained(name, path)
    if not optimizer.state_names():
        optimizer = bp.SGD(model, lr=0.1, momentum=0.5)     # plain SGD keeps no buffer
        step(model, optimizer, path)
    oracle_model, oracle = copy.deepcopy((model, optimizer))
    for what, assign in bad_state_assignments(optimizer, model.n_params):
        before = snapshot(model, optimizer)
        kept = dict(optimizer.state)
        with pytest.raises((ValueError, TypeError, AttributeError)) as error:
            assign()
        message = str(error.value)
        assert "state" in message or "model" in message, (what, message)
        if what == "setdefault":       # (its pop went first, on purpose: put it back)
            first = optimizer.state_names()[0]
            dict.__setitem__(optimizer.state, first, kept[first])
        assert_same(snapshot(model, optimizer), before)
        assert all(optimizer.state[k] is kept[k] for k in kept), what   # same buffers
    # and training goes on exactly as an untouched copy's
    for _ in range(2):
        step(model, optimizer, path)
        step(oracle_model, oracle, path)
    assert_same(snapshot(model, optimizer), snapshot(oracle_model, oracle))


def bypasses(optimizer, n, dtype):
    """Buffers put into ``state`` around its checks (dict.__setitem__, object.__setattr__):
    the next step must refuse them."""
    name = optimizer.state_names()[0]
    other = np.float32 if dtype == np.float64 else np.float64
    reversed_view = np.zeros(n, dtype)[::-1]
    strided = np.zeros(2 * n, dtype)[::2]
    read_only = np.zeros(n, dtype)
    read_only.flags.writeable = False
    return [
        ("short", lambda s: dict.__setitem__(s, name, np.zeros(3, dtype))),
        ("other dtype", lambda s: dict.__setitem__(s, name, np.zeros(n, other))),
        ("reversed", lambda s: dict.__setitem__(s, name, reversed_view)),
        ("strided", lambda s: dict.__setitem__(s, name, strided)),
        ("read-only", lambda s: dict.__setitem__(s, name, read_only)),
        ("a list", lambda s: dict.__setitem__(s, name, [0.0] * n)),
        ("plain dict", lambda s: object.__setattr__(optimizer, "state",
                                                    {**s, name: np.zeros(3, dtype)})),
    ]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("name", ["momentum", "nesterov", "adam", "adamw", "rmsprop",
                                  "rprop"])
def test_state_buffers_put_in_around_the_checks_are_refused_at_the_next_step(
        name, path, dtype):
    n_cases = len(bypasses(make(name, dtype)[1], 1, dtype))
    for case in range(n_cases):
        model, optimizer = trained(name, path, dtype=dtype)
        what, put = bypasses(optimizer, model.n_params, dtype)[case]
        if path == "two_call":
            model.loss_and_grad(X, Y, bp.MSELoss())
        good = dict(optimizer.state)
        put(optimizer.state)
        before = snapshot(model, optimizer)
        bad = dict(optimizer.state)
        with pytest.raises(ValueError, match=r"state\[") as error:
            if path == "fused":
                model.train_step(X, Y, bp.MSELoss(), optimizer)
            else:
                optimizer.step()
        assert "model.params" in str(error.value), what
        params, grads, steps, _ = before
        np.testing.assert_array_equal(model.params, params)
        np.testing.assert_array_equal(model.grads, grads)
        assert optimizer.steps == steps
        for k, buf in bad.items():      # nothing written into any buffer either
            if isinstance(buf, np.ndarray) and k in before[3]:
                np.testing.assert_array_equal(buf, before[3][k])
        # the good buffers, assigned back, train on
        object.__setattr__(optimizer, "state", {})
        optimizer.state = good
        step(model, optimizer, path)


def test_an_optimizer_moved_to_another_model_around_the_check_is_refused():
    model, optimizer = trained("adam", "fused")
    bigger = bp.Model([bp.Dense(3, 40, "relu"), bp.Dense(40, 2)], seed=0)
    with pytest.raises(AttributeError, match="model is fixed"):
        optimizer.model = bigger
    object.__setattr__(optimizer, "model", bigger)
    before = bigger.params.copy()
    for call in (lambda: bigger.train_step(X, Y, bp.MSELoss(), optimizer),
                 lambda: (bigger.loss_and_grad(X, Y, bp.MSELoss()), optimizer.step())):
        with pytest.raises(ValueError, match=r"state\['exp_avg'\].*model.params"):
            call()
        np.testing.assert_array_equal(bigger.params, before)
    with pytest.raises(TypeError, match="optimizer must be an Optimizer of this model"):
        model.train_step(X, Y, bp.MSELoss(), optimizer)


@pytest.mark.parametrize("path", PATHS)
def test_model_and_layer_buffers_cannot_be_rebound(path):
    model, optimizer = trained("adam", path)
    other = bp.Model([bp.Dense(3, 5)], seed=0)
    layer = model.layers[0]
    cases = [
        (lambda: setattr(model, "params", np.zeros(2)), ValueError, "params"),
        (lambda: setattr(model, "params", np.zeros(model.n_params + 1)), ValueError, "params"),
        (lambda: setattr(model, "params", np.zeros(model.n_params, int)), TypeError, "params"),
        (lambda: setattr(model, "grads", np.zeros((model.n_params, 1))), ValueError, "grads"),
        (lambda: setattr(model, "grads", None), TypeError, "grads"),
        (lambda: setattr(layer, "W", np.zeros((1, 1))), ValueError, "W"),
        (lambda: setattr(layer, "W", np.zeros((5, 3))), ValueError, "W"),
        (lambda: setattr(layer, "b", np.zeros(6)), ValueError, "b"),
        (lambda: setattr(layer, "dW", np.zeros(15)), ValueError, "dW"),
        (lambda: setattr(layer, "db", "zeros"), TypeError, "db"),
        (lambda: setattr(layer, "c", np.ones(5)), AttributeError, "c"),
        (lambda: setattr(layer, "dc", np.ones(5)), AttributeError, "dc"),
        (lambda: setattr(model.layers[1], "c", np.ones(3)), ValueError, "c"),
        (lambda: setattr(layer, "model", other), AttributeError, "model"),
    ]
    for assign, kind, name in cases:
        before = snapshot(model, optimizer)
        views = [(l.W, l.b, l.dW, l.db) for l in model.layers]
        with pytest.raises(kind, match=name):
            assign()
        assert_same(snapshot(model, optimizer), before)
        assert all(a is b for old, l in zip(views, model.layers)
                   for a, b in zip(old, (l.W, l.b, l.dW, l.db)))
    # an unbound layer has no views to assign
    with pytest.raises(AttributeError, match="joins a Model"):
        bp.Dense(2, 2).W = np.zeros((2, 2))


# ------------------------------------------------------------- copied in
def copy_in_cases(model, optimizer, rng):
    """(description, on the model under test, on the oracle): assignments that copy in,
    and the in-place writes that must have the same effect."""
    n = model.n_params
    values = rng.normal(scale=0.1, size=n)
    name = optimizer.state_names()[0] if optimizer.state_names() else None
    cases = [
        ("params", lambda m, o: setattr(m, "params", values),
         lambda m, o: m.params.__setitem__(..., values)),
        ("params float32", lambda m, o: setattr(m, "params", values.astype(np.float32)),
         lambda m, o: m.params.__setitem__(..., values.astype(np.float32))),
        ("grads", lambda m, o: setattr(m, "grads", np.zeros(n)),
         lambda m, o: m.grads.fill(0)),
        ("W", lambda m, o: setattr(m.layers[0], "W", values[:15].reshape(3, 5)),
         lambda m, o: m.layers[0].W.__setitem__(..., values[:15].reshape(3, 5))),
        ("c", lambda m, o: setattr(m.layers[1], "c", np.full(4, 0.5)),
         lambda m, o: m.layers[1].c.__setitem__(..., 0.5)),
        ("b list", lambda m, o: setattr(m.layers[2], "b", [0.25, -0.25]),
         lambda m, o: m.layers[2].b.__setitem__(..., [0.25, -0.25])),
        ("state = same values", lambda m, o: setattr(o, "state", dict(o.state)),
         lambda m, o: None),
    ]
    if name is not None:
        positive = np.abs(values) + 1e-3
        cases += [
            ("state entry", lambda m, o: o.state.__setitem__(name, positive),
             lambda m, o: o.state[name].__setitem__(..., positive)),
            ("state entry float32",
             lambda m, o: o.state.__setitem__(name, positive.astype(np.float32)),
             lambda m, o: o.state[name].__setitem__(..., positive.astype(np.float32))),
            ("state update", lambda m, o: o.state.update({name: positive}),
             lambda m, o: o.state[name].__setitem__(..., positive)),
            ("del state entry", lambda m, o: o.state.__delitem__(name),
             lambda m, o: o.state[name].__setitem__(..., o._new_buffer(name))),
            ("state = {}", lambda m, o: setattr(o, "state", {}),
             lambda m, o: [buf.__setitem__(..., o._new_buffer(k))
                           for k, buf in o.state.items()]),
        ]
    return cases


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_assignments_copy_in_and_train_on_as_in_place_writes_do(name, path):
    rng = np.random.default_rng(7)
    probe = make(name)
    for what, assign, in_place in copy_in_cases(*probe, rng):
        model, optimizer = trained(name, path)
        oracle_model, oracle = trained(name, path)
        state_ids = {k: id(v) for k, v in optimizer.state.items()}
        assign(model, optimizer)
        in_place(oracle_model, oracle)
        if what not in ("del state entry", "state = {}", "state = same values"):
            # the same buffers, written into
            assert {k: id(v) for k, v in optimizer.state.items()} == state_ids, what
        for _ in range(3):
            step(model, optimizer, path)
            step(oracle_model, oracle, path)
        assert_same(snapshot(model, optimizer), snapshot(oracle_model, oracle))


@pytest.mark.parametrize("name", ["adam", "momentum", "rprop"])
def test_copies_and_pickles_keep_checked_state(name):
    import pickle
    for duplicate in (copy.deepcopy, lambda pair: pickle.loads(pickle.dumps(pair))):
        model, optimizer = trained(name, "fused")
        m2, o2 = duplicate((model, optimizer))
        assert isinstance(o2.state, type(optimizer.state)) and o2.model is m2
        with pytest.raises(ValueError, match=r"state\["):
            o2.state[o2.state_names()[0]] = np.zeros(3)
        step(m2, o2, "fused")
        step(model, optimizer, "fused")
        assert_same(snapshot(m2, o2), snapshot(model, optimizer))


# ---------------------------------------------------- the kernels themselves
def unchanged_after(call, arrays, error=ValueError, match=None):
    saved = [a.copy() for a in arrays]
    with pytest.raises(error, match=match):
        call()
    for a, s in zip(arrays, saved):
        np.testing.assert_array_equal(a, s)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_flat_kernels_refuse_buffers_of_other_lengths(dtype):
    n = 64
    p, g = np.ones(n, dtype), np.ones(n, dtype)
    full, short, none = np.ones(n, dtype), np.ones(3, dtype), np.empty(0, dtype)
    cases = [
        (lambda: _flat.adam(p, g, short, full, 0.1, 0.9, 0.99, 1e-8, 0, 1, 1), "first"),
        (lambda: _flat.adam(p, g, full, short, 0.1, 0.9, 0.99, 1e-8, 0, 1, 1), "second"),
        (lambda: _flat.adamw(p, short, full, full, 0.1, 0.9, 0.99, 1e-8, 0, 1, 1), "grads"),
        (lambda: _flat.sgd(p, g, short, 0.1, 0.9, 0.0, False), "velocity"),
        (lambda: _flat.sgd(p, g, none, 0.1, 0.9, 0.0, False), "velocity"),
        (lambda: _flat.sgd(p, short, none, 0.1, 0.0, 0.0, False), "grads"),
        (lambda: _flat.rmsprop(p, g, short, none, none, 0.1, 0.9, 1e-8, 0, 0, False),
         "square_avg"),
        (lambda: _flat.rmsprop(p, g, full, short, none, 0.1, 0.9, 1e-8, 0, 0, True),
         "grad_avg"),
        (lambda: _flat.rmsprop(p, g, full, none, short, 0.1, 0.9, 1e-8, 0, 0.5, False),
         "momentum_buffer"),
        (lambda: _flat.rprop(p, g, full, short, 0.5, 1.2, 1e-6, 50), "step_size"),
        (lambda: _flat.rprop(p, g, short, full, 0.5, 1.2, 1e-6, 50), "prev"),
        (lambda: _flat.l2(p, short, 0.1), "dW"),
    ]
    for call, name in cases:
        unchanged_after(call, [p, g, full, short], match=name)
    # unused buffers may be empty, as the optimizers pass them (NumPy reference)
    _flat.sgd(p, g, none, 0.1, 0.0, 0.0, False)
    np.testing.assert_allclose(p, 1 - 0.1, rtol=1e-6)
    _flat.rmsprop(p, g, full, none, none, 0.1, 0.9, 1e-8, 0, 0, False)
    # square_avg: 0.9 * 1 + 0.1 * 1**2 = 1; p -= 0.1 * 1 / (sqrt(1) + 1e-8)
    np.testing.assert_allclose(p, 0.9 - 0.1 / (1 + 1e-8), rtol=1e-6)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_dense_kernels_refuse_shapes_that_disagree(dtype):
    n, i, o = 9, 4, 6
    z = lambda *s: np.zeros(s, dtype)   # noqa: E731
    X, W, b, A = z(n, i), z(i, o), z(o), z(n, o)
    none1, none2 = z(0), z(0, 0)
    fw = _dense.forward
    cases = [
        (lambda: fw(X, z(i + 1, o), b, none1, none2, A, none2, none2, 0, 0.0), "W"),
        (lambda: fw(X, W, z(o + 2), none1, none2, A, none2, none2, 0, 0.0), "b"),
        (lambda: fw(X, W, b, none1, none2, z(n - 1, o), none2, none2, 0, 0.0), "A"),
        (lambda: fw(X, W, b, none1, z(2, o), A, none2, none2, 0, 0.0), "Z"),
        (lambda: fw(X, W, b, none1, none2, A, z(n, 2), none2, 1, 0.0), "D"),
        (lambda: fw(X, W, b, none1, none2, A, none2, z(1, 1), 5, 0.0), "scale"),
        (lambda: fw(X, W, b, z(o), none2, A, none2, z(n + 1, o), 5, 0.0), "G"),
        (lambda: _dense.activate(A, b, none1, none2, none2, none2, 5, 0.0), "scale"),
        (lambda: _dense.activate(A, z(1), none1, none2, none2, none2, 0, 0.0), "b"),
    ]
    bw = _dense.backward
    up, dW, db, dX = z(n, o), z(i, o), z(o), z(n, i)
    cases += [
        (lambda: bw(X, W, z(n, o + 1), none2, none2, none2, dW, db, none1, dX), "upstream"),
        (lambda: bw(X, W, up, z(n, o), none2, none2, dW, db, none1, dX), "delta"),
        (lambda: bw(X, W, up, none2, none2, none2, z(1, 1), db, none1, dX), "dW"),
        (lambda: bw(X, W, up, none2, none2, none2, dW, z(2), none1, dX), "db"),
        (lambda: bw(X, W, up, none2, z(n, o), none2, dW, db, none1, dX), "dscale"),
        (lambda: bw(X, W, up, none2, none2, none2, dW, db, none1, z(n, i + 3)), "dX"),
        (lambda: _dense.dropout(z(n, o), A, z(1, o), none2, 0.5), "D"),
        (lambda: _dense.dropout(z(2, 2), A, z(n, o), none2, 0.5), "U"),
    ]
    for call, name in cases:
        unchanged_after(call, [X, W, b, A, up, dW, db, dX], match=name)


def test_loss_kernels_refuse_shapes_and_labels_out_of_range():
    out, grad = np.zeros((5, 3)), np.zeros((5, 3))
    none = np.empty(0)
    for kernel in (_losses.mse, _losses.bce_with_logits, _losses.cross_entropy_probs,
                   _losses.poisson):
        unchanged_after(lambda k=kernel: k(out, np.zeros((5, 2)), none, grad, 1.0), [grad],
                        match="target")
        unchanged_after(lambda k=kernel: k(out, np.zeros((5, 3)), none, np.zeros((4, 3)),
                                           1.0), [grad], match="grad")
        unchanged_after(lambda k=kernel: k(out, np.zeros((5, 3)), np.ones(2), grad, 1.0),
                        [grad], match="weight")
    ce = _losses.cross_entropy_labels
    for labels, match in ((np.array([0, 1, 2, 3, 0]), r"\[0, 3\); got 3 at row 3"),
                          (np.array([0, -1, 2, 1, 0]), "got -1"),
                          (np.zeros(4, np.int64), "labels must hold 5")):
        unchanged_after(lambda lab=labels: ce(out, lab, none, grad, 1.0), [grad],
                        match=match)


def plan_of(model, optimizer, n=8):
    """A valid StepPlan of ``model`` and ``optimizer`` for n rows, as train_step makes."""
    model.train_step(X[:n], Y[:n], bp.MSELoss(), optimizer)
    return model._fused.engine.plan


@pytest.mark.parametrize("name", ["momentum", "adam"])
def test_the_engine_refuses_plans_it_would_run_off(name):
    model, optimizer = make(name)
    plan = plan_of(model, optimizer)
    _engine.Engine(plan)       # (valid)
    n_params = model.n_params
    foreign = bp.Model([bp.Dense(5, 4, "scaled_sigmoid")], seed=0).layers[0]

    def with_layer(i, **fields):
        layers = list(plan.layers)
        layers[i] = layers[i]._replace(**fields)
        return plan._replace(layers=tuple(layers))
    bad = [
        (plan._replace(state=(np.zeros(3),) * len(plan.state)), "state"),
        (plan._replace(state=tuple(np.zeros(n_params, np.float32) for _ in plan.state)),
         "state"),
        (plan._replace(state=tuple(np.zeros(2 * n_params)[::2] for _ in plan.state)),
         "state"),
        (plan._replace(grads=np.zeros(3)), "grads"),
        (plan._replace(params=np.zeros(n_params, np.float32)), "grads"),
        (plan._replace(grad_output=np.zeros((7, 2))), "grad_output"),
        (plan._replace(batch_size=16), "A"),
        (plan._replace(scalars=None), "scalars"),
        (with_layer(1, W=foreign.W), "params"),            # right shape, other memory
        (with_layer(1, W=np.zeros((4, 5))), "W"),
        (with_layer(1, c=None), "c"),
        (with_layer(1, dc=None), "dc"),
        (with_layer(1, A=np.zeros((8, 3))), "A"),
        (with_layer(1, delta=None), "delta"),
        (with_layer(1, dX=None), "dX"),
        (with_layer(2, n_in=5), "n_in"),
        (with_layer(0, W=plan.layers[0].W[::-1]), "W"),
    ]
    if name == "adam":
        bad.append((plan._replace(state=plan.state[:1]), "state"))
    for broken, match in bad:
        with pytest.raises(ValueError, match=match):
            _engine.Engine(broken)


def test_the_predictor_refuses_plans_it_would_run_off():
    model, _ = make("sgd")
    model.predict(X)
    layers = model._predictors[8].keep
    _engine.Predictor(layers, 8, False)      # (valid)
    for i, fields, match in [(0, {"A": np.zeros((8, 4))}, "A"),
                             (1, {"c": None}, "c"),
                             (2, {"W": np.zeros((2, 4))}, "W"),
                             (2, {"b": np.zeros(2, np.float32)}, "b")]:
        broken = list(layers)
        broken[i] = broken[i]._replace(**fields)
        with pytest.raises(ValueError, match=match):
            _engine.Predictor(tuple(broken), 8, False)
    with pytest.raises(ValueError, match="float32"):
        _engine.Predictor(layers, 8, True)
    with pytest.raises(ValueError, match="A"):
        _engine.Predictor(layers, 9, False)


def test_layer_views_rebound_around_the_property_reach_no_kernel_unchecked():
    # the private slot, rebound: every pass that would use it checks it
    model, optimizer = trained("adam", "fused")
    before = snapshot(model, optimizer)
    model.layers[1]._W = np.zeros((2, 2))
    model._reset_passes()          # (as changing an option does: plans are rebuilt)
    for call in (lambda: model.train_step(X, Y, bp.MSELoss(), optimizer),
                 lambda: model.loss_and_grad(X, Y, bp.MSELoss()),
                 lambda: model.predict(X)):
        with pytest.raises(ValueError, match="W"):
            call()
        assert_same(snapshot(model, optimizer), before)
    # the right shape but other memory: the fused step's plan refuses it
    model.layers[1]._W = np.zeros((5, 4))
    with pytest.raises(ValueError, match="view into params"):
        model.train_step(X, Y, bp.MSELoss(), optimizer)
    assert_same(snapshot(model, optimizer), before)


def test_a_foreign_layer_put_in_the_layer_list_reaches_no_kernel_unchecked():
    model, optimizer = trained("adam", "two_call")
    model.layers[1] = bp.Model([bp.Dense(5, 7, "relu")], seed=0).layers[0]
    model._reset_passes()
    params = model.params.copy()
    for call in (lambda: model.train_step(X, Y, bp.MSELoss(), optimizer),
                 lambda: model.loss_and_grad(X, Y, bp.MSELoss()),
                 lambda: model.predict(X)):
        with pytest.raises(ValueError):
            call()
        np.testing.assert_array_equal(model.params, params)


def test_fused_plan_is_rebuilt_over_new_buffers_and_matches_the_two_call_path():
    # the engine keeps pointers; replacing the state through the checks makes the
    # next step plan afresh over the new buffers (oracle: the two-call path)
    model, optimizer = trained("adam", "fused")
    oracle_model, oracle = copy.deepcopy((model, optimizer))
    engine = model._fused.engine
    optimizer.state = {k: v * 0.5 for k, v in optimizer.state.items()}
    oracle.state = {k: v * 0.5 for k, v in oracle.state.items()}
    model.train_step(X, Y, bp.MSELoss(), optimizer, keep_grads=True)
    assert model._fused.engine is not engine
    oracle_model.loss_and_grad(X, Y, bp.MSELoss())
    oracle.step()
    np.testing.assert_allclose(model.params, oracle_model.params, rtol=1e-12, atol=1e-15)
    for name in optimizer.state:
        np.testing.assert_allclose(optimizer.state[name], oracle.state[name], rtol=1e-12,
                                   atol=1e-15)


def test_guard_and_fit_paths_see_checked_state():
    model, optimizer = make("adam")
    model.fit(X, Y, loss="mse", optimizer=optimizer, epochs=2, batch_size=4, verbose=0)
    dict.__setitem__(optimizer.state, "exp_avg", np.zeros(3))
    params = model.params.copy()
    with pytest.raises(ValueError, match=r"state\['exp_avg'\]"):
        model.fit(X, Y, loss="mse", optimizer=optimizer, epochs=1, batch_size=4, verbose=0)
    np.testing.assert_array_equal(model.params, params)


def test_plan_rules_and_fused_build_agree():
    # every plan fused.build makes passes the engine's checks (all losses, optimizers,
    # dtypes, with dropout in eval mode)
    for dtype in (np.float64, np.float32):
        model = bp.Model([bp.Dense(3, 6, "relu", dropout=0.2), bp.Dense(6, 5, "sigmoid"),
                          bp.Dense(5, 4, "scaled_sigmoid"), bp.Dense(4, 3)],
                         dtype=dtype, seed=0).eval()
        labels = np.arange(8) % 3
        for opt in (bp.SGD(model, lr=0.1), bp.SGD(model, lr=0.1, momentum=0.9),
                    bp.Adam(model), bp.RMSprop(model)):
            for loss, target in ((bp.MSELoss(), np.zeros((8, 3))),
                                 (bp.CrossEntropyLoss(), labels),
                                 (bp.BCEWithLogitsLoss(), np.zeros((8, 3))),
                                 (bp.PoissonLoss(), np.zeros((8, 3)))):
                before = model.params.copy()
                model.train_step(X, target, loss, opt)
                assert model._fused is not None
                assert fused.declared_kind(loss) is not None
                assert np.isfinite(model.params).all()
                assert not np.array_equal(model.params, before) or opt.lr == 0

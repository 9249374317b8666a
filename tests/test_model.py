"""Model behaviour: flat buffers and views, accumulation, caches, allocation-free steps."""
import tracemalloc

import numpy as np
import pytest
from conftest import randomize

import bpcore as bp


def small_model(rng, dtype=np.float64, activation="tanh"):
    model = bp.Model([bp.Dense(3, 5, activation), bp.Dense(5, 2)], dtype=dtype, seed=0)
    randomize(model, rng)
    return model


def test_views_share_memory_with_flat_buffers(rng):
    model = bp.Model([bp.Dense(3, 4, "relu"), bp.Dense(4, 4, "scaled_sigmoid"),
                      bp.Dense(4, 2)], seed=0)
    assert model.params.ndim == 1 and model.grads.ndim == 1
    assert model.n_params == 3 * 4 + 4 + 4 * 4 + 4 + 4 + 4 * 2 + 2
    for name, param, grad in model.named_parameters():
        assert np.shares_memory(param, model.params), name
        assert np.shares_memory(grad, model.grads), name
        assert param.flags.c_contiguous and grad.flags.c_contiguous
    # the views tile the buffers exactly, in table order, with no gaps or overlaps
    offsets = [(offset, int(np.prod(shape))) for _, _, _, shape, offset in model.parameter_table]
    assert offsets[0][0] == 0
    for (start, size), (next_start, _) in zip(offsets, offsets[1:]):
        assert start + size == next_start
    assert sum(size for _, size in offsets) == model.params.size
    layer = model.layers[1]
    assert layer.W.shape == (4, 4) and layer.c.shape == (4,) and layer.dc.shape == (4,)
    assert model.layers[0].c is None


def test_in_place_write_to_params_changes_predictions(rng):
    model = small_model(rng)
    X = rng.normal(size=(4, 3))
    before = model.predict(X)
    model.params[...] = rng.normal(size=model.params.shape)     # e.g. from scipy.optimize
    W1, b1 = model.layers[0].W, model.layers[0].b
    W2, b2 = model.layers[1].W, model.layers[1].b
    expected = np.tanh(X @ W1 + b1) @ W2 + b2
    after = model.predict(X)
    assert not np.allclose(before, after)
    np.testing.assert_allclose(after, expected, rtol=1e-12)
    model.layers[1].b[...] += 1.0       # writes through a view reach the flat buffer
    np.testing.assert_allclose(model.predict(X), expected + 1.0, rtol=1e-12)


def test_two_backward_calls_equal_the_sum(rng):
    model = small_model(rng)
    X = rng.normal(size=(6, 3))
    g1, g2 = rng.normal(size=(6, 2)), rng.normal(size=(6, 2))
    model.forward(X)
    model.zero_grad()
    model.backward(g1)
    model.backward(g2)
    two_calls = model.grads.copy()
    model.zero_grad()
    model.backward(g1 + g2)
    np.testing.assert_allclose(two_calls, model.grads, rtol=1e-12, atol=1e-15)


def test_same_backward_twice_is_identical_and_zero_grad_clears(rng):
    model = small_model(rng)
    X, g = rng.normal(size=(6, 3)), rng.normal(size=(6, 2))
    model.forward(X)
    model.zero_grad()
    dX1 = model.backward(g).copy()
    first = model.grads.copy()
    model.zero_grad()
    assert not model.grads.any()
    dX2 = model.backward(g)
    assert np.array_equal(first, model.grads)
    assert np.array_equal(dX1, dX2)
    model.backward(g)
    np.testing.assert_allclose(model.grads, 2 * first, rtol=1e-15)


def test_loss_and_grad_accumulates_when_asked(rng):
    model = small_model(rng)
    X, y = rng.normal(size=(6, 3)), rng.normal(size=(6, 2))
    _, grads = model.loss_and_grad(X, y, bp.MSELoss())
    once = grads.copy()
    model.loss_and_grad(X, y, bp.MSELoss(), accumulate=True)
    np.testing.assert_allclose(model.grads, 2 * once, rtol=1e-15)
    model.loss_and_grad(X, y, bp.MSELoss())
    np.testing.assert_array_equal(model.grads, once)


def test_forward_output_is_read_only_and_predict_keeps_caches(rng):
    model = small_model(rng)
    X, g = rng.normal(size=(6, 3)), rng.normal(size=(6, 2))
    out = model.forward(X)
    with pytest.raises(ValueError):
        out[0, 0] = 1.0
    model.zero_grad()
    model.backward(g)
    expected = model.grads.copy()
    model.predict(rng.normal(size=(6, 3)))       # same batch size, other data
    model.predict(rng.normal(size=(9, 3)))
    model.zero_grad()
    model.backward(g)
    np.testing.assert_array_equal(model.grads, expected)
    predicted = model.predict(X)
    predicted[...] = 0                           # predict returns the caller's own array
    np.testing.assert_array_equal(model.predict(X), out)


def test_batch_sizes_can_alternate(rng):
    """Workspaces per batch size: interleaving sizes gives the same numbers."""
    model = small_model(rng)
    XA, XB = rng.normal(size=(8, 3)), rng.normal(size=(3, 3))
    yA = rng.normal(size=(8, 2))
    _, g = model.loss_and_grad(XA, yA, bp.MSELoss())
    expected = g.copy()
    for n in (3, 5, 7, 11, 13, 3):                 # more sizes than workspaces kept
        model.loss_and_grad(rng.normal(size=(n, 3)), rng.normal(size=(n, 2)), bp.MSELoss())
    _, g = model.loss_and_grad(XA, yA, bp.MSELoss())
    np.testing.assert_array_equal(g, expected)
    model.forward(XB)
    model.backward(np.ones((3, 2)))                # the cache of the last forward is used


def test_backward_after_evicted_workspace_still_correct(rng):
    model = small_model(rng)
    X = rng.normal(size=(2, 3))
    model.forward(X)
    for n in range(3, 10):                          # forward only via predict: no eviction
        model.predict(rng.normal(size=(n, 3)))
    model.zero_grad()
    model.backward(np.ones((2, 2)))
    reference = small_model(np.random.default_rng(1234))
    reference.params[...] = model.params
    reference.forward(X)
    reference.zero_grad()
    reference.backward(np.ones((2, 2)))
    np.testing.assert_array_equal(model.grads, reference.grads)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_float32_model_stays_float32(dtype, rng):
    model = small_model(rng, dtype=dtype)
    X = rng.normal(size=(4, 3))                     # float64 input is converted
    assert model.params.dtype == dtype and model.grads.dtype == dtype
    assert model.forward(X).dtype == dtype
    assert model.predict(X).dtype == dtype
    assert model.backward(np.ones((4, 2))).dtype == dtype
    value, grad = bp.MSELoss()(model.forward(X), np.zeros((4, 2)))
    assert grad.dtype == dtype and isinstance(value, float)


def test_seeded_initialisation(rng):
    def make(seed):
        return bp.Model([bp.Dense(50, 40, "relu"), bp.Dense(40, 30, "tanh")], seed=seed)
    a, b, c = make(7), make(7), make(8)
    assert np.array_equal(a.params, b.params)
    assert not np.array_equal(a.params, c.params)
    relu, tanh = a.layers
    # He normal for the ReLU family: std sqrt(2 / n_in); Glorot uniform otherwise
    assert abs(relu.W.std() - np.sqrt(2 / 50)) < 0.1 * np.sqrt(2 / 50)
    limit = np.sqrt(6 / (40 + 30))
    assert np.abs(tanh.W).max() <= limit and np.abs(tanh.W).max() > 0.9 * limit
    assert not relu.b.any() and not tanh.b.any()
    scaled = bp.Model([bp.Dense(2, 3, "scaled_sigmoid")], seed=0).layers[0]
    assert np.array_equal(scaled.c, np.ones(3))


def numpy_allocations_during(fn, repeat):
    """Peak bytes of NumPy array data allocated (and possibly freed) while fn runs.

    NumPy reports its data buffers to tracemalloc under its own domain; any array a
    step creates, even a temporary freed at once, shows in the peak.
    """
    fn()
    fn()                                            # first batch of a size: workspaces
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base, _ = tracemalloc.get_traced_memory()
        for _ in range(repeat):
            fn()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak - base


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "adam"])
@pytest.mark.parametrize("loss_name", ["mse", "ce", "bce", "poisson"])
def test_training_step_allocates_no_arrays_after_the_first_batch(optimizer, loss_name, rng):
    # every array a step could create is >= 256 * 8 * 8 bytes = 16 KiB, far above the
    # few hundred bytes of Python objects (memoryview handles) a step does create
    n, k = 256, 8
    model = bp.Model([bp.Dense(64, 64, "relu"), bp.Dense(64, 64, "scaled_sigmoid"),
                      bp.Dense(64, k)], seed=0)
    X = rng.normal(size=(n, 64))
    loss, y = {"mse": (bp.MSELoss(), rng.normal(size=(n, k))),
               "ce": (bp.CrossEntropyLoss(), rng.integers(0, k, n)),
               "bce": (bp.BCEWithLogitsLoss(), rng.uniform(size=(n, k))),
               "poisson": (bp.PoissonLoss(), rng.poisson(2.0, size=(n, k)).astype(float)),
               }[loss_name]
    opt = {"sgd": lambda: bp.SGD(model, lr=0.01),
           "momentum": lambda: bp.SGD(model, lr=0.01, momentum=0.9, nesterov=True),
           "adam": lambda: bp.Adam(model, lr=1e-3)}[optimizer]()

    def step():
        model.loss_and_grad(X, y, loss)
        bp.clip_grad_norm(model, 1.0)
        opt.step()

    # NumPy before 2.3 allocates a buffer inside min() and max() (the target checks
    # of bce and poisson take them); measured here, it is 0 on later versions
    reductions = numpy_allocations_during(lambda: (y.min(), y.max()), repeat=1)
    assert numpy_allocations_during(step, repeat=5) < 4096 + reductions


def test_allocation_probe_can_fail(rng):
    """The probe above sees a temporary array: a step that copies X is caught."""
    X = rng.normal(size=(256, 64))
    assert numpy_allocations_during(lambda: X.copy(), repeat=2) >= X.nbytes


def test_independent_models_train_in_parallel_threads(rng):
    """Two threads training two models (kernels run without the GIL) give the same
    result as running them in turn."""
    import threading
    models = [bp.Model([bp.Dense(32, 64, "relu"), bp.Dense(64, 4)], seed=s) for s in (1, 2)]
    copies = [bp.Model([bp.Dense(32, 64, "relu"), bp.Dense(64, 4)], seed=s) for s in (1, 2)]
    X, y = rng.normal(size=(128, 32)), rng.integers(0, 4, 128)

    def train(model):
        opt = bp.SGD(model, lr=0.05, momentum=0.9)
        for _ in range(50):
            model.loss_and_grad(X, y, bp.CrossEntropyLoss())
            opt.step()

    threads = [threading.Thread(target=train, args=(m,)) for m in models]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for m, c in zip(models, copies):
        train(c)
        np.testing.assert_array_equal(m.params, c.params)


def test_fused_training_memory_is_parameters_gradients_state_and_activations():
    """NumPy bytes alive after fused steps = params + grads + momentum + per layer the
    activations, derivative caches and deltas + the hidden layers' dL/dX + dL/doutput
    (+ at most a small W^T copy), and the steps themselves peak no higher (counted
    with tracemalloc, not timed)."""
    n, itemsize = 256, 4
    domain = [tracemalloc.DomainFilter(True, np.lib.tracemalloc_domain)]
    X = np.ones((n, 64), np.float32)
    y = np.zeros(n, np.int64)
    loss = bp.CrossEntropyLoss()
    tracemalloc.start()
    try:
        model = bp.Model([bp.Dense(64, 128, "relu"), bp.Dense(128, 64, "tanh"),
                          bp.Dense(64, 10)], dtype=np.float32, seed=0)
        optimizer = bp.SGD(model, lr=0.01, momentum=0.9)
        model.train_step(X, y, loss, optimizer)
        live = sum(t.size for t in tracemalloc.take_snapshot().filter_traces(domain).traces)
        tracemalloc.reset_peak()
        before, _ = tracemalloc.get_traced_memory()
        for _ in range(3):
            model.train_step(X, y, loss, optimizer)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    layers = model.layers
    expected = itemsize * (3 * model.n_params
                           + sum(n * l.n_out for l in layers)                     # a
                           + sum(2 * n * l.n_out for l in layers if l.has_derivative_cache)
                           + sum(n * l.n_in for l in layers[1:])                  # dL/dX
                           + n * layers[-1].n_out)                                # dL/dout
    # + a few empty placeholder arrays, and the copy of W^T the step may keep for a
    # small layer's dL/dX (at most 4,096 entries)
    assert expected <= live <= expected + 256 + 4096 * itemsize
    assert peak - before < 4096                      # no transient arrays in a step

"""The scalar engine (bpcore.scalar) and its small nn (bpcore.scalar.nn).

Oracles: central differences of the same function on plain floats, the math module,
the tutorials' hand-worked numbers, and bpcore's Cython Model.
"""
import math
import sys

import numpy as np
import pytest
from conftest import ACTIVATIONS, randomize

import bpcore as bp
from bpcore.scalar import Value
from bpcore.scalar import engine as scalar
from bpcore.scalar import nn as scalar_nn


def central_difference(f, args, i, h=1e-6):
    up, down = list(args), list(args)
    up[i] += h
    down[i] -= h
    return (f(*up) - f(*down)) / (2 * h)


def sigmoid(x):
    return 1 / (1 + math.exp(-x))


# ------------------------------------------------------------- operations
# (name, function on Values, the same function on floats, points)
BINARY = [
    ("a + b", lambda a, b: a + b, lambda a, b: a + b, [(1.5, -0.7)]),
    ("a - b", lambda a, b: a - b, lambda a, b: a - b, [(1.5, -0.7)]),
    ("a * b", lambda a, b: a * b, lambda a, b: a * b, [(1.5, -0.7)]),
    ("a / b", lambda a, b: a / b, lambda a, b: a / b, [(1.5, -0.7), (-2.0, 3.0)]),
    ("a ** b", lambda a, b: a ** b, lambda a, b: a ** b, [(1.5, -0.7), (0.3, 2.5)]),
]
UNARY = [
    ("a + 2.5", lambda a: a + 2.5, lambda a: a + 2.5),
    ("2.5 + a", lambda a: 2.5 + a, lambda a: 2.5 + a),
    ("a - 2.5", lambda a: a - 2.5, lambda a: a - 2.5),
    ("2.5 - a", lambda a: 2.5 - a, lambda a: 2.5 - a),
    ("a * 2.5", lambda a: a * 2.5, lambda a: a * 2.5),
    ("2.5 * a", lambda a: 2.5 * a, lambda a: 2.5 * a),
    ("a / 2.5", lambda a: a / 2.5, lambda a: a / 2.5),
    ("2.5 / a", lambda a: 2.5 / a, lambda a: 2.5 / a),
    ("2.5 ** a", lambda a: 2.5 ** a, lambda a: 2.5 ** a),
    ("a ** 3", lambda a: a ** 3, lambda a: a ** 3),
    ("a ** -2", lambda a: a ** -2, lambda a: a ** -2),
    ("-a", lambda a: -a, lambda a: -a),
    ("exp", lambda a: a.exp(), math.exp),
    ("tanh", lambda a: a.tanh(), math.tanh),
    ("sigmoid", lambda a: a.sigmoid(), sigmoid),
    ("relu", lambda a: a.relu(), lambda a: max(a, 0.0)),
    ("leaky_relu", lambda a: a.leaky_relu(), lambda a: a if a > 0 else 0.01 * a),
    ("leaky_relu(0.2)", lambda a: a.leaky_relu(0.2), lambda a: a if a > 0 else 0.2 * a),
]
POSITIVE_ONLY = [
    ("log", lambda a: a.log(), math.log),
    ("log1p", lambda a: a.log1p(), math.log1p),
    ("a ** 0.5", lambda a: a ** 0.5, math.sqrt),
    ("a ** 1.7", lambda a: a ** 1.7, lambda a: a ** 1.7),
]


@pytest.mark.parametrize("name, op, reference, points", BINARY, ids=[c[0] for c in BINARY])
def test_binary_operations_match_floats_and_central_differences(name, op, reference, points):
    for a, b in points:
        x, y = Value(a), Value(b)
        out = op(x, y)
        out.backward()
        assert out.data == pytest.approx(reference(a, b), rel=1e-15)
        assert x.grad == pytest.approx(central_difference(reference, (a, b), 0), rel=1e-7)
        assert y.grad == pytest.approx(central_difference(reference, (a, b), 1), rel=1e-7)


@pytest.mark.parametrize("name, op, reference", UNARY, ids=[c[0] for c in UNARY])
@pytest.mark.parametrize("a", [-1.3, 0.4, 2.2])
def test_unary_operations_match_floats_and_central_differences(name, op, reference, a):
    x = Value(a)
    out = op(x)
    out.backward()
    assert isinstance(out, Value)
    assert out.data == pytest.approx(reference(a), rel=1e-15)
    assert x.grad == pytest.approx(central_difference(reference, (a,), 0), rel=1e-7, abs=1e-9)


@pytest.mark.parametrize("name, op, reference", POSITIVE_ONLY, ids=[c[0] for c in POSITIVE_ONLY])
@pytest.mark.parametrize("a", [0.05, 0.4, 2.2])
def test_functions_of_positive_numbers(name, op, reference, a):
    x = Value(a)
    out = op(x)
    out.backward()
    assert out.data == pytest.approx(reference(a), rel=1e-15)
    assert x.grad == pytest.approx(central_difference(reference, (a,), 0, h=1e-7), rel=1e-6)


def test_value_basics():
    v = Value(2.0)
    assert v.data == 2.0 and v.grad == 0.0
    assert Value(3).data == 3.0 and isinstance(Value(3).data, float)
    assert "2.0" in repr(v)


def test_kinks_follow_bpcores_convention():
    """relu'(0) = 0 and leaky_relu'(0) = slope, as in src/_activations.pxd."""
    for op, expected in [(Value.relu, 0.0), (Value.leaky_relu, 0.01),
                         (lambda v: v.leaky_relu(0.3), 0.3)]:
        x = Value(0.0)
        op(x).backward()
        assert x.grad == expected


def test_sigmoid_never_overflows():
    for z, expected in [(-1000.0, 0.0), (1000.0, 1.0), (-745.5, 0.0)]:
        x = Value(z)
        out = x.sigmoid()
        out.backward()
        assert out.data == expected and x.grad == 0.0


def test_power_with_a_value_exponent_needs_a_positive_base():
    with pytest.raises(ValueError, match="positive base"):
        Value(-2.0) ** Value(2.0)


# ------------------------------------------------------- graph and backward
def test_a_value_used_twice_receives_the_sum_of_both_paths():
    x = Value(3.0)
    (x * x).backward()
    assert x.grad == 6.0                 # d(x^2)/dx = 2x
    x = Value(3.0)
    y = x + x + x
    y.backward()
    assert x.grad == 3.0


def test_tutorial003_f_equals_x_plus_y_times_x_plus_z():
    """The tutorial's program 1: f = -2, df/dx = q + p = 1, df/dy = q = 2, df/dz = p = -1."""
    x, y, z = Value(-3.0), Value(2.0), Value(5.0)
    p, q = x + y, x + z
    f = p * q
    f.backward()
    assert (p.data, q.data, f.data) == (-1.0, 2.0, -2.0)
    assert (x.grad, y.grad, z.grad) == (1.0, 2.0, -1.0)
    assert (p.grad, q.grad) == (2.0, -1.0)      # df/dp = q, df/dq = p


def test_backward_starts_from_the_given_upstream_gradient():
    x, y = Value(2.0), Value(5.0)
    (x * y).backward(-6.0)
    assert (x.grad, y.grad) == (-30.0, -12.0)


def test_graph_lists_inputs_before_their_users():
    a, b = Value(1.0), Value(2.0)
    c = a * b
    d = c + a
    e = d * c + b.exp()
    order = e.graph()
    position = {node: i for i, node in enumerate(order)}
    assert len(order) == len(set(order))
    for node in order:
        for child, _ in node.inputs:
            assert position[child] < position[node]
    assert order[-1] is e and {a, b, c, d} <= set(order)


def test_a_chain_of_100000_nodes_needs_no_recursion():
    limit = sys.getrecursionlimit()
    x = Value(1.0)
    v = x
    for _ in range(50_000):
        v = (-v).tanh()                  # two nodes per step, no constants
    assert len(v.graph()) == 1 + 100_000
    v.backward()
    # oracle: the chain rule as a product of 50,000 local derivatives -(1 - tanh^2)
    expected, a = 1.0, 1.0
    for _ in range(50_000):
        a = math.tanh(-a)
        expected *= -(1 - a * a)
    assert v.data == a
    assert x.grad == pytest.approx(expected, rel=1e-12)
    v.zero_grad()
    assert x.grad == 0.0
    assert sys.getrecursionlimit() == limit
    del v                                # freeing the chain must not recurse either


def test_a_second_backward_adds_the_same_gradients_again():
    x, y = Value(1.5), Value(-0.5)
    h = (x * y).tanh()
    out = h * x
    out.backward()
    first = (x.grad, y.grad, h.grad, out.grad)
    out.backward()
    assert (x.grad, y.grad, h.grad, out.grad) == tuple(2 * g for g in first)
    out.zero_grad()
    assert (x.grad, y.grad, h.grad, out.grad) == (0.0, 0.0, 0.0, 0.0)
    out.backward()
    assert (x.grad, y.grad, h.grad, out.grad) == first


def test_two_losses_on_shared_leaves_accumulate_their_sum():
    """PyTorch's rule for leaves: backward of a, then of b, leaves d(a + b)/dw."""
    w = Value(0.7)
    a, b = (w * 3.0).tanh(), w.exp()
    a.backward()
    b.backward()
    assert w.grad == pytest.approx(3 * (1 - math.tanh(2.1) ** 2) + math.exp(0.7), rel=1e-15)


def test_the_training_loop_trap_without_zero_grad():
    """Leaves reused across steps keep their gradient: the next backward adds to it."""
    w = Value(2.0)
    (w * w).backward()                   # step 1: d(w^2)/dw = 4
    w.data = 1.0
    (w * w).backward()                   # step 2 forgot zero_grad: 4 + 2
    assert w.grad == 6.0
    w.grad = 0.0
    (w * w).backward()
    assert w.grad == 2.0


def test_zero_grad_covers_the_whole_graph_only():
    x, outside = Value(1.0), Value(2.0)
    out = x.exp() * 2.0
    out.backward()
    (outside * 3.0).backward()
    out.zero_grad()
    assert all(node.grad == 0.0 for node in out.graph())
    assert outside.grad == 3.0


# --------------------------------------------------------------- drawing
def test_to_dot_lists_every_value_with_data_and_grad():
    a, b = Value(2.0, label="a"), Value(-3.0, label="b")
    out = a * b + 1.0
    out.label = "out"
    out.backward()
    text = out.to_dot()
    assert text == scalar.to_dot(out)
    assert text.startswith("digraph") and text.rstrip().endswith("}")
    assert "{ a | data 2 | grad -3 }" in text
    assert "{ b | data -3 | grad 2 }" in text
    assert "{ out | data -5 | grad 1 }" in text
    assert text.count("shape=record") == 5          # a, b, a*b, 1.0, out
    assert text.count("shape=ellipse") == 2         # *, +
    assert text.count("->") == 2 * 3                # per op: 2 inputs + 1 result


def test_to_dot_escapes_labels():
    text = Value(1.0, label='a|b {"c"}').to_dot()
    assert r'{ a\|b \{\"c\"\} | data 1 | grad 0 }' in text


def test_render_reports_a_missing_dot_program(tmp_path, monkeypatch):
    monkeypatch.setattr(scalar.shutil, "which", lambda name: None)
    assert scalar.render(Value(1.0) * 2.0, tmp_path / "g.svg") is False
    assert not (tmp_path / "g.svg").exists()


@pytest.mark.skipif(scalar.shutil.which("dot") is None, reason="Graphviz 'dot' not installed")
def test_render_writes_svg(tmp_path):
    out = Value(1.0, label="x").tanh()
    out.backward()
    assert scalar.render(out, tmp_path / "g.svg") is True
    svg = (tmp_path / "g.svg").read_text()
    assert "<svg" in svg and "tanh" in svg and "grad 0.419974" in svg   # 1 - tanh(1)^2


# -------------------------------------------------------------- scalar nn
def test_activation_names_mirror_bpcore():
    assert set(scalar_nn.ACTIVATIONS) == set(bp.ACTIVATIONS)
    assert set(scalar_nn.LOSSES) == set(bp.nn.losses.LOSSES)


def model_and_mlp(activation, rng, sizes=(3, 4, 2), negative_slope=0.01):
    layers = [bp.Dense(sizes[i], sizes[i + 1], activation, negative_slope=negative_slope)
              for i in range(len(sizes) - 1)]
    model = bp.Model(layers, seed=0)
    randomize(model, rng)
    return model, scalar_nn.MLP.from_model(model)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_mlp_from_model_has_the_models_parameters_and_outputs(activation, rng):
    model, mlp = model_and_mlp(activation, rng, negative_slope=0.05)
    assert [p.data for p in mlp.parameters()] == model.params.tolist()
    X = rng.normal(size=(5, 3))
    outputs = np.array([[v.data for v in row] for row in mlp.forward(X.tolist())])
    np.testing.assert_allclose(outputs, model.predict(X), rtol=1e-13, atol=1e-15)


def test_mlp_rejects_a_model_with_dropout():
    model = bp.Model([bp.Dense(2, 3, "relu", dropout=0.5), bp.Dense(3, 1)], seed=0)
    with pytest.raises(ValueError, match="dropout"):
        scalar_nn.MLP.from_model(model)


def test_mlp_checks_consecutive_layers():
    with pytest.raises(ValueError, match="n_out=3"):
        scalar_nn.MLP([scalar_nn.Layer(2, 3), scalar_nn.Layer(4, 1)])
    with pytest.raises(ValueError, match="activation"):
        scalar_nn.Layer(2, 3, "softsign")


def test_layer_initialisation_follows_bpcores_schemes():
    glorot = scalar_nn.Layer(30, 50, "tanh", seed=1)
    limit = math.sqrt(6 / 80)
    weights = [p.data for unit in glorot.neurons for p in unit.w]
    assert max(map(abs, weights)) <= limit and max(map(abs, weights)) > 0.9 * limit
    he = scalar_nn.Layer(200, 50, "relu", seed=1)
    weights = np.array([p.data for unit in he.neurons for p in unit.w])
    assert weights.std() == pytest.approx(math.sqrt(2 / 200), rel=0.05)
    scaled = scalar_nn.Layer(2, 3, "scaled_sigmoid", seed=1)
    assert [u.c.data for u in scaled.neurons] == [1.0] * 3
    assert [u.b.data for u in scaled.neurons] == [0.0] * 3
    again = scalar_nn.Layer(30, 50, "tanh", seed=1)
    assert [p.data for p in again.parameters()] == [p.data for p in glorot.parameters()]


def test_mlp_zero_grad_zeroes_every_parameter(rng):
    _, mlp = model_and_mlp("scaled_sigmoid", rng)
    scalar_nn.mse(mlp.forward([[0.1, 0.2, 0.3]]), [[1.0, 0.0]]).backward()
    assert any(p.grad != 0 for p in mlp.parameters())
    mlp.zero_grad()
    assert all(p.grad == 0 for p in mlp.parameters())


# ------------------------------------------------------------------ losses
def values(array):
    return [[Value(v) for v in row] for row in np.asarray(array, dtype=float)]


def grads(rows):
    return np.array([[v.grad for v in row] for row in rows])


LOSS_CASES = [
    ("mse", "mean", bp.MSELoss(), lambda rng: rng.normal(size=(4, 3))),
    ("mse", "sum", bp.MSELoss(reduction="sum"), lambda rng: rng.normal(size=(4, 3))),
    ("cross_entropy", "mean", bp.CrossEntropyLoss(), lambda rng: rng.integers(0, 3, size=4)),
    ("cross_entropy", "sum", bp.CrossEntropyLoss(reduction="sum"),
     lambda rng: rng.integers(0, 3, size=4)),
    ("bce", "mean", bp.BCEWithLogitsLoss(), lambda rng: rng.uniform(size=(4, 3))),
    ("bce", "sum", bp.BCEWithLogitsLoss(reduction="sum"), lambda rng: rng.uniform(size=(4, 3))),
    ("poisson", "mean", bp.PoissonLoss(), lambda rng: rng.poisson(2.0, size=(4, 3))),
    ("poisson", "sum", bp.PoissonLoss(reduction="sum"), lambda rng: rng.poisson(2.0, size=(4, 3))),
]


@pytest.mark.parametrize("name, reduction, core_loss, make_target", LOSS_CASES,
                         ids=[f"{c[0]}-{c[1]}" for c in LOSS_CASES])
def test_losses_match_bpcores_losses(name, reduction, core_loss, make_target, rng):
    logits = rng.normal(scale=2.0, size=(4, 3))
    target = make_target(rng)
    rows = values(logits)
    value = scalar_nn.LOSSES[name](rows, target.tolist(), reduction)
    value.backward()
    expected, expected_grad = core_loss(logits, target)
    assert value.data == pytest.approx(expected, rel=1e-13)
    np.testing.assert_allclose(grads(rows), expected_grad, rtol=1e-12, atol=1e-16)


def test_losses_by_hand():
    """Closed forms on one tiny batch, worked out in the comments."""
    # mse: residuals (1, -2, 0.5, 0) -> squares 1 + 4 + 0.25 + 0 = 5.25; mean 1.3125
    out = values([[2.0, 0.0], [1.5, 3.0]])
    assert scalar_nn.mse(out, [[1.0, 2.0], [1.0, 3.0]]).data == 1.3125
    assert scalar_nn.mse(out, [[1.0, 2.0], [1.0, 3.0]], "sum").data == 5.25
    # cross-entropy of logits (0, 0) for either label: log 2; of (log 3, 0), label 0: log(4/3)
    ce = scalar_nn.cross_entropy(values([[0.0, 0.0], [math.log(3), 0.0]]), [1, 0])
    assert ce.data == pytest.approx((math.log(2) + math.log(4 / 3)) / 2, rel=1e-15)
    # bce at logit 0 is log 2 whatever the target; its gradient sigmoid(0) - t = 0.5 - t
    z = values([[0.0, 0.0]])
    bce = scalar_nn.bce_with_logits(z, [[1.0, 0.25]])
    bce.backward()
    assert bce.data == pytest.approx(math.log(2), rel=1e-15)
    assert grads(z).tolist() == [[(0.5 - 1.0) / 2, (0.5 - 0.25) / 2]]


def test_losses_are_stable_for_huge_logits():
    # bce: softplus(1000) - 1000 * 0 = 1000; softplus(-1000) - (-1000) * 0 = 0 (+e^-1000)
    z = values([[1000.0, -1000.0]])
    bce = scalar_nn.bce_with_logits(z, [[0.0, 0.0]], "sum")
    bce.backward()
    assert bce.data == 1000.0
    assert grads(z).tolist() == [[1.0, 0.0]]
    # cross-entropy: logits (1000, 0), label 1 -> 1000; the gradient softmax - onehot
    z = values([[1000.0, 0.0]])
    ce = scalar_nn.cross_entropy(z, [1])
    ce.backward()
    assert ce.data == 1000.0
    assert grads(z).tolist() == [[1.0, -1.0]]


def test_single_output_targets_may_be_one_number_per_sample():
    out = values([[1.0], [2.0]])
    assert scalar_nn.mse(out, [0.0, 0.0]).data == scalar_nn.mse(out, [[0.0], [0.0]]).data


def test_unknown_reduction_is_refused():
    with pytest.raises(ValueError, match="reduction"):
        scalar_nn.mse(values([[1.0]]), [[0.0]], "max")


# --------------------------------------------------- the tutorials, on the engine
def test_tutorial_002_apples():
    """100 per apple, 2 apples, tax 1.1: price 220, dApple 2.2, dApple_num 110, dTax 200."""
    apple, apple_num, tax = Value(100.0), Value(2.0), Value(1.1)
    price = apple * apple_num * tax
    price.backward()
    assert price.data == pytest.approx(220, rel=1e-15)
    assert apple.grad == 2.2                      # apple_num * tax
    assert apple_num.grad == pytest.approx(110, rel=1e-15)
    assert tax.grad == 200.0                      # apple * apple_num


def test_tutorial_002_apples_and_oranges():
    """Plus 3 oranges at 150: price 715, dApple 2.2, dApple_num 110, dOrange 3.3,
    dOrange_num 165, dTax 650 (the tutorial prints dOrange as 3.3000000000000003)."""
    apple, apple_num = Value(100.0), Value(2.0)
    orange, orange_num, tax = Value(150.0), Value(3.0), Value(1.1)
    price = (apple * apple_num + orange * orange_num) * tax
    price.backward()
    assert price.data == pytest.approx(715, rel=1e-15)
    assert apple.grad == 2.2
    assert apple_num.grad == pytest.approx(110, rel=1e-15)
    assert orange.grad == 3.3000000000000003      # the tutorial's printed value, to the bit
    assert orange_num.grad == pytest.approx(165, rel=1e-15)
    assert tax.grad == 650.0


def test_tutorial003_matrix_rule_against_the_engine():
    """D = W.X: dW = dD.X^T and dX = W^T.dD, with W (5, 10), X (10, 3)."""
    rng = np.random.default_rng(0)
    W, X, dD = rng.normal(size=(5, 10)), rng.normal(size=(10, 3)), rng.normal(size=(5, 3))
    Wv, Xv = values(W), values(X)
    D = [[sum((Wv[i][k] * Xv[k][j] for k in range(10)), Value(0.0)) for j in range(3)]
         for i in range(5)]
    np.testing.assert_allclose([[d.data for d in row] for row in D], W @ X, rtol=1e-13)
    # L = sum(dD * D) has dL/dD = dD
    sum((float(dD[i, j]) * D[i][j] for i in range(5) for j in range(3)), Value(0.0)).backward()
    np.testing.assert_allclose(grads(Wv), dD.dot(X.T), rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(grads(Xv), W.T.dot(dD), rtol=1e-13, atol=1e-15)


def test_tutorial000_network_node_by_node():
    """1 -> 2 -> 3 -> 1 network of c * sigmoid(w.x + b) nodes, loss (x7 - t)^2.

    The engine's per-node gradients obey the tutorial's three scenes, and its parameter
    gradients equal the Cython Model's.
    """
    rng = np.random.default_rng(0)
    model = bp.Model([bp.Dense(1, 2, "scaled_sigmoid"), bp.Dense(2, 3, "scaled_sigmoid"),
                      bp.Dense(3, 1, "scaled_sigmoid")], seed=0)
    randomize(model, rng)
    x1, t = 0.7, 3.0
    mlp = scalar_nn.MLP.from_model(model)

    # run the scalar network keeping every node's h, g and x
    x = [Value(x1)]
    layers = []
    for layer in mlp.layers:
        nodes = []
        for unit in layer.neurons:
            h = sum((w * xi for w, xi in zip(unit.w, x)), Value(0.0)) + unit.b
            g = h.sigmoid()
            nodes.append((unit, h, g, unit.c * g))
        layers.append(nodes)
        x = [node[3] for node in nodes]
    loss = (x[0] - t) ** 2
    loss.backward()

    x7 = layers[2][0][3]
    assert x7.grad == pytest.approx(2 * (x7.data - t), rel=1e-15)          # scene 1
    inputs = [[Value(x1)]] + [[node[3] for node in nodes] for nodes in layers[:2]]
    for nodes, xin in zip(layers, inputs):
        for unit, _, g, xk in nodes:                                        # scene 3
            cache = unit.c.data * g.data * (1 - g.data)
            assert unit.b.grad == pytest.approx(xk.grad * cache, rel=1e-14)
            assert unit.c.grad == pytest.approx(xk.grad * g.data, rel=1e-14)
            for w, xi in zip(unit.w, xin):
                assert w.grad == pytest.approx(xk.grad * cache * xi.data, rel=1e-14)
    # scene 2: node 2 gathers from nodes 4, 5 and 6
    node2 = layers[0][0][3]
    gathered = sum(xk.grad * unit.c.data * g.data * (1 - g.data) * unit.w[0].data
                   for unit, h, g, xk in layers[1])
    assert node2.grad == pytest.approx(gathered, rel=1e-14)

    model.loss_and_grad(np.array([[x1]]), np.array([[t]]), bp.MSELoss(reduction="sum"))
    np.testing.assert_allclose([p.grad for p in mlp.parameters()], model.grads, rtol=1e-13)
    assert loss.data == pytest.approx((model.predict(np.array([[x1]]))[0, 0] - t) ** 2,
                                      rel=1e-14)

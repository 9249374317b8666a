"""Per-node views of the dense model, explain() and the DOT export."""
import re

import numpy as np
import numpy_reference as ref
import pytest
from conftest import ACTIVATIONS, layer_dicts, randomize

import bpcore as bp


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_layer_views_equal_the_reference_and_are_views(activation, rng):
    model = bp.Model([bp.Dense(3, 5, activation), bp.Dense(5, 4, activation),
                      bp.Dense(4, 2)], seed=0)
    randomize(model, rng)
    X, y = rng.normal(size=(6, 3)), rng.integers(0, 2, 6)
    assert model.layers[0].z is None and model.layers[0].delta is None
    model.forward(X)
    assert model.layers[1].a is not None and model.layers[1].delta is None   # no backward yet
    model.loss_and_grad(X, y, bp.CrossEntropyLoss())

    layers = layer_dicts(model)
    a_in, zs, activations, derivatives = X, [], [], []
    for layer in layers:
        a, d, _, z = ref.dense_forward(a_in, layer["W"], layer["b"], layer["activation"],
                                       layer["c"])
        zs.append(z), activations.append(a), derivatives.append(d)
        a_in = a
    _, grad_out = ref.cross_entropy(activations[-1], y)
    grad_as, upstream = [None] * 3, grad_out
    for i in (2, 1, 0):
        grad_as[i] = upstream
        upstream = (upstream * derivatives[i]) @ layers[i]["W"].T
    for i, layer in enumerate(model.layers):
        for view, expected in [(layer.z, zs[i]), (layer.a, activations[i]),
                               (layer.derivative, derivatives[i]), (layer.grad_a, grad_as[i]),
                               (layer.delta, grad_as[i] * derivatives[i])]:
            np.testing.assert_allclose(view, expected, rtol=1e-12, atol=1e-14)
            assert not view.flags.writeable
        assert np.shares_memory(layer.z, model._cache.Z[i])            # a view, not a copy
        assert np.shares_memory(layer.a, model._cache.A[i])


def test_views_follow_the_next_forward(rng):
    model = bp.Model([bp.Dense(2, 3, "tanh"), bp.Dense(3, 1)], seed=0)
    X1, X2 = rng.normal(size=(4, 2)), rng.normal(size=(4, 2))
    model.forward(X1)
    z = model.layers[0].z
    first = z.copy()
    model.forward(X2)                 # documented lifetime: valid until the next forward
    np.testing.assert_allclose(z, X2 @ model.layers[0].W + model.layers[0].b, rtol=1e-12)
    assert not np.allclose(z, first)


def numbers_after(label, text):
    return [float(v) for v in re.findall(re.escape(label) + r"\s*(-?[\d.]+(?:e[-+]?\d+)?)", text)]


def test_explain_shows_node_2_gathered_from_nodes_4_5_6(rng, capsys):
    """Tutorial 000's 1-2-3-1 network of c*sigmoid(w.x+b) nodes: node 2 is layers[0] unit 0
    and feeds nodes 4, 5, 6 (layers[1] units 0, 1, 2)."""
    model = bp.Model([bp.Dense(1, 2, "scaled_sigmoid"), bp.Dense(2, 3, "scaled_sigmoid"),
                      bp.Dense(3, 1, "scaled_sigmoid")], seed=0)
    randomize(model, rng)
    model.loss_and_grad(np.array([[0.7]]), np.array([[10.0]]), bp.MSELoss(reduction="sum"))
    text = model.explain(0, 0)
    assert capsys.readouterr().out.strip() == text.strip()
    node2, feeds = model.layers[0], model.layers[1]
    terms = [float(m) for m in re.findall(r"unit \d: \S+ \* \S+ = (\S+)", text)]
    expected = [feeds.delta[0, k] * feeds.W[0, k] for k in range(3)]
    np.testing.assert_allclose(terms, expected, rtol=1e-5)
    np.testing.assert_allclose(numbers_after("sum =", text), [node2.grad_a[0, 0]], rtol=1e-5)
    g = 1 / (1 + np.exp(-node2.z[0, 0]))
    cached = node2.c[0] * g * (1 - g)
    np.testing.assert_allclose(numbers_after("c*g*(1-g) =", text), [cached], rtol=1e-5)
    np.testing.assert_allclose(numbers_after("dL/db = delta =", text), [node2.db[0]], rtol=1e-5)
    np.testing.assert_allclose(node2.db[0], node2.grad_a[0, 0] * cached, rtol=1e-12)


def test_explain_rejects_bad_arguments(rng):
    model = bp.Model([bp.Dense(2, 3, "tanh"), bp.Dense(3, 1)], seed=0)
    with pytest.raises(ValueError, match="explain needs a forward and a backward"):
        model.explain(0, 0)
    model.loss_and_grad(rng.normal(size=(2, 2)), rng.normal(size=(2, 1)), bp.MSELoss())
    with pytest.raises(ValueError, match=r"unit must be in \[0, 2\] for layers\[0\]; got 3"):
        model.explain(0, 3)
    with pytest.raises(ValueError, match="layer must index one of the model's 2 layers; got 5"):
        model.explain(5, 0)
    with pytest.raises(ValueError, match=r"sample must be in \[0, 1\]; got 2"):
        model.explain(1, 0, sample=2)


def test_to_dot_describes_every_layer(rng):
    model = bp.Model([bp.Dense(2, 4, "relu", dropout=0.1), bp.Dense(4, 3)], seed=0)
    text = model.to_dot()
    assert text.startswith("digraph model {") and text.rstrip().endswith("}")
    assert "2 x 4 | relu | 12 params | dropout 0.1" in text
    assert "4 x 3 | identity | 15 params" in text
    assert "input -> layer0" in text and "layer0 -> layer1" in text
    model.loss_and_grad(rng.normal(size=(5, 2)), rng.integers(0, 3, 5), bp.CrossEntropyLoss())
    valued = model.to_dot(values=True)
    mean_a = float(re.search(r"layer1 .*mean abs a = ([\d.e+-]+)", valued).group(1))
    np.testing.assert_allclose(mean_a, np.abs(model.layers[1].a).mean(), rtol=1e-3)

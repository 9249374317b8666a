"""The worked examples of the four tutorials bpcore grew from, as tests."""
import math

import numpy as np

import bpcore as bp


# --------------------------------------------------------------------- tutorial 003
def test_tutorial003_two_layer_relu_net_gradients_equal_matrix_formulas():
    """N=32, D=100, H=200, O=10, loss = sum((y - pred)^2), the tutorial's net.

    The tutorial's listing writes dW2 = h_relu.T.dot(db2); the true gradient is
    h_relu.T.dot(dpred), which is what is checked here.
    """
    N, D, H, O = 32, 100, 200, 10
    rng = np.random.default_rng(3)
    X, y = rng.normal(size=(N, D)), rng.normal(size=(N, O))
    W1, b1 = rng.normal(size=(D, H)), np.zeros(H)
    W2, b2 = rng.normal(size=(H, O)), np.zeros(O)
    b1 += rng.normal(scale=0.1, size=H)       # non-zero biases test db1 and db2 fully
    b2 += rng.normal(scale=0.1, size=O)

    model = bp.Model([bp.Dense(D, H, "relu"), bp.Dense(H, O)])
    for layer, W, b in zip(model.layers, (W1, W2), (b1, b2)):
        layer.W[...], layer.b[...] = W, b
    loss, grads = model.loss_and_grad(X, y, bp.MSELoss(reduction="sum"))

    # the tutorial's forward and the true matrix gradients
    h = X.dot(W1) + b1
    h_relu = np.maximum(h, 0)
    pred = h_relu.dot(W2) + b2
    expected_loss = np.sum(np.square(y - pred))
    dpred = 2.0 * (pred - y)
    dW2 = h_relu.T.dot(dpred)
    db2 = np.sum(dpred, axis=0)
    dh_relu = dpred.dot(W2.T)
    dh = (h > 0) * dh_relu
    dW1 = X.T.dot(dh)
    db1 = np.sum(dh, axis=0)

    np.testing.assert_allclose(loss, expected_loss, rtol=1e-12)
    for got, want in [(model.layers[0].dW, dW1), (model.layers[0].db, db1),
                      (model.layers[1].dW, dW2), (model.layers[1].db, db2)]:
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-9 * np.abs(want).max())


def test_tutorial_003_chain_rule_of_f_equals_x_plus_y_times_x_plus_z():
    """f(x, y, z) = (x + y)(x + z) at (-3, 2, 5): f = -2, df/dx = 1, df/dy = 2, df/dz = -1.

    As a linear layer p = x + y, q = x + z feeding f = p * q: backward with
    upstream (df/dp, df/dq) = (q, p) must sum x's two paths.
    """
    model = bp.Model([bp.Dense(3, 2)])
    layer = model.layers[0]
    layer.W[...] = [[1, 1], [1, 0], [0, 1]]      # columns: p = x + y, q = x + z
    layer.b[...] = 0
    p, q = model.forward(np.array([[-3.0, 2.0, 5.0]]))[0]
    assert (p, q) == (-1.0, 2.0) and p * q == -2.0
    dfdx, dfdy, dfdz = model.backward(np.array([[q, p]]))[0]
    assert (dfdx, dfdy, dfdz) == (1.0, 2.0, -1.0)


# --------------------------------------------------------------------- tutorial 000
def sigmoid(v):
    return 1.0 / (1.0 + math.exp(-v))


def test_tutorial000_output_node_derivatives():
    """Node 7 with inputs x4, x5, x6 = 4, 5, 6 and w = b = c = 1; given dloss/dx = -6
    (the tutorial's x = 7, t = 10 under loss (x - t)^2):
    dx/db = c g (1 - g), dx/dw = c g (1 - g) x_in, dx/dc = g."""
    model = bp.Model([bp.Dense(3, 1, "scaled_sigmoid")])
    node7 = model.layers[0]
    node7.W[...], node7.b[...], node7.c[...] = 1.0, 1.0, 1.0
    x = model.forward(np.array([[4.0, 5.0, 6.0]]))
    g = sigmoid(4 + 5 + 6 + 1)
    assert x[0, 0] == g                       # x7 = c * g with c = 1
    dx_in = model.backward(np.array([[-6.0]]))
    cached = 1.0 * g * (1 - g)                # the c g (1 - g) the tutorial caches
    np.testing.assert_allclose(node7.db, [-6 * cached], rtol=1e-14)
    np.testing.assert_allclose(node7.dc, [-6 * g], rtol=1e-14)
    np.testing.assert_allclose(node7.dW[:, 0], [-6 * cached * 4, -6 * cached * 5,
                                                -6 * cached * 6], rtol=1e-14)
    # dloss/dx4 = dloss/dx7 * c g (1 - g) * w4to7
    np.testing.assert_allclose(dx_in[0], [-6 * cached * 1.0] * 3, rtol=1e-14)
    # dloss/dx itself: (x - t)^2 at x = 7, t = 10
    value, grad = bp.MSELoss(reduction="sum")(np.array([[7.0]]), np.array([[10.0]]))
    assert value == 9.0 and grad[0, 0] == -6.0


def chain_rule_by_nodes(x1, t, params):
    """The tutorial's node-by-node derivation in plain Python.

    params: per layer a list of nodes (w_list, b, c). Returns per-node values,
    dloss/dx per node, and per-parameter gradients.
    """
    xs = [[x1]]
    caches, gates = [], []
    for layer in params:
        prev, values, cache, gate = xs[-1], [], [], []
        for w, b, c in layer:
            g = sigmoid(sum(wi * xi for wi, xi in zip(w, prev)) + b)
            values.append(c * g)
            cache.append(c * g * (1 - g))      # the value the tutorial says to cache
            gate.append(g)
        xs.append(values)
        caches.append(cache)
        gates.append(gate)
    dx = [None] * len(xs)
    dx[-1] = [2 * (xs[-1][0] - t)]           # scene 1: the output node
    grads = [None] * len(params)
    for l in range(len(params) - 1, -1, -1):
        layer, prev = params[l], xs[l]
        grads[l] = [{"w": [dx[l + 1][j] * caches[l][j] * xi for xi in prev],
                     "b": dx[l + 1][j] * caches[l][j],
                     "c": dx[l + 1][j] * gates[l][j]} for j in range(len(layer))]
        # scene 2: a node's dloss/dx is summed over the nodes it feeds
        dx[l] = [sum(dx[l + 1][j] * caches[l][j] * layer[j][0][i] for j in range(len(layer)))
                 for i in range(len(prev))]
    return xs, dx, grads


def test_tutorial000_network_1_2_3_1_matches_node_by_node_chain_rule():
    rng = np.random.default_rng(0)
    sizes = [1, 2, 3, 1]
    params = [[(list(rng.normal(size=sizes[l])), rng.normal(), rng.uniform(0.5, 2.0))
               for _ in range(sizes[l + 1])] for l in range(3)]
    x1, t = 0.7, 10.0
    xs, dx, grads = chain_rule_by_nodes(x1, t, params)

    def build(first):
        layers = [bp.Dense(sizes[l], sizes[l + 1], "scaled_sigmoid") for l in range(first, 3)]
        model = bp.Model(layers)
        for layer, nodes in zip(model.layers, params[first:]):
            for j, (w, b, c) in enumerate(nodes):
                layer.W[:, j], layer.b[j], layer.c[j] = w, b, c
        return model

    model = build(0)
    loss = bp.MSELoss(reduction="sum")                   # (x - t)^2 for one sample
    out = model.forward(np.array([[x1]]))
    np.testing.assert_allclose(out[0, 0], xs[3][0], rtol=1e-14)
    value, grad_out = loss(out, np.array([[t]]))
    assert grad_out[0, 0] == dx[3][0]
    dx1 = model.backward(grad_out)
    np.testing.assert_allclose(dx1[0], dx[0], rtol=1e-13)     # node 1, from nodes 2 and 3
    for layer, layer_grads in zip(model.layers, grads):
        np.testing.assert_allclose(layer.dW, np.array([g["w"] for g in layer_grads]).T, rtol=1e-13)
        np.testing.assert_allclose(layer.db, [g["b"] for g in layer_grads], rtol=1e-13)
        np.testing.assert_allclose(layer.dc, [g["c"] for g in layer_grads], rtol=1e-13)

    # per-node dloss/dx of the hidden nodes: run the tail of the network on their values
    for first, nodes in [(1, "nodes 2, 3"), (2, "nodes 4, 5, 6")]:
        tail = build(first)
        tail.forward(np.array([xs[first]]))
        np.testing.assert_allclose(tail.backward(grad_out)[0], dx[first], rtol=1e-13,
                                   err_msg=nodes)


# --------------------------------------------------------------------- tutorial 001
def test_tutorial001_linear_regression_loop_equals_numpy_reference():
    """Linear(1, 1) on x = [1, 2, 3, 4], y = 2x: SGD lr 0.01, mean MSE, zero_grad,
    backward, clip_grad_norm(max_norm=1.0), step — for 100 epochs."""
    x = np.array([[1.0], [2.0], [3.0], [4.0]])
    y = 2 * x
    model = bp.Model([bp.Dense(1, 1)], seed=1)
    optimizer = bp.SGD(model, lr=0.01)
    criterion = bp.MSELoss()
    w, b = float(model.layers[0].W[0, 0]), float(model.layers[0].b[0])

    losses, expected = [], []
    norms, expected_norms = [], []
    for _epoch in range(100):
        y_pred = model.forward(x)
        value, grad = criterion(y_pred, y)
        optimizer.zero_grad()
        model.backward(grad)
        norms.append(bp.clip_grad_norm(model, max_norm=1.0))
        optimizer.step()
        losses.append(value)

        # the same loop, by hand
        pred = w * x[:, 0] + b
        r = pred - y[:, 0]
        expected.append(np.mean(r * r))
        dw, db = np.mean(2 * r * x[:, 0]), np.mean(2 * r)
        norm = math.sqrt(dw * dw + db * db)
        expected_norms.append(norm)
        coefficient = 1.0 / (norm + 1e-6)
        if coefficient < 1:
            dw, db = dw * coefficient, db * coefficient
        w, b = w - 0.01 * dw, b - 0.01 * db

    np.testing.assert_allclose(losses, expected, rtol=1e-12)
    np.testing.assert_allclose(norms, expected_norms, rtol=1e-12)
    np.testing.assert_allclose([model.layers[0].W[0, 0], model.layers[0].b[0]], [w, b],
                               rtol=1e-12)
    assert losses[-1] < losses[0]          # it learns
    assert max(norms) > 1.0                # and clipping was exercised

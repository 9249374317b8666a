"""Tutorial 003: the chain rule on f(x, y, z) = (x + y)(x + z), then on matrices.

1. f at (x, y, z) = (-3, 2, 5) by hand (the tutorial's program 1) and by bpcore's scalar
   engine: x feeds both p = x + y and q = x + z, so df/dx is the SUM of two paths.
2. The matrix rule for D = W.X (the tutorial's program 2): dW = dD.X^T and dX = W^T.dD,
   checked entry by entry against the scalar engine run on every product.
3. The tutorial's two-layer ReLU net (program 3), small: its gradients from the matrix
   formulas against the scalar engine.

Run from the repository root:  python examples/tutorial_003_chain_rule.py
"""
import numpy as np

from bpcore.scalar import Value


def chain_rule_by_hand(x, y, z):
    p, q = x + y, x + z                       # forward: p = -1, q = 2
    dfdp, dfdq = q, p                         # f = p q
    dfdx = 1.0 * dfdp + 1.0 * dfdq            # x reaches f through p AND through q
    return p * q, (dfdx, 1.0 * dfdp, 1.0 * dfdq)


def chain_rule_by_engine(x, y, z):
    x, y, z = Value(x, label="x"), Value(y, label="y"), Value(z, label="z")
    f = (x + y) * (x + z)
    f.backward()
    return f, (x.grad, y.grad, z.grad)


def value_matrix(array):
    return [[Value(v) for v in row] for row in array]


def matmul(A, B):
    """A.B on nested lists of Values."""
    return [[sum((A[i][k] * B[k][j] for k in range(len(B))), Value(0.0))
             for j in range(len(B[0]))] for i in range(len(A))]


def grads(matrix):
    return np.array([[v.grad for v in row] for row in matrix])


def matrix_rule(rng):
    W, X = rng.normal(size=(5, 10)), rng.normal(size=(10, 3))
    dD = rng.normal(size=(5, 3))              # the gradient arriving from later layers
    dW, dX = dD.dot(X.T), W.T.dot(dD)         # the tutorial's rule

    # the engine: L = sum(dD * D) has dL/dD = dD, so backward delivers dL/dW, dL/dX
    Wv, Xv = value_matrix(W), value_matrix(X)
    D = matmul(Wv, Xv)
    L = sum((float(dD[i, j]) * D[i][j] for i in range(5) for j in range(3)), Value(0.0))
    L.backward()
    return dW, dX, grads(Wv), grads(Xv)


def two_layer_net(rng, N=4, D=3, H=5, O=2):
    X, y = rng.normal(size=(N, D)), rng.normal(size=(N, O))
    W1, b1 = rng.normal(size=(D, H)), rng.normal(size=H)
    W2, b2 = rng.normal(size=(H, O)), rng.normal(size=O)

    # the tutorial's forward and backward, with dpred where the listing writes db2
    h = X.dot(W1) + b1
    h_relu = np.maximum(h, 0)
    pred = h_relu.dot(W2) + b2
    dpred = 2.0 * (pred - y)
    dW2, db2 = h_relu.T.dot(dpred), dpred.sum(axis=0)
    dh = (h > 0) * dpred.dot(W2.T)
    dW1, db1 = X.T.dot(dh), dh.sum(axis=0)

    # the engine on every scalar of the same computation
    W1v, W2v = value_matrix(W1), value_matrix(W2)
    b1v, b2v = [Value(v) for v in b1], [Value(v) for v in b2]
    hv = matmul(value_matrix(X), W1v)
    hv = [[(v + b).relu() for v, b in zip(row, b1v)] for row in hv]
    predv = [[v + b for v, b in zip(row, b2v)] for row in matmul(hv, W2v)]
    loss = sum(((p - float(t)) ** 2 for row, trow in zip(predv, y)
                for p, t in zip(row, trow)), Value(0.0))
    loss.backward()
    engine = [grads(W1v), np.array([v.grad for v in b1v]),
              grads(W2v), np.array([v.grad for v in b2v])]
    return [dW1, db1, dW2, db2], engine


def main():
    print("1. f(x, y, z) = (x + y)(x + z) at (-3, 2, 5)")
    f_hand, (dx, dy, dz) = chain_rule_by_hand(-3.0, 2.0, 5.0)
    print(f"   by hand:   p = -1, q = 2, f = p q = {f_hand:g}")
    print(f"              df/dx = df/dp * 1 + df/dq * 1 = q + p = {dx:g}, "
          f"df/dy = q = {dy:g}, df/dz = p = {dz:g}")
    f, (ex, ey, ez) = chain_rule_by_engine(-3.0, 2.0, 5.0)
    print(f"   by engine: f = {f.data:g}, df/dx = {ex:g}, df/dy = {ey:g}, df/dz = {ez:g}")
    print("   (the tutorial: f = -2, df/dx = 1, df/dy = 2, df/dz = -1)\n")

    rng = np.random.default_rng(3)
    print("2. D = W.X with W (5, 10), X (10, 3); dD (5, 3) arrives from later layers")
    dW, dX, eW, eX = matrix_rule(rng)
    print("   the rule:  dW = dD.X^T  (5, 10),   dX = W^T.dD  (10, 3)")
    print(f"   largest difference from the scalar engine: dW {np.abs(dW - eW).max():.1e}, "
          f"dX {np.abs(dX - eX).max():.1e}")
    print("   (bpcore's Dense stores W as (n_in, n_out) and computes Z = X.W, so there the "
          "same rule\n    reads dW = X^T.dZ, dX = dZ.W^T)\n")

    print("3. The tutorial's two-layer ReLU net, loss = sum((y - pred)^2), small sizes")
    formulas, engine = two_layer_net(rng)
    for name, a, b in zip(["dW1", "db1", "dW2", "db2"], formulas, engine):
        print(f"   {name}: largest difference from the engine {np.abs(a - b).max():.1e}")
    print("   Note: the tutorial's listing writes dW2 = h_relu.T.dot(db2) and "
          "dh_relu = db2.dot(W2.T);\n   the gradient is dpred where it writes db2 "
          "(as printed, h_relu.T.dot(db2) fails:\n   shapes (200, 32) and (10,) do not "
          "align).")


if __name__ == "__main__":
    main()

"""Tutorial 000: backpropagation node by node through a 1 -> 2 -> 3 -> 1 network.

Every node k (2..7) computes x_k = c_k * g_k with g_k = sigmoid(h_k) and
h_k = sum_i w_{i->k} x_i + b_k; node 1 is the input, node 7 the output, and the
loss is (x_7 - t)^2. The walk-through uses bpcore's scalar engine, so each number
printed is a real .grad, and it shows the tutorial's three scenes:

  scene 1  dloss/dx of the output node comes from the loss alone: 2 (x_7 - t);
  scene 2  dloss/dx of a hidden node is SUMMED over the nodes it feeds, each term
           dloss/dx_j * c_j g_j (1 - g_j) * w_{k->j} (node 2 gathers from 4, 5, 6);
  scene 3  a node's parameters from its dloss/dx and the cached c g (1 - g):
           dloss/db = dloss/dx * c g (1 - g), dloss/dw_i = that times x_i,
           dloss/dc = dloss/dx * g.

Finally the same network as a bpcore Model (three Dense "scaled_sigmoid" layers)
gives the same parameter gradients from the Cython core.

Run from the repository root:  python examples/tutorial_000_node_walkthrough.py
"""
import numpy as np

import bpcore as bp
from bpcore.scalar import Value


class Node:
    """One c * sigmoid(w . x + b) node; keeps h, g, x of its last forward."""

    def __init__(self, number, weights, b, c):
        self.number = number
        self.w = {i: Value(w, label=f"w{i}to{number}") for i, w in weights.items()}
        self.b = Value(b, label=f"b{number}")
        self.c = Value(c, label=f"c{number}")

    def forward(self, x):
        """x: {node number: Value}; returns this node's output Value."""
        self.h = sum((self.w[i] * x[i] for i in self.w), Value(0.0)) + self.b
        self.g = self.h.sigmoid()
        self.x = self.c * self.g
        self.x.label = f"x{self.number}"
        return self.x

    @property
    def cache(self):
        """c g (1 - g) = dx/dh, the number the tutorial says to keep per node."""
        g = self.g.data
        return self.c.data * g * (1 - g)


def output_node_with_the_tutorials_numbers():
    print("Scene 1 and 3 with the tutorial's own numbers: x4, x5, x6 = 4, 5, 6 and "
          "w = b = c = 1;\nthe tutorial assumes x7 = 7 and t = 10, so dloss/dx7 = 2 (7 - 10) = -6.")
    node7 = Node(7, {4: 1.0, 5: 1.0, 6: 1.0}, b=1.0, c=1.0)
    node7.forward({4: Value(4.0), 5: Value(5.0), 6: Value(6.0)})
    node7.x.backward(-6.0)                    # start the chain at dloss/dx7 = -6
    g = node7.g.data
    print(f"  h7 = 4 + 5 + 6 + 1 = {node7.h.data:g},  g = sigmoid(16) = {g:.12f}")
    print(f"  cached c g (1 - g) = {node7.cache:.6e}")
    print(f"  dloss/db7    = -6 * c g (1 - g)     = {node7.b.grad:.6e}")
    print(f"  dloss/dw4to7 = -6 * c g (1 - g) * 4 = {node7.w[4].grad:.6e}")
    print(f"  dloss/dc7    = -6 * g               = {node7.c.grad:.12f}")
    print(f"  (x7 = 7 is the tutorial's assumption for easy arithmetic: with these weights the "
          f"node\n   outputs c g = {node7.x.data:.7f}, hence the chain is started at -6 "
          f"by hand, x7.backward(-6.0).)")
    print()


# The network's parameters: node -> ({input node: weight}, b, c)
NETWORK = {
    2: ({1: 0.8}, 0.1, 1.5), 3: ({1: -1.2}, 0.3, 0.9),
    4: ({2: 0.5, 3: -0.7}, 0.2, 1.2), 5: ({2: -0.4, 3: 0.9}, -0.1, 0.8),
    6: ({2: 1.1, 3: 0.3}, 0.05, 1.4),
    7: ({4: 0.6, 5: -0.9, 6: 1.3}, -0.2, 2.0),
}
LAYERS = [[2, 3], [4, 5, 6], [7]]
X1, TARGET = 0.7, 3.0


def build_and_run():
    nodes = {k: Node(k, *NETWORK[k]) for k in NETWORK}
    x = {1: Value(X1, label="x1")}
    for layer in LAYERS:
        for k in layer:
            x[k] = nodes[k].forward(x)
    loss = (x[7] - TARGET) ** 2
    loss.backward()
    return nodes, x, loss


def print_node(node, x):
    print(f"  node {node.number}: x = {node.x.data:+.6f}   dloss/dx = {node.x.grad:+.6e}   "
          f"cached c g (1 - g) = {node.cache:.6f}")
    delta = node.x.grad * node.cache          # dloss/dh: one product serves every parameter
    print(f"          dloss/db = dloss/dx * cache          = {node.b.grad:+.6e}"
          f"   (formula {delta:+.6e})")
    for i, w in node.w.items():
        print(f"          dloss/dw{i}to{node.number} = dloss/dx * cache * x{i} = {w.grad:+.6e}"
              f"   (formula {delta * x[i].data:+.6e})")
    print(f"          dloss/dc = dloss/dx * g              = {node.c.grad:+.6e}"
          f"   (formula {node.x.grad * node.g.data:+.6e})")


def gather(nodes, k, consumers):
    """Scene 2: dloss/dx_k summed over the nodes that read x_k."""
    terms = []
    for j in consumers:
        node = nodes[j]
        terms.append(node.x.grad * node.cache * node.w[k].data)
        print(f"    from node {j}: dloss/dx{j} * c{j} g{j} (1 - g{j}) * w{k}to{j} = "
              f"{node.x.grad:+.6e} * {node.cache:.6f} * {node.w[k].data:+.2f} = "
              f"{terms[-1]:+.6e}")
    return sum(terms)


def same_network_in_the_cython_core(nodes):
    sizes = [1, 2, 3, 1]
    model = bp.Model([bp.Dense(sizes[l], sizes[l + 1], "scaled_sigmoid") for l in range(3)])
    inputs = [[1], [2, 3], [4, 5, 6]]
    for layer, members, sources in zip(model.layers, LAYERS, inputs):
        for j, k in enumerate(members):
            weights, b, c = NETWORK[k]
            layer.W[:, j] = [weights[i] for i in sources]
            layer.b[j], layer.c[j] = b, c
    model.loss_and_grad(np.array([[X1]]), np.array([[TARGET]]), bp.MSELoss(reduction="sum"))
    worst = 0.0
    for layer, members, sources in zip(model.layers, LAYERS, inputs):
        for j, k in enumerate(members):
            node = nodes[k]
            pairs = [(layer.db[j], node.b.grad), (layer.dc[j], node.c.grad)]
            pairs += [(layer.dW[s, j], node.w[i].grad) for s, i in enumerate(sources)]
            worst = max([worst] + [abs(a - b) / max(abs(b), 1e-300) for a, b in pairs])
    return worst


def main():
    output_node_with_the_tutorials_numbers()

    nodes, x, loss = build_and_run()
    print(f"The whole 1 -> 2 -> 3 -> 1 network at x1 = {X1}, t = {TARGET}: "
          f"x7 = {x[7].data:.6f}, loss = {loss.data:.6f}")
    print(f"Scene 1: dloss/dx7 = 2 (x7 - t) = {2 * (x[7].data - TARGET):+.6e}; "
          f"the engine: {x[7].grad:+.6e}\n")
    print("Scene 3, node by node (each gradient from the engine; the formula beside it):")
    for k in [7, 4, 5, 6, 2, 3]:
        print_node(nodes[k], x)
    print()

    print("Scene 2: node 2 feeds nodes 4, 5 and 6, so its dloss/dx is gathered from all three")
    total = gather(nodes, 2, [4, 5, 6])
    print(f"    sum = {total:+.6e}   the engine's dloss/dx2 = {x[2].grad:+.6e}")
    print("  and node 1 (the input) gathers from nodes 2 and 3:")
    total = gather(nodes, 1, [2, 3])
    print(f"    sum = {total:+.6e}   the engine's dloss/dx1 = {x[1].grad:+.6e}\n")

    worst = same_network_in_the_cython_core(nodes)
    print("The same network as bp.Model([Dense(1, 2, 'scaled_sigmoid'), Dense(2, 3, ...), "
          "Dense(3, 1, ...)]):")
    print(f"  largest relative difference between the Cython core's dW, db, dc and the "
          f"engine's: {worst:.1e}")


if __name__ == "__main__":
    main()

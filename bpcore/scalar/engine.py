"""A gradient engine on scalars: ``Value`` nodes, reverse-mode backward, DOT drawing.

Each operation computes its result AND its local derivatives in the same line: a new
``Value`` keeps, for every input, the pair (input, d result / d input). ``backward``
is then one generic loop — no per-operation backward closures — that walks the graph
from the output to the leaves and adds ``local * upstream`` into each input, so a
value used on several paths receives the sum of them (the chain rule's sum over
fan-out, tutorial 000; tutorial 003's f = (x + y)(x + z)).

Accumulation, stated once: ``v.backward()`` ADDS d v / d node to the ``grad`` of every
node of v's graph, leaves and intermediate nodes alike. A second call adds the same
amount again; ``v.zero_grad()`` sets every ``grad`` in the graph back to 0. (This is
PyTorch's rule for leaves. It is the trap micrograd users meet: parameters reused
across training steps must be zeroed before each backward.) A call never
compounds what an earlier one left in intermediate nodes: its own gradients flow
through a table of its own, not through the ``grad`` slots.

Both the topological sort and the backward walk are loops, not recursion, so a chain
of any length works. Plain Python: no numpy.
"""
from __future__ import annotations

import math
import os
import shutil
import subprocess
from typing import SupportsFloat


def _as_value(x: Value | float) -> Value:
    return x if isinstance(x, Value) else Value(x)


class Value:
    """A scalar with a ``grad`` slot that remembers how it was computed.

    ``Value(2.0).data`` is the number, ``.grad`` starts at 0. Arithmetic with other
    Values or plain Python numbers (on either side) returns new Values.
    """

    __slots__ = ("data", "grad", "inputs", "op", "label")

    data: float
    grad: float
    inputs: tuple[tuple[Value, float], ...]
    op: str
    label: str

    def __init__(self, data: SupportsFloat, inputs: tuple[tuple[Value, float], ...] = (),
                 op: str = "", label: str = "") -> None:
        self.data = float(data)
        self.grad = 0.0
        #: pairs (input Value, d self / d input), written by the operation that made self
        self.inputs = inputs
        self.op = op
        self.label = label

    def __repr__(self) -> str:
        name = f"{self.label}=" if self.label else ""
        return f"Value({name}{self.data!r}, grad={self.grad!r})"

    # ---------------------------------------------------------- arithmetic
    # Each op: forward value, then ((input, local derivative), ...).
    def __add__(self, other: Value | float) -> Value:
        other = _as_value(other)
        return Value(self.data + other.data, ((self, 1.0), (other, 1.0)), "+")

    def __mul__(self, other: Value | float) -> Value:
        other = _as_value(other)
        return Value(self.data * other.data, ((self, other.data), (other, self.data)), "*")

    def __neg__(self) -> Value:
        return Value(-self.data, ((self, -1.0),), "neg")

    def __sub__(self, other: Value | float) -> Value:
        other = _as_value(other)
        return Value(self.data - other.data, ((self, 1.0), (other, -1.0)), "-")

    def __truediv__(self, other: Value | float) -> Value:
        other = _as_value(other)
        a, b = self.data, other.data
        return Value(a / b, ((self, 1.0 / b), (other, -a / (b * b))), "/")

    def __pow__(self, exponent: Value | float) -> Value:
        if isinstance(exponent, Value):
            # x ** y = exp(y log x): d/dx = y x^(y-1), d/dy = x^y log x
            x, y = self.data, exponent.data
            if x <= 0:
                raise ValueError(f"a Value exponent needs a positive base; got base {x!r}")
            out = x ** y
            return Value(out, ((self, y * x ** (y - 1)), (exponent, out * math.log(x))), "**")
        p = float(exponent)
        return Value(self.data ** p, ((self, p * self.data ** (p - 1)),), f"**{p:g}")

    # a plain number on the left: 2 + v, 2 - v, 2 * v, 2 / v, 2 ** v
    def __radd__(self, other: float) -> Value:
        return self + other

    def __rmul__(self, other: float) -> Value:
        return self * other

    def __rsub__(self, other: float) -> Value:
        return Value(other) - self

    def __rtruediv__(self, other: float) -> Value:
        return Value(other) / self

    def __rpow__(self, other: float) -> Value:
        return Value(other) ** self

    # ------------------------------------------------------------ functions
    def exp(self) -> Value:
        e = math.exp(self.data)
        return Value(e, ((self, e),), "exp")

    def log(self) -> Value:
        return Value(math.log(self.data), ((self, 1.0 / self.data),), "log")

    def log1p(self) -> Value:
        # log(1 + x), exact for tiny x (the stable softplus of BCE-with-logits needs it)
        return Value(math.log1p(self.data), ((self, 1.0 / (1.0 + self.data)),), "log1p")

    def tanh(self) -> Value:
        t = math.tanh(self.data)
        return Value(t, ((self, 1.0 - t * t),), "tanh")

    def sigmoid(self) -> Value:
        # by the sign of x, so that exp's argument is never positive (no overflow)
        x = self.data
        if x >= 0:
            s = 1.0 / (1.0 + math.exp(-x))
        else:
            e = math.exp(x)
            s = e / (1.0 + e)
        return Value(s, ((self, s * (1.0 - s)),), "sigmoid")

    def relu(self) -> Value:
        # relu'(0) = 0, as in bpcore's kernels, scikit-learn and PyTorch
        x = self.data
        return Value(x if x > 0 else 0.0, ((self, 1.0 if x > 0 else 0.0),), "relu")

    def leaky_relu(self, negative_slope: float = 0.01) -> Value:
        # leaky_relu'(0) = negative_slope, as in bpcore's kernels and PyTorch
        x, slope = self.data, float(negative_slope)
        return Value(x if x > 0 else slope * x, ((self, 1.0 if x > 0 else slope),),
                     "leaky_relu")

    # ------------------------------------------------------------- the graph
    def graph(self) -> list[Value]:
        """Every node self depends on (itself included), inputs before their users."""
        order: list[Value] = []
        seen = {self}
        stack = [(self, iter(self.inputs))]
        while stack:                       # depth-first, post-order, with an explicit stack
            node, pending = stack[-1]
            for child, _ in pending:
                if child not in seen:
                    seen.add(child)
                    stack.append((child, iter(child.inputs)))
                    break
            else:
                stack.pop()
                order.append(node)
        return order

    def backward(self, grad: float = 1.0) -> None:
        """Add d self / d node (times ``grad``) to the ``grad`` of every node of the graph.

        The walk sums this call's contributions per node in its own table and adds a
        node's total to its ``grad`` once, when the walk reaches it; so each call adds
        exactly one chain-rule pass, whatever the ``grad`` slots held before.
        """
        upstream = {self: float(grad)}
        for node in reversed(self.graph()):      # users before their inputs
            g = upstream.pop(node, 0.0)
            node.grad += g
            for child, local in node.inputs:
                upstream[child] = upstream.get(child, 0.0) + local * g

    def zero_grad(self) -> None:
        """Set ``grad`` to 0 on every node of self's graph."""
        for node in self.graph():
            node.grad = 0.0

    def to_dot(self, rankdir: str = "LR") -> str:
        """Return Graphviz DOT text of self's graph, each node with its data and grad."""
        return to_dot(self, rankdir)


# ---------------------------------------------------------------- drawing
def _escape(text: str) -> str:
    # characters that DOT strings and record labels would otherwise read as syntax
    for special in '\\"{}|<>':
        text = text.replace(special, "\\" + special)
    return text


def to_dot(root: Value, rankdir: str = "LR") -> str:
    """Return Graphviz DOT text of ``root``'s graph: one box per Value (label, data,
    grad) and one ellipse per operation, edges pointing from inputs to results."""
    nodes = root.graph()
    number = {node: i for i, node in enumerate(nodes)}
    lines = ["digraph scalar_graph {", f"  rankdir={rankdir};",
             '  node [fontname="Helvetica"];']
    for node in nodes:
        i = number[node]
        name = _escape(node.label) + " | " if node.label else ""
        lines.append(f'  v{i} [shape=record, label="{{ {name}data {node.data:.6g} | '
                     f'grad {node.grad:.6g} }}"];')
        if node.op:
            lines.append(f'  op{i} [shape=ellipse, label="{_escape(node.op)}"];')
            lines.append(f"  op{i} -> v{i};")
            for child, _ in node.inputs:
                lines.append(f"  v{number[child]} -> op{i};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def render(root: Value, path: str | os.PathLike[str], format: str = "svg") -> bool:
    """Draw ``root``'s graph into ``path`` with Graphviz's ``dot`` program.

    Returns True when the file was written, False when ``dot`` is not installed
    (``to_dot`` needs nothing: its text can be pasted into any Graphviz viewer).
    """
    dot = shutil.which("dot")
    if dot is None:
        return False
    subprocess.run([dot, f"-T{format}", "-o", str(path)], input=to_dot(root),
                   text=True, check=True)
    return True

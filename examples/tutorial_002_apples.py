"""Tutorial 002: buying apples (and oranges) with 10% tax, differentiated three ways.

1. The tutorial's layer objects — a multiply node and an add node, each with
   ``forward`` and ``backward`` — built on bpcore's scalar ``Value``.
2. The same purchase as one graph of ``Value``s and a single ``backward()``.
3. The same purchase as a two-layer linear network in bpcore's Cython ``Model``:
   the fruit counts are the first layer's weights, the tax the second's.

Run from the repository root:  python examples/tutorial_002_apples.py
"""
import numpy as np

import bpcore as bp
from bpcore.scalar import Value


class MulLayer:
    """out = x * y; backward hands dout * y to x and dout * x to y."""

    def forward(self, x, y):
        self.x, self.y = Value(x), Value(y)        # kept: backward needs the inputs
        self.out = self.x * self.y
        return self.out.data

    def backward(self, dout):
        self.out.zero_grad()                       # each call reports one pass
        self.out.backward(dout)
        return self.x.grad, self.y.grad


class AddLayer:
    """out = x + y; backward hands dout unchanged to both inputs."""

    def forward(self, x, y):
        self.x, self.y = Value(x), Value(y)
        self.out = self.x + self.y
        return self.out.data

    def backward(self, dout):
        self.out.zero_grad()
        self.out.backward(dout)
        return self.x.grad, self.y.grad


def apples_with_layers(apple=100, apple_num=2, tax=1.1):
    mul_apple, mul_tax = MulLayer(), MulLayer()
    apple_price = mul_apple.forward(apple, apple_num)
    price = mul_tax.forward(apple_price, tax)
    dapple_price, dtax = mul_tax.backward(1.0)
    dapple, dapple_num = mul_apple.backward(dapple_price)
    return {"price": price, "dApple": dapple, "dApple_num": dapple_num, "dTax": dtax}


def fruit_with_layers(apple=100, apple_num=2, orange=150, orange_num=3, tax=1.1):
    mul_apple, mul_orange, add_fruit, mul_tax = MulLayer(), MulLayer(), AddLayer(), MulLayer()
    apple_price = mul_apple.forward(apple, apple_num)           # (1)
    orange_price = mul_orange.forward(orange, orange_num)       # (2)
    all_price = add_fruit.forward(apple_price, orange_price)    # (3)
    price = mul_tax.forward(all_price, tax)                     # (4)
    dall_price, dtax = mul_tax.backward(1.0)                    # (4)
    dapple_price, dorange_price = add_fruit.backward(dall_price)  # (3)
    dorange, dorange_num = mul_orange.backward(dorange_price)   # (2)
    dapple, dapple_num = mul_apple.backward(dapple_price)       # (1)
    return {"price": price, "dApple": dapple, "dApple_num": dapple_num,
            "dOrange": dorange, "dOrange_num": dorange_num, "dTax": dtax}


def fruit_as_one_graph(apple=100, apple_num=2, orange=150, orange_num=3, tax=1.1):
    a, an = Value(apple, label="apple"), Value(apple_num, label="apple_num")
    o, on = Value(orange, label="orange"), Value(orange_num, label="orange_num")
    t = Value(tax, label="tax")
    price = (a * an + o * on) * t
    price.label = "price"
    price.backward()
    return price, {"price": price.data, "dApple": a.grad, "dApple_num": an.grad,
                   "dOrange": o.grad, "dOrange_num": on.grad, "dTax": t.grad}


def fruit_as_dense_model(apple=100, apple_num=2, orange=150, orange_num=3, tax=1.1):
    """x = (apple, orange) -> Dense(2, 1) with W = counts -> Dense(1, 1) with W = tax."""
    model = bp.Model([bp.Dense(2, 1), bp.Dense(1, 1)])
    basket, taxing = model.layers
    basket.W[:, 0], basket.b[0] = [apple_num, orange_num], 0.0
    taxing.W[0, 0], taxing.b[0] = tax, 0.0
    price = model.forward(np.array([[apple, orange]], dtype=float))[0, 0]
    dx = model.backward(np.array([[1.0]]))[0]          # dprice/d(apple, orange)
    return {"price": price, "dApple": dx[0], "dApple_num": basket.dW[0, 0],
            "dOrange": dx[1], "dOrange_num": basket.dW[1, 0], "dTax": taxing.dW[0, 0]}


# What the tutorial prints (it shows price and the count gradients through int()).
SEED_APPLES = {"price": "220", "dApple": "2.2", "dApple_num": "110", "dTax": "200"}
SEED_FRUIT = {"price": "715", "dApple": "2.2", "dApple_num": "110",
              "dOrange": "3.3000000000000003", "dOrange_num": "165", "dTax": "650"}


def show(title, result, seed):
    print(title)
    for name, value in result.items():
        print(f"  {name + ':':12s} {float(value)!r:22s}  the tutorial prints {seed[name]}")
    print()


def main():
    show("Apples only, with MulLayer objects:", apples_with_layers(), SEED_APPLES)
    show("Apples and oranges, with MulLayer/AddLayer objects:", fruit_with_layers(),
         SEED_FRUIT)
    price, result = fruit_as_one_graph()
    show("The same purchase as one Value graph and one backward():", result, SEED_FRUIT)
    show("The same purchase as a two-layer linear Model (Cython core):",
         fruit_as_dense_model(), SEED_FRUIT)
    print("dOrange = orange_num * tax = 3 * 1.1, which binary floating point rounds to\n"
          "3.3000000000000003, as the tutorial shows; its int() hides the same kind of last-digit\n"
          "rounding in 220.00000000000003 and 110.00000000000001.\n")
    print("The graph in Graphviz DOT (paste into any DOT viewer, or `dot -Tsvg`):")
    print(price.to_dot())


if __name__ == "__main__":
    main()

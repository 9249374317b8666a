"""Two ranks, each with half of every batch, against one process on the whole batch:
SGD with momentum and Adam, the two-call path and train_step, 20 steps, from
different per-rank initialisations that broadcast_parameters fixes."""
import numpy as np
from _common import RANK, close, done, model, same_on_every_rank

import bpcore as bp
from bpcore import distributed as dist

rng = np.random.default_rng(7)
X = rng.normal(size=(20, 32, 3))
labels = rng.integers(0, 3, size=(20, 32))
values = rng.normal(size=(20, 32, 3))
half = slice(16 * RANK, 16 * RANK + 16)

OPTIMIZERS = {
    "sgd": lambda m: bp.SGD(m, lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3),
    "adam": lambda m: bp.Adam(m, lr=0.01, weight_decay=1e-3),
}
LOSSES = {"cross_entropy": (bp.CrossEntropyLoss(), labels), "mse": (bp.MSELoss(), values)}

for name, make_optimizer in OPTIMIZERS.items():
    for path in ("two_call", "train_step"):
        for loss_name, (loss, targets) in LOSSES.items():
            net = model(seed=100 + RANK)           # a different start on each rank
            reference = model(seed=100)            # rank 0's start, in one process
            assert RANK == 0 or not np.array_equal(net.params, reference.params)
            dist.broadcast_parameters(net)
            assert np.array_equal(net.params, reference.params)
            opt = dist.DistributedOptimizer(make_optimizer(net))
            dist.broadcast_optimizer_state(opt)
            ref_opt = make_optimizer(reference)
            for step in range(20):
                if path == "train_step":
                    value = net.train_step(X[step][half], targets[step][half], loss, opt)
                else:
                    value, _ = net.loss_and_grad(X[step][half], targets[step][half], loss)
                    opt.step()
                reference.loss_and_grad(X[step], targets[step], loss)
                ref_opt.step()
            what = f"{name} {path} {loss_name}"
            assert close(net.params, reference.params), (what, np.abs(
                net.params - reference.params).max())
            for key in ref_opt.state:
                assert close(opt.state[key], ref_opt.state[key]), (what, key)
            assert opt.steps == ref_opt.steps == 20, what
            assert same_on_every_rank(net.params), what
done()

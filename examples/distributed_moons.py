"""Data-parallel training on MPI: each rank trains on its shard of two moons.

    mpiexec -n 2 python -m mpi4py examples/distributed_moons.py [--epochs 40]

(``pip install "bpcore[mpi]" mpich`` gives mpi4py and an ``mpiexec`` beside python.)
Run without mpiexec it is one rank. Two ways to train are shown: ``fit`` on the
rank's shard, and a hand-written loop of ``train_step`` with the averaged gradient
clipped before each update. Rank 0 prints; every rank ends with the same weights.
"""
import argparse
import importlib.util

import numpy as np

import bpcore as bp
from bpcore.datasets import moons


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=40)
    args = parser.parse_args(argv)
    if importlib.util.find_spec("mpi4py") is None:
        print("skipped: needs mpi4py (pip install 'bpcore[mpi]' mpich)")
        return
    from bpcore import distributed as dist

    X, y = moons(1000, noise=0.1, seed=0)              # every rank makes the same data
    X_train, y_train, X_test, y_test = X[:800], y[:800], X[800:], y[800:]
    part = dist.shard(len(X_train))                    # this rank's rows
    say = print if dist.rank() == 0 else (lambda *a, **k: None)
    say(f"{dist.size()} rank(s), {part.stop - part.start} training rows on rank 0")

    # 1. fit on the shard: fit broadcasts rank 0's weights, averages each step's
    #    gradient over the ranks, and averages the logs
    model = bp.Model([bp.Dense(2, 16, "tanh"), bp.Dense(16, 16, "tanh"), bp.Dense(16, 2)],
                     seed=dist.rank())                 # any start: rank 0's wins
    optimizer = dist.DistributedOptimizer(bp.Adam(model, lr=0.02))
    history = model.fit(X_train[part], y_train[part], loss="cross_entropy",
                        optimizer=optimizer, epochs=args.epochs, batch_size=32, seed=0,
                        validation_data=(X_test[dist.shard(len(X_test))],
                                         y_test[dist.shard(len(X_test))]),
                        metrics=["accuracy"], verbose=0)
    say(f"fit: {len(history.epoch)} epochs, held-out accuracy "
        f"{history['val_accuracy'][-1]:.3f} (averaged over the ranks)")

    # 2. your own loop: the fused forward and backward, one Allreduce, a clip, the update
    model = bp.Model([bp.Dense(2, 16, "tanh"), bp.Dense(16, 16, "tanh"), bp.Dense(16, 2)],
                     seed=dist.rank())
    dist.broadcast_parameters(model)
    optimizer = dist.DistributedOptimizer(bp.SGD(model, lr=0.2, momentum=0.9))
    loss = bp.CrossEntropyLoss()
    Xs, ys = X_train[part], y_train[part]
    # (every rank must take the same number of steps: here the shards are equal; fit
    # handles shards of any size itself)
    for _ in range(args.epochs):
        for start in range(0, len(Xs), 32):
            model.loss_and_grad(Xs[start:start + 32], ys[start:start + 32], loss)
            optimizer.synchronize()                    # model.grads: the mean over ranks
            bp.clip_grad_norm(model, 1.0)
            optimizer.step()                           # no second reduction
    accuracy = np.mean(model.predict_labels(X_test) == y_test)
    identical = all(np.array_equal(p, model.params) for p in dist.allgather(model.params))
    say(f"loop: held-out accuracy {accuracy:.3f}; same weights on every rank: {identical}")


if __name__ == "__main__":
    main()

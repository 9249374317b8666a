"""Are the fused step's two multi-thread paths still worth their code? Paired A/B.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benches/multithread_paths.py \\
        [--threads 2] [--rounds 30]

With more than one BLAS thread, the fused step (src/_engine.pyx) takes two paths of
its own: Adam's pass over the flat buffers is shared with bpcore's helper thread
(src/_pool.h), and SGD with momentum has BLAS add each weight-gradient product into
the momentum buffer and step W with BLAS's threaded axpy. Both are chosen when a step
is planned, from whether BLAS runs more than one thread (``StepPlan.blas_parallel``).

This script builds two identical models per workload (W2 with momentum SGD, W2 with
Adam): one planned with those paths, one planned without them (the one-thread
choices: Adam's pass and the momentum update on the calling thread alone), both under
the same BLAS thread count. It times blocks of steps of the two alternately, from the
same restored state each round, and prints the median over rounds of the per-round
ratio with its quartiles (below 1: the multi-thread paths are faster).
"""
import argparse
import gc
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
if __package__ in (None, ""):              # run as a script: make `benches` importable
    sys.path.insert(0, str(HERE.parent))

from benches.workloads import W2_ADAM, W2_MOMENTUM, bpcore_step  # noqa: E402
from bpcore.nn import fused  # noqa: E402


def build(workload, blas_parallel):
    """(model, optimizer, step, X, y) of the workload, its fused step planned with
    (True) or without (False) the multi-thread paths."""
    model, optimizer, step = bpcore_step(workload, fused=True)
    X, y = workload.data()
    planned = fused._threads._blas_parallel
    fused._threads._blas_parallel = lambda: blas_parallel
    try:
        step(X, y)                                          # plans the step
    finally:
        fused._threads._blas_parallel = planned
    assert model._fused.engine.blas_parallel == blas_parallel
    return model, optimizer, step, X, y


def snapshot(model, optimizer):
    return model.params.copy(), {k: v.copy() for k, v in optimizer.state.items()}, \
        optimizer.steps


def restore(model, optimizer, saved):
    params, state, steps = saved
    model.params[...] = params
    for name, buf in state.items():
        optimizer.state[name][...] = buf
    optimizer.steps = steps


def block(run, steps):
    _, _, step, X, y = run
    start = time.perf_counter()
    for _ in range(steps):
        step(X, y)
    return (time.perf_counter() - start) / steps


def compare(workload, rounds):
    runs = {flag: build(workload, flag) for flag in (True, False)}
    saved = {flag: snapshot(*run[:2]) for flag, run in runs.items()}
    steps = max(1, int(0.02 / block(runs[False], 20)))      # about 20 ms per block
    times = {True: [], False: []}
    gc.collect()
    gc.disable()
    try:
        for r in range(rounds):
            order = (True, False) if r % 2 == 0 else (False, True)
            for flag in order:
                restore(*runs[flag][:2], saved[flag])
                block(runs[flag], 3)                      # wake the threads up
                restore(*runs[flag][:2], saved[flag])
                times[flag].append(block(runs[flag], steps))
    finally:
        gc.enable()
    ratios = [a / b for a, b in zip(times[True], times[False])]
    low, mid, high = statistics.quantiles(ratios, n=4, method="inclusive")
    print(f"| {workload.id} | {statistics.median(times[True]) * 1e6:.1f} | "
          f"{statistics.median(times[False]) * 1e6:.1f} | {mid:.3f} ({low:.3f}-{high:.3f}) |")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args(argv)
    import threadpoolctl
    with threadpoolctl.threadpool_limits(limits=args.threads, user_api="blas"):
        print(f"BLAS threads: {args.threads}; rounds: {args.rounds}")
        print("| workload | with the paths µs | without µs | with/without (quartiles) |")
        print("|---|---|---|---|")
        for workload in (W2_MOMENTUM, W2_ADAM):
            compare(workload, args.rounds)


if __name__ == "__main__":
    main()

"""benches/compare.py runs end to end, and its warm-up keeps every block's state.

No test here asserts a timing: the subprocess run checks that compare.py's own
correctness gate (bpcore's weights against the NumPy step's after 5 steps, 1e-10 in
float64) passes and that it prints a row for bpcore.
"""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from . import compare

ROOT = Path(__file__).resolve().parent.parent


class CountingPeer(compare.Peer):
    """A peer whose state is one counter; the log records the calls in order (a run
    of consecutive steps as one "run")."""

    def __init__(self):
        self.state, self.saved, self.log = 0, 0, []

    def run(self):
        self.state += 1
        if not self.log or self.log[-1] != "run":
            self.log.append("run")

    def restore(self):
        self.state = self.saved
        self.log.append("restore")


def test_warm_up_runs_the_peer_then_puts_its_state_back():
    peer = CountingPeer()
    peer.saved = peer.state = 7
    compare.warm_up(peer, 0.01)
    assert peer.log == ["restore", "run", "restore"]
    assert peer.state == 7


def test_interleaved_medians_warms_every_block_only_with_threads():
    for threads, warm_ups in ((1, 0), (2, 3 * 2)):
        a, b = CountingPeer(), CountingPeer()
        medians = compare.interleaved_medians({"a": a, "b": b}, rounds=3, threads=threads)
        assert set(medians) == {"a", "b"}
        assert all(np.isfinite(v) and v > 0 for v in medians.values())
        # a warm-up is a restore, runs and a restore; a timed block one restore
        restores = a.log.count("restore") + b.log.count("restore")
        calibration = 2 * (1 + (threads > 1) * 2)        # block_size restores once
        assert restores == calibration + 2 * 3 + 2 * warm_ups


def test_compare_runs_and_its_check_passes():
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    result = subprocess.run(
        [sys.executable, str(ROOT / "benches" / "compare.py"), "--quick", "--threads", "2",
         "--only", "W1b", "--rounds", "1", "--plot", ""],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "CHECK FAILED" not in result.stdout
    rows = [line for line in result.stdout.splitlines() if line.startswith("| W1b")]
    assert len(rows) == 2, result.stdout      # the step and predict rows, both timed


def test_matmul_only_makes_the_step_products_in_row_major_layout():
    workload = compare.W2_MOMENTUM.with_dtype(np.float64)
    peer = compare.MatmulPeer(workload)
    peer.run()
    n, sizes = workload.batch, workload.sizes
    layers = len(sizes) - 1
    assert len(peer.calls) == 3 * layers - 1     # forward, dW each; dX all but the first
    for l, (a, b, c, ta, tb, alpha, beta) in enumerate(peer.calls[:layers]):
        X, W, Z = b.T, a.T, c.T                  # Z = X . W on C-ordered arrays
        assert X.flags.c_contiguous and W.flags.c_contiguous and Z.flags.c_contiguous
        assert X.shape == (n, sizes[l]) and W.shape == (sizes[l], sizes[l + 1])
        np.testing.assert_allclose(Z, X @ W, rtol=1e-12)
    macs = sum(i * o for i, o in zip(sizes[:-1], sizes[1:]))
    assert peer.flops == 2 * n * (2 * macs + macs - sizes[0] * sizes[1])

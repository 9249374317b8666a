"""benches/fused_gemm.py runs end to end and labels each row with the route the
engine takes. No timing is asserted."""
import numpy as np
import threadpoolctl  # the test extra's

from bpcore import _dense

from . import fused_gemm


def test_fused_gemm_prints_every_shape_with_the_route_taken(capsys, monkeypatch):
    monkeypatch.setattr(fused_gemm, "SHAPES", [(100, 16, 16), (8, 64, 64), (32, 128, 128)])
    before = threadpoolctl.threadpool_info()
    fused_gemm.main(["--rounds", "1"])
    # its one BLAS thread is the script's own: the session's threads are as they were
    assert [lib["num_threads"] for lib in threadpoolctl.threadpool_info()] == \
        [lib["num_threads"] for lib in before]
    rows = [line.split(" | ") for line in capsys.readouterr().out.splitlines()
            if line.startswith("| float")]
    assert len(rows) == 2 * 2 * 3                    # dtypes x passes x shapes
    for row in rows:
        dtype, name, m, n, k = row[0][2:], row[1], int(row[2]), int(row[3]), int(row[4])
        assert dtype in ("float64", "float32") and name in ("forward", "delta")
        taken = row[-1].rstrip(" |")
        assert taken == ("own" if _dense.takes_fused_loops(name == "delta", m, n, k)
                         else "BLAS")
        # delta . W^T of a 128 x 128 W is beyond the own loops' scratch: no own time
        assert (row[6] == "-") == (name == "delta" and n * k > _dense.SMALL_SCRATCH
                                   and m > _dense.SKINNY_ROWS)
        assert np.isfinite(float(row[7]))

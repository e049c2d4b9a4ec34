#!/usr/bin/python3
"""NumPy's weighted mean of 100 updates of 1,000,000 float32: the yardstick for
aggregate's BenchmarkFedAvg.

It times w @ X (X: 100 x 1,000,000 float32, w: 100 float32 weights divided by
their sum), which NumPy hands to BLAS sgemv, and prints GB/s of update data
read (400 MB per product) in the same units as BenchmarkFedAvg's GB/s metric.

    /usr/bin/python3 aggregate/testdata/numpy_gemv.py            # 1 thread, then all
    /usr/bin/python3 aggregate/testdata/numpy_gemv.py --threads 1

The number of BLAS threads is fixed when NumPy is imported, so each setting
runs in a child process with OPENBLAS_NUM_THREADS (and OMP_NUM_THREADS) set.
Debian's python3-numpy uses the system BLAS (OpenBLAS when libopenblas0 is
installed; check with numpy.show_config()).
"""

import argparse
import os
import subprocess
import sys
import time

N_UPDATES = 100
PARAMS = 1_000_000


def measure(repeats):
    import numpy as np

    rng = np.random.default_rng(1)
    x = rng.standard_normal((N_UPDATES, PARAMS), dtype=np.float32)
    w = (rng.random(N_UPDATES, dtype=np.float32) + np.float32(0.5))
    w /= w.sum()
    out = w @ x  # warm-up: page in x, load BLAS
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = w @ x
        times.append(time.perf_counter() - t0)
    assert out.dtype == np.float32 and out.shape == (PARAMS,)
    times.sort()
    gb = x.nbytes / 1e9
    return gb / times[0], gb / times[len(times) // 2]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, help="BLAS threads (default: 1, then all cores)")
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        best, median = measure(a.repeats)
        print(f"{best:.2f} {median:.2f}")
        return
    settings = [a.threads] if a.threads else [1, os.cpu_count() or 1]
    for n in settings:
        env = dict(os.environ, OPENBLAS_NUM_THREADS=str(n), OMP_NUM_THREADS=str(n))
        out = subprocess.run([sys.executable, __file__, "--child", "--repeats", str(a.repeats)],
                             env=env, check=True, capture_output=True, text=True).stdout.split()
        print(f"numpy w @ X ({N_UPDATES} x {PARAMS} float32, sgemv), {n} thread(s): "
              f"{out[0]} GB/s best, {out[1]} GB/s median of {a.repeats}")


if __name__ == "__main__":
    main()

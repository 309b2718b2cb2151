"""The pipeline calibration's power for a planted shift, on a hand example."""

import sys

import numpy as np
import pytest


@pytest.fixture(scope="module")
def bench(repo_root):
    # the script imports its sibling bench_calibration when it runs, as it does as a script
    sys.path.insert(0, str(repo_root / "benchmarks"))
    import bench_calibration_pipeline

    yield bench_calibration_pipeline
    sys.path.remove(str(repo_root / "benchmarks"))


def test_shifted_power_moves_the_difference_only(bench):
    # Three null data sets: diff -0.02, 0, +0.02, each with se 0.01 and a normal t (df 1e9).
    # Shifted by 0.03 they read 0.01, 0.03, 0.05: z = 1, 3, 5, so the test rejects 2 of 3.
    # The oracle knows sd = std(-0.02, 0, 0.02; ddof 1) = 0.02 and rejects |diff| > 1.96 ·
    # 0.02 = 0.0392: only 0.05, 1 of 3.
    diff = np.array([-0.02, 0.0, 0.02])
    power, oracle = bench.shifted_power(diff, np.full(3, 0.01), np.full(3, 1e9), shift=0.03)
    assert power["rate"] == pytest.approx(2 / 3)
    assert oracle["rate"] == pytest.approx(1 / 3)
    # few df widen the test's threshold (t_2 at 0.975 = 4.30): z = 3 no longer rejects
    power, _ = bench.shifted_power(diff, np.full(3, 0.01), np.full(3, 2.0), shift=0.03)
    assert power["rate"] == pytest.approx(1 / 3)
    # se 0 (identical terms everywhere) rejects any non-zero difference
    power, _ = bench.shifted_power(np.array([0.0, 0.0, 0.01]), np.zeros(3), np.full(3, 5.0),
                                   shift=0.0)
    assert power["rate"] == pytest.approx(1 / 3)

"""scripts/gpu_check.sh without CUDA: says so, writes that to its table file and exits 0."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA: the script would run for real")
def test_gpu_check_without_cuda_exits_zero(tmp_path):
    env = {**os.environ, "OUT": str(tmp_path), "PYTHON": sys.executable}
    env.pop("GPU_CHECK_DRY_RUN", None)
    res = subprocess.run(
        ["bash", str(ROOT / "scripts" / "gpu_check.sh")], env=env, capture_output=True, text=True, timeout=120
    )
    assert res.returncode == 0, res.stderr
    assert "no CUDA device" in res.stdout
    assert "no CUDA device" in (tmp_path / "gpu_table.txt").read_text()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA: the bench would run for real")
def test_gpu_bench_without_cuda_says_so():
    res = subprocess.run(
        [sys.executable, str(ROOT / "benches" / "gpu.py"), "--device", "cuda"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    assert "no CUDA device" in res.stdout

"""Triton kernels on CPU: the triton cases of the op tests, rerun in a subprocess under the
interpreter (TRITON_INTERPRET must be set before triton is imported, so not in this process)."""
from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


@pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="triton is not installed")
def test_triton_kernels_under_interpreter():
    env = dict(os.environ, TRITON_INTERPRET="1")
    env.pop("FRSENGINE_KERNELS", None)
    files = [str(HERE / name) for name in ("test_mixed_op.py", "test_mixed_precision.py", "test_beta_aggregation.py")]
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", "triton", *files],
                          cwd=HERE.parents[1], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    passed = re.search(r"(\d+) passed", proc.stdout)
    assert passed and int(passed.group(1)) >= 6, proc.stdout[-2000:]  # nothing silently skipped
    assert "skipped" not in proc.stdout.splitlines()[-1], proc.stdout[-2000:]

"""The native build: C++ unit tests through CMake/ctest, and the CUDA kernels where they can run."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from frsengine.ops import _ext, dispatch

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_cmake_build_and_ctest(tmp_path):
    if shutil.which("cmake") is None:
        pytest.skip("cmake is not installed")
    if not (ROOT / "CMakeLists.txt").exists():
        pytest.skip("no CMakeLists.txt beside the package (not a source checkout)")
    prefix = subprocess.check_output([sys.executable, "-c", "import torch;print(torch.utils.cmake_prefix_path)"],
                                     text=True).strip()
    generator = ["-G", "Ninja"] if shutil.which("ninja") else []
    subprocess.run(["cmake", "-S", str(ROOT), "-B", str(tmp_path), f"-DCMAKE_PREFIX_PATH={prefix}", *generator],
                   check=True, capture_output=True)
    build = subprocess.run(["cmake", "--build", str(tmp_path), "-j2"], capture_output=True, text=True)
    assert build.returncode == 0, build.stdout[-4000:] + build.stderr[-4000:]
    ctest = subprocess.run(["ctest", "--test-dir", str(tmp_path), "--output-on-failure"], capture_output=True,
                           text=True)
    assert ctest.returncode == 0, ctest.stdout[-4000:]
    assert "100% tests passed" in ctest.stdout


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device: the CUDA kernels cannot run here")
@pytest.mark.parametrize("backend", ["cuda", "triton"])
def test_gpu_kernels_match_reference(backend, monkeypatch):
    if dispatch.unavailable_reason(backend, torch.device("cuda")) is not None:
        pytest.skip(dispatch.unavailable_reason(backend, torch.device("cuda")))
    from frsengine.ops.beta_aggregation import aggregate
    from frsengine.ops.fused_mixed import mixed_op_module_forward
    from opcases import assert_close, oracle_pair

    monkeypatch.setenv(dispatch.ENV_VAR, backend)
    for training in (True, False):
        oracle, fused = oracle_pair(24, training)
        oracle, fused = oracle.cuda(), fused.cuda()
        x = torch.randn(3, 24, 33, 40, device="cuda", requires_grad=True)
        a = torch.softmax(torch.randn(4, device="cuda"), 0).requires_grad_()
        want, got = oracle(x, a), mixed_op_module_forward(fused, x, a)
        assert_close(got, want, 1e-4, "forward")
        g = torch.randn_like(want)
        for gw, gg in zip(torch.autograd.grad(want, [x, a, *oracle.parameters()], g),
                          torch.autograd.grad(got, [x, a, *fused.parameters()], g)):
            assert_close(gg, gw, 1e-3, "grad")
        for bw, bg in zip(oracle.buffers(), fused.buffers()):
            assert_close(bg.double(), bw.double(), 1e-4, "running stats")
    # Batched branches: 3 groups interleaved along the batch vs the oracle per group; keep mode.
    for keep in (True, False):
        oracle, fused = oracle_pair(16, True)
        oracle, fused = oracle.cuda(), fused.cuda()
        xs_o = [torch.randn(2, 16, 20, 24, device="cuda", requires_grad=True) for _ in range(3)]
        x = torch.stack([t.detach() for t in xs_o], 1).reshape(6, 16, 20, 24).requires_grad_()
        a = torch.softmax(torch.randn(4, device="cuda"), 0)
        want = torch.stack([oracle(t, a) for t in xs_o], 1).reshape(6, 16, 20, 24)
        got = mixed_op_module_forward(fused, x, a, groups=3, keep=keep)
        assert_close(got, want, 1e-4, f"grouped forward keep={keep}")
        g = torch.randn_like(want)
        gw = torch.autograd.grad(want, [*xs_o, *oracle.parameters()], g)
        gg = torch.autograd.grad(got, [x, *fused.parameters()], g)
        assert_close(gg[0], torch.stack(gw[:3], 1).reshape(6, 16, 20, 24), 1e-3, "grouped grad x")
        for w_, g_ in zip(gw[3:], gg[1:]):
            assert_close(g_, w_, 1e-3, "grouped grad param")
        for bw, bg in zip(oracle.buffers(), fused.buffers()):
            assert_close(bg.double(), bw.double(), 1e-4, "grouped running stats")
    xs = [torch.randn(2, 8, *s, device="cuda", requires_grad=True) for s in ((9, 10), (17, 20), (34, 40))]
    beta = torch.rand(3, device="cuda", requires_grad=True)
    ref = sum(b * torch.nn.functional.interpolate(t, size=(17, 20), mode="bilinear", align_corners=True)
              for t, b in zip(xs, beta))
    got = aggregate(xs, beta, (17, 20))
    assert_close(got, ref, 1e-5, "aggregate forward")
    g = torch.randn_like(ref)
    for gw, gg in zip(torch.autograd.grad(ref, [*xs, beta], g), torch.autograd.grad(got, [*xs, beta], g)):
        assert_close(gg, gw, 1e-4, "aggregate grad")


def test_cpu_only_torch_builds_without_cuda():
    """Without a CUDA torch the extension is CPU-only and the CUDA backend says why it cannot run."""
    if torch.version.cuda:
        pytest.skip("CUDA torch: the CUDA sources are part of this build")
    if _ext.extension() is None:
        pytest.skip(f"extension not loaded: {_ext.problem()}")
    assert not _ext.has_cuda()
    reason = dispatch.unavailable_reason("cuda", torch.device("cuda"))
    assert reason is not None and "without CUDA" in reason

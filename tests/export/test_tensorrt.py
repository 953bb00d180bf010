"""Engine cache keys, and the TensorRT build (GPU + tensorrt only)."""
import dataclasses

import pytest
import torch

from frsengine.errors import FrsError
from frsengine.export.tensorrt import EngineKey, engine_path

BASE = EngineKey(genotype_sha256="a" * 64, weights_sha256="b" * 64, precision="fp16", min_batch=1, opt_batch=8,
                 max_batch=32, height=128, width=128, gpu="NVIDIA H100 (sm_90)", tensorrt="10.9.0")
CHANGES = {"genotype_sha256": "c" * 64, "weights_sha256": "d" * 64, "precision": "fp32", "min_batch": 2,
           "opt_batch": 16, "max_batch": 64, "height": 256, "width": 256, "gpu": "NVIDIA A100 (sm_80)",
           "tensorrt": "10.10.0"}


def test_every_key_part_changes_the_key(tmp_path):
    assert set(CHANGES) == {f.name for f in dataclasses.fields(EngineKey)}
    digests = {BASE.digest()}
    for name, value in CHANGES.items():
        key = dataclasses.replace(BASE, **{name: value})
        assert key.digest() != BASE.digest(), name
        assert engine_path(key, tmp_path) != engine_path(BASE, tmp_path)
        digests.add(key.digest())
    assert len(digests) == len(CHANGES) + 1
    assert dataclasses.replace(BASE).digest() == BASE.digest()  # same parts, same key


def test_key_validation():
    with pytest.raises(FrsError, match="batch range"):
        dataclasses.replace(BASE, min_batch=8, opt_batch=4)
    with pytest.raises(FrsError, match="precision"):
        dataclasses.replace(BASE, precision="int8")
    assert BASE.shapes() == ((1, 3, 128, 128), (8, 3, 128, 128), (32, 3, 128, 128))


def _tensorrt_ready() -> str | None:
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return "tensorrt is not installed (it cannot be on machines without an NVIDIA driver)"
    if not torch.cuda.is_available():
        return "no CUDA device"
    return None


@pytest.mark.skipif(_tensorrt_ready() is not None, reason=str(_tensorrt_ready()))
def test_engine_builds_caches_and_matches_torch(random_package):
    from frsengine.export.backends import TensorRTBackend, TorchBackend

    trt = TensorRTBackend(random_package, torch.device("cuda"), "fp32", batch_size=4)
    ref = TorchBackend(random_package.build(), torch.device("cuda"), "fp32")
    x = torch.rand(3, 3, 128, 128, device="cuda")
    assert float((trt(x) - ref(x)).abs().max()) < 1e-3
    again = TensorRTBackend(random_package, torch.device("cuda"), "fp32", batch_size=4)
    assert again.engine == trt.engine  # cached, not rebuilt

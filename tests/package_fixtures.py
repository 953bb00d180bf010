"""Packages of small derived FRSNets (random weights) and the fixtures the restore, export and face
tests share (each conftest there imports the ones it uses)."""
import pytest
import torch

from frsengine.export import load_package, save_package
from frsengine.models import build_derived
from frsengine.nas.genotype import load_genotype

GENOTYPE = "configs/genotypes/frsnet-seed0.json"


@pytest.fixture(autouse=True)
def _cpu_only(monkeypatch):
    """These tests check conversions exactly: keep the default device the CPU (fp32) also on a GPU
    machine, where `auto` would pick CUDA fp16."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    # `auto` would pick onnxruntime on the CPU: one ~10 s export per package. Its choice is tested in
    # tests/export/test_onnx.py; here auto means eager torch.
    import frsengine.export.backends as backends

    monkeypatch.setattr(backends, "onnxruntime_available", lambda: False)


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(threads)


def tiny_frsnet(last_bias=None):
    """FRSNet (tiny preset) of the seed0 genotype. With ``last_bias``, conv_last is zeroed and its
    bias set: the residual output is then exactly ``x - bias`` (an RGB-order probe)."""
    torch.manual_seed(0)
    model = build_derived(load_genotype(GENOTYPE), "tiny")
    if last_bias is not None:
        with torch.no_grad():
            model.conv_last.weight.zero_()
            model.conv_last.bias.copy_(torch.tensor(last_bias))
    return model


@pytest.fixture(scope="session")
def random_package(tmp_path_factory):
    path = tmp_path_factory.mktemp("pkg") / "tiny-random"
    return load_package(save_package(tiny_frsnet(), path, preset="tiny", training_data="untrained (random init)"))


@pytest.fixture(scope="session")
def lift_package(tmp_path_factory):
    """Output = input + 26/255 on the red channel only (clamped to 1)."""
    path = tmp_path_factory.mktemp("pkg") / "tiny-lift-red"
    return load_package(save_package(tiny_frsnet([-26 / 255, 0.0, 0.0]), path, preset="tiny",
                                     training_data="untrained; conv_last set by hand"))


@pytest.fixture(scope="session")
def identity_package(tmp_path_factory):
    path = tmp_path_factory.mktemp("pkg") / "tiny-identity"
    return load_package(save_package(tiny_frsnet([0.0, 0.0, 0.0]), path, preset="tiny",
                                     training_data="untrained; conv_last zeroed (identity)"))


@pytest.fixture(scope="session", autouse=True)
def _cache_dir(tmp_path_factory):
    """ONNX exports and engines of this test session go to a temporary cache."""
    import os

    old = os.environ.get("FRSENGINE_CACHE")
    os.environ["FRSENGINE_CACHE"] = str(tmp_path_factory.mktemp("frs-cache"))
    yield
    if old is None:
        os.environ.pop("FRSENGINE_CACHE", None)
    else:
        os.environ["FRSENGINE_CACHE"] = old

"""ONNX export with a dynamic batch axis matches torch (<= 1e-4); the onnxruntime backend and the
build-engine CLI use it."""
import numpy as np
import pytest
import torch

import frsengine
from frsengine.cli import main
from frsengine.export.onnx import INPUT_NAME, cached_onnx, check_onnx


def test_onnx_matches_torch_with_dynamic_batch(random_package):
    import onnx

    path = cached_onnx(random_package)
    graph = onnx.load(str(path)).graph
    dims = graph.input[0].type.tensor_type.shape.dim
    assert graph.input[0].name == INPUT_NAME and dims[0].dim_param and not dims[0].dim_value  # symbolic batch
    assert [d.dim_value for d in dims[1:]] == [3, 128, 128]
    ops = {n.op_type for n in graph.node}
    assert "BatchNormalization" not in ops  # Conv-BN folded
    check = check_onnx(path, random_package.build(fold=False), (128, 128), batch_sizes=(1, 3, 5))
    assert check.max_abs_error <= 1e-4, str(check)


def test_onnxruntime_backend_matches_torch_backend(random_package):
    x = torch.rand(3, 3, 128, 128)
    y_ort, rep = frsengine.restore(x, random_package, backend="onnxruntime", return_report=True)
    y_torch = frsengine.restore(x, random_package, backend="torch", device="cpu")
    assert rep.backend.startswith("onnxruntime")
    assert float((y_ort - y_torch).abs().max()) <= 1e-4
    img = np.random.default_rng(0).integers(0, 255, (90, 70, 3), dtype=np.uint8)
    a = frsengine.restore(img, random_package, backend="onnxruntime").astype(int)
    b = frsengine.restore(img, random_package, backend="torch", device="cpu").astype(int)
    assert np.abs(a - b).max() <= 1


def test_build_engine_onnx_only_from_genotype_and_weights(tmp_path, capsys):
    from safetensors.torch import save_file

    from tests.package_fixtures import GENOTYPE, tiny_frsnet

    weights = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in tiny_frsnet().state_dict().items()}, str(weights))
    out = tmp_path / "model.onnx"
    rc = main(["build-engine", "--genotype", GENOTYPE, "--weights", str(weights), "--preset", "tiny",
               "--onnx-only", "--out", str(out), "--min-batch", "1", "--opt-batch", "2", "--max-batch", "4"])
    text = capsys.readouterr().out
    assert rc == 0 and out.is_file()
    err = float(text.split("max abs error ")[1].split()[0])
    assert err <= 1e-4
    # The same weights under another preset: refused before any export, one line.
    rc = main(["build-engine", "--genotype", GENOTYPE, "--weights", str(weights), "--preset", "small",
               "--onnx-only", "--out", str(tmp_path / "other.onnx")])
    err_text = capsys.readouterr().err
    assert rc == 2 and "do not match the genotype and preset" in err_text and len(err_text.strip().splitlines()) == 1


def test_build_engine_without_tensorrt_names_what_to_install(random_package, tmp_path, capsys):
    pytest.importorskip("torch")
    try:
        import tensorrt  # noqa: F401
        pytest.skip("tensorrt is installed here: the missing-TensorRT message cannot be shown")
    except ImportError:
        pass
    rc = main(["build-engine", "--model", str(random_package.path), "--out", str(tmp_path / "m.engine")])
    err = capsys.readouterr().err
    assert rc == 2 and "pip install tensorrt" in err and "--onnx-only" in err
    assert not (tmp_path / "m.engine").exists()


def test_build_engine_usage_errors(random_package, tmp_path, capsys):
    assert main(["build-engine", "--genotype", "configs/genotypes/frsnet-seed0.json", "--onnx-only",
                 "--out", str(tmp_path / "x.onnx")]) == 2
    assert "--genotype needs --weights" in capsys.readouterr().err
    assert main(["build-engine", "--model", str(random_package.path), "--onnx-only", "--min-batch", "8",
                 "--max-batch", "4", "--out", str(tmp_path / "x.onnx")]) == 2
    assert "--min-batch" in capsys.readouterr().err


def test_auto_picks_onnxruntime_on_the_cpu_and_falls_back(random_package, monkeypatch, caplog):
    import logging

    import frsengine.export.backends as backends

    cached_onnx(random_package)  # exported once in this session already
    x = torch.rand(2, 3, 128, 128)
    with caplog.at_level(logging.INFO, logger="frsengine"):
        _, rep = frsengine.restore(x, random_package, device="cpu", return_report=True)
    assert rep.backend.startswith("onnxruntime (cpu")

    def broken(*args, **kwargs):
        raise RuntimeError("no ONNX for you")

    monkeypatch.setattr(backends, "OnnxRuntimeBackend", broken)
    with caplog.at_level(logging.INFO, logger="frsengine"):
        _, rep = frsengine.restore(x, random_package, device="cpu", batch_size=3, return_report=True)
    assert rep.backend.startswith("torch (cpu")
    assert "onnxruntime unavailable for this model (no ONNX for you); using torch" in caplog.text

"""Model packages: save/load round trip, and one-line errors for everything that can be wrong."""
import json
import shutil

import pytest
import torch

import frsengine
from frsengine.export import PackageError, load_package, save_package
from frsengine.export.package import GENOTYPE_FILE, META_FILE, WEIGHTS_FILE, genotype_hash
from frsengine.models import build_derived, fold_bn
from frsengine.nas.genotype import load_genotype

from tests.package_fixtures import GENOTYPE, tiny_frsnet


def one_line(exc) -> str:
    text = str(exc.value)
    assert "\n" not in text
    return text


@pytest.mark.parametrize("name", ["pkg", "pkg.safetensors"])
def test_round_trip_folder_and_file(tmp_path, name):
    model = tiny_frsnet().eval()
    path = save_package(model, tmp_path / name, preset="tiny", training_data="untrained (random init)", note="test")
    pkg = frsengine.load(path)
    assert pkg.network == "frsnet" and pkg.preset == "tiny" and pkg.input_size == (128, 128)
    assert pkg.meta["training_data"] == "untrained (random init)" and pkg.meta["version"] == 1
    assert pkg.genotype.to_dict() == model.genotype.to_dict()
    x = torch.rand(2, 3, 128, 128)
    with torch.no_grad():
        assert torch.allclose(pkg.build()(x), model(x), atol=1e-5)  # built folded, same function
        assert torch.equal(pkg.build(fold=False)(x), model(x))
    with pytest.raises(PackageError, match="already exists"):
        save_package(model, path, preset="tiny")


def test_folded_model_package(tmp_path):
    model = fold_bn(tiny_frsnet())
    pkg = load_package(save_package(model, tmp_path / "folded", preset="tiny"))
    assert pkg.meta["bn_folded"] is True
    x = torch.rand(1, 3, 128, 128)
    with torch.no_grad():
        assert torch.equal(pkg.build()(x), model(x))


def test_wrong_preset_and_not_a_derived_net(tmp_path):
    with pytest.raises(PackageError, match="not built with preset 'small'"):
        save_package(tiny_frsnet(), tmp_path / "p", preset="small")
    with pytest.raises(PackageError, match="derived network"):
        save_package(torch.nn.Conv2d(3, 3, 3), tmp_path / "p", preset="tiny")


@pytest.fixture
def pkg_dir(tmp_path):
    return save_package(tiny_frsnet(), tmp_path / "pkg", preset="tiny")


def edit_meta(path, **changes):
    meta = json.loads((path / META_FILE).read_text())
    meta.update(changes)
    (path / META_FILE).write_text(json.dumps(meta))


def test_missing_files(pkg_dir, monkeypatch):
    monkeypatch.delenv("FRSENGINE_MODEL", raising=False)
    with pytest.raises(PackageError, match="pass model=") as exc:
        load_package(None)
    one_line(exc)
    with pytest.raises(PackageError, match="no such model package"):
        load_package(pkg_dir.parent / "nope")
    for name in (WEIGHTS_FILE, GENOTYPE_FILE, META_FILE):
        broken = pkg_dir.parent / f"broken-{name}"
        shutil.copytree(pkg_dir, broken)
        (broken / name).unlink()
        with pytest.raises(PackageError, match=f"missing {name}") as exc:
            load_package(broken)
        one_line(exc)


def test_version_and_format(pkg_dir):
    edit_meta(pkg_dir, version=99)
    with pytest.raises(PackageError, match="package version 99 is not supported") as exc:
        load_package(pkg_dir)
    one_line(exc)
    edit_meta(pkg_dir, version=1, format="something.else")
    with pytest.raises(PackageError, match="not an frsengine model package"):
        load_package(pkg_dir)


def test_genotype_does_not_match_weights(pkg_dir):
    other = load_genotype(GENOTYPE)
    # Another architecture: a different upsampling path changes which cells (and shapes) exist.
    d = other.to_dict()
    d["spaces"]["upsample"]["path"] = [1, 1, 1, 1, 1, 1]
    (pkg_dir / GENOTYPE_FILE).write_text(json.dumps(d))
    with pytest.raises(PackageError, match="genotype hash does not match"):
        load_package(pkg_dir)
    from frsengine.nas.genotype import genotype_from_dict

    edit_meta(pkg_dir, genotype_sha256=genotype_hash(genotype_from_dict(d)))
    with pytest.raises(PackageError, match="do not match the genotype and preset") as exc:
        load_package(pkg_dir)
    text = one_line(exc)
    assert "missing" in text or "wrong shape" in text or "unexpected" in text


def test_weights_of_another_preset(pkg_dir, tmp_path):
    from safetensors.torch import save_file

    small = build_derived(load_genotype(GENOTYPE), "small")
    save_file({k: v.contiguous() for k, v in small.state_dict().items()}, str(pkg_dir / WEIGHTS_FILE))
    with pytest.raises(PackageError, match="weights hash does not match"):
        load_package(pkg_dir)
    from frsengine.export.package import weights_hash

    edit_meta(pkg_dir, weights_sha256=weights_hash(small.state_dict()))
    with pytest.raises(PackageError, match="wrong shape .* the genotype needs"):
        load_package(pkg_dir)


def test_corrupt_files(pkg_dir):
    (pkg_dir / WEIGHTS_FILE).write_bytes(b"\x00garbage")
    with pytest.raises(PackageError, match="not a readable safetensors file"):
        load_package(pkg_dir)
    (pkg_dir / GENOTYPE_FILE).write_text("{not json")
    with pytest.raises(PackageError, match="not valid JSON"):
        load_package(pkg_dir)


def test_plain_safetensors_is_not_a_package(tmp_path):
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(tmp_path / "w.safetensors"))
    with pytest.raises(PackageError, match="holds weights only"):
        load_package(tmp_path / "w.safetensors")


def test_mfpsnet_package_needs_a_prior_function(tmp_path):
    from frsengine.models import get_config

    torch.manual_seed(0)
    model = build_derived(load_genotype("configs/genotypes/mfpsnet-seed0.json"), "tiny")
    pkg = load_package(save_package(model, tmp_path / "mfps", preset="tiny"))
    assert pkg.meta["priors"][0]["name"] == "parsing"
    img = torch.rand(1, 3, 128, 128)
    with pytest.raises(frsengine.FrsError, match="pass prior_fn"):
        frsengine.restore(img, pkg, device="cpu")
    with pytest.raises(frsengine.FrsError, match="cannot run MFPSNet"):
        frsengine.restore(img, pkg, backend="onnxruntime", prior_fn=lambda x: {})
    priors = get_config("mfpsnet", "tiny").priors

    def prior_fn(x):
        return {p.name: torch.zeros(x.shape[0], p.channels, *x.shape[-2:], dtype=x.dtype) for p in priors}

    out = frsengine.restore(img, pkg, prior_fn=prior_fn, device="cpu")
    with torch.no_grad():
        ref = model.eval()(img, prior_fn=prior_fn)[-1].clamp(0, 1)
    assert out.shape == img.shape and torch.allclose(out, ref, atol=1e-4)

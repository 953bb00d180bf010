import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from frsengine.cli import main
from frsengine.models import build_derived, build_supernet
from frsengine.nas.decode import decode
from frsengine.nas.genotype import load_genotype

EXAMPLES = Path(__file__).resolve().parents[2] / "configs" / "genotypes"


@pytest.mark.parametrize("name", ["frsnet-seed0.json", "mfpsnet-seed0.json"])
def test_shipped_examples_load_build_and_say_they_are_not_searched(name):
    g = load_genotype(EXAMPLES / name)
    assert g.meta["searched"] is False and "NOT the result of a search" in g.meta["warning"]
    net = build_derived(g, "tiny")   # the layer/block structure works with tiny channel sizes
    assert sum(p.numel() for p in net.parameters()) > 0


def test_show_prints_paths_and_cells_and_draws_png(tmp_path, capsys):
    png = tmp_path / "g.png"
    assert main(["genotype", "show", str(EXAMPLES / "mfpsnet-seed0.json"), "--png", str(png)]) == 0
    out = capsys.readouterr().out
    assert "space fusion (fusion" in out and "path (levels)" in out and "block 2:" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_stats_of_a_derived_network_and_a_supernet(capsys):
    assert main(["genotype", "stats", str(EXAMPLES / "frsnet-seed0.json"), "--preset", "tiny", "--size", "64"]) == 0
    out = capsys.readouterr().out
    assert "derived frsnet" in out and "GFLOPs per image" in out and "architecture" not in out
    assert main(["genotype", "stats", str(EXAMPLES / "mfpsnet-seed0.json"), "--preset", "tiny", "--size", "16"]) == 0
    out = capsys.readouterr().out
    assert "derived mfpsnet" in out and "2 passes" in out and "fusion" in out
    # (the MFPSNet supernet takes ~10 s on the meta device even when tiny: covered by frsnet here)
    assert main(["genotype", "stats", "--supernet", "frsnet", "--preset", "tiny", "--size", "16"]) == 0
    out = capsys.readouterr().out
    assert "frsnet supernet" in out and "alpha/beta entries" in out


def test_stats_counts_match_the_real_model(capsys):
    main(["genotype", "stats", "--supernet", "frsnet", "--preset", "tiny", "--size", "32"])
    out = capsys.readouterr().out
    model = build_supernet("frsnet", "tiny")
    n = sum(p.numel() for p in model.weight_parameters())
    assert f"weights: {n:,} parameters" in out


def test_decode_seeded_and_from_safetensors(tmp_path):
    out = tmp_path / "g.json"
    assert main(["genotype", "decode", "--supernet", "frsnet", "--preset", "tiny", "--seed", "3", "-o", str(out)]) == 0
    assert load_genotype(out).meta["searched"] is False

    model = build_supernet("frsnet", "tiny")
    arch = {n: p.detach() for n, p in model.named_parameters() if n.endswith(("alphas", "betas"))}
    save_file(arch, str(tmp_path / "arch.safetensors"))
    out2 = tmp_path / "g2.json"
    assert main(["genotype", "decode", "--supernet", "frsnet", "--preset", "tiny",
                 "--arch", str(tmp_path / "arch.safetensors"), "-o", str(out2)]) == 0
    assert load_genotype(out2).spaces == decode(model).spaces


def test_bad_genotype_file_is_a_one_line_error(tmp_path, capsys):
    bad = json.loads((EXAMPLES / "frsnet-seed0.json").read_text())
    bad["version"] = 7
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(bad))
    assert main(["genotype", "show", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "version 7 is not supported" in err


def test_arch_file_with_wrong_shape_is_rejected(tmp_path, capsys):
    model = build_supernet("frsnet", "tiny")
    arch = {n: torch.zeros(2, 2) for n, _ in model.named_parameters() if n.endswith(("alphas", "betas"))}
    save_file(arch, str(tmp_path / "a.safetensors"))
    assert main(["genotype", "decode", "--supernet", "frsnet", "--preset", "tiny",
                 "--arch", str(tmp_path / "a.safetensors"), "-o", str(tmp_path / "g.json")]) == 2
    assert "expected" in capsys.readouterr().err

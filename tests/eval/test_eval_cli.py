"""`frsengine eval` end to end on a small synthetic folder, with the tiny packages of
tests/package_fixtures.py (identity: output = input; lift: +26/255 on red, so worse than doing nothing)."""
import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from frsengine.errors import FrsError
from frsengine.eval.tasks import TASKS

N_FACES = 6


def run_eval(*args) -> int:
    """`frsengine eval ARGS` through frsengine.cli.main once the command is registered there; until
    then the sub-command's own parser with main's error handling (one line, exit status 2)."""
    from frsengine import cli

    argv = ["eval", "--backend", "torch", *map(str, args)]  # auto would export ONNX (~10 s a package)
    if "eval" in cli.COMMANDS:
        return cli.main(argv)
    from frsengine.cli import eval as eval_cli

    parser = argparse.ArgumentParser(prog="frsengine")
    eval_cli.add_parser(parser.add_subparsers(dest="command"))
    ns = parser.parse_args(argv)
    try:
        return ns.run(ns)
    except FrsError as exc:
        print(f"frsengine eval: error: {exc}", file=sys.stderr)
        return 2


def make_faces(root: Path, n: int = N_FACES, seed: int = 0) -> Path:
    """Smooth random 128x128 'faces' (bicubic-enlarged 8x8 noise) with a little fine texture."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        small = Image.fromarray(rng.integers(0, 256, (8, 8, 3)).astype(np.uint8))
        img = np.asarray(small.resize((128, 128), Image.BICUBIC)).astype(np.float64)
        img += rng.normal(0, 4, img.shape)
        Image.fromarray(np.clip(img, 0, 255).round().astype(np.uint8)).save(root / f"face{i}.png")
    return root


@pytest.fixture(scope="module")
def faces(tmp_path_factory):
    root = make_faces(tmp_path_factory.mktemp("faces"))
    (root / "broken.png").write_text("not a png")
    return root


@pytest.fixture(scope="module")
def full_run(tmp_path_factory, faces, identity_package, lift_package):
    """Every task, both packages, no identity metric (dlib is slow; tested on its own below). Module
    scope: the function-scoped one-thread fixture is not active yet, so set it here."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("eval") / "out"
    args = ["--models", identity_package.path, lift_package.path, "--names", "identity", "lift",
            "--data", faces, "--out", out, "--seed", 3, "--no-identity", "--quiet"]
    try:
        rc = run_eval(*args)
    finally:
        torch.set_num_threads(threads)
    return rc, out, args


def test_tables_json_and_grids(full_run, capsys):
    rc, out, _ = full_run
    assert rc == 0
    record = json.loads((out / "results.json").read_text())
    assert record["seed"] == 3 and record["preset"] == "paper" and record["size"] == 128
    assert record["tasks"] == list(TASKS)
    assert record["lq_set"]["faces"] == N_FACES
    assert [s["path"].endswith("broken.png") for s in record["lq_set"]["skipped"]] == [True]
    assert {"frsengine", "torch", "numpy", "python"} <= set(record["versions"])
    labels = [m["label"] for m in record["methods"]]
    assert labels == ["LQ input", "identity", "lift"]
    for m in record["methods"][1:]:
        assert len(m["weights_sha256"]) == 64 and len(m["genotype_sha256"]) == 64 and m["network"] == "frsnet"
    names = [m["name"] for m in record["metrics"]]
    # MS-SSIM is reported at 128 px, with pytorch-msssim's 7x7 window (11x11 needs sides above 160 px)
    assert names == ["psnr", "ssim", "ms_ssim"]
    assert "ms_ssim" not in record["omitted_metrics"]
    ms = record["metrics"][2]
    assert ms["info"]["win_size"] == 7 and ms["info"]["scales"] == 5 and ms["info"]["win_sigma"] == 1.5
    assert ms["note"].startswith("MS-SSIM: 5 scales, 7x7 Gaussian window at 128 px")
    assert set(record["omitted_metrics"]) == {"identity"}
    for task in TASKS:
        for label in labels:
            for metric in names:
                cell = record["results"][task][label][metric]
                assert cell["n"] == N_FACES and np.isfinite(cell["mean"]) and np.isfinite(cell["std"])
                assert len(record["per_image"][task][label][metric]) == N_FACES

    md = (out / "results.md").read_text()
    assert "### Summary" in md and "Table 1 layout" in md and "Table 2 layout" in md
    for title in ("Face deblurring", "Face denoising", "Face artifacts removal", "Face super-resolution"):
        assert f"| {title} | LQ input" in md or f"| {title} | LQ input (= bicubic)" in md
    assert "| lift |" in md and "| identity |" in md and "bicubic" in md
    assert "MS-SSIM↑" in md and "- MS-SSIM: 5 scales, 7x7 Gaussian window at 128 px" in md

    for task in TASKS:
        grid = np.asarray(Image.open(out / f"grid-{task}.png"))
        # LQ | identity | lift | GT, 4 faces of 128 px with 2 px gaps, plus a label header
        assert grid.shape[1] == 2 + 4 * 130
        assert grid.shape[0] > 2 + 4 * 130
        # column 2 (identity) shows exactly the LQ column
        top = grid.shape[0] - 4 * 130
        lq, ident = (grid[top:top + 128, 2 + c * 130: 2 + c * 130 + 128] for c in (0, 1))
        assert np.array_equal(lq, ident)


def test_identity_scores_like_lq_input_and_worse_model_lower(full_run):
    _, out, _ = full_run
    record = json.loads((out / "results.json").read_text())
    for task in TASKS:
        per = record["per_image"][task]
        assert per["identity"] == per["LQ input"]  # exactly, image by image
        res = record["results"][task]
        for metric in ("psnr", "ssim", "ms_ssim"):
            assert res["lift"][metric]["mean"] < res["LQ input"][metric]["mean"]
    md = (out / "results.md").read_text()
    # identity ties the LQ input for the best place: both bold in the summary
    row = next(line for line in md.splitlines() if line.startswith("| identity |"))
    assert row.count("**") == 2 * len(TASKS) * len(record["metrics"])


def test_rerun_reuses_the_cached_lq_set(full_run, capsys):
    rc, out, args = full_run
    (cache,) = (out / "cache").iterdir()
    before = {p: p.stat().st_mtime_ns for p in cache.rglob("*.png")}
    first = json.loads((out / "results.json").read_text())
    assert run_eval(*args) == 0
    record = json.loads((out / "results.json").read_text())
    assert record["lq_set"]["reused"] is True and record["lq_set"]["cache"] == str(cache)
    assert {p: p.stat().st_mtime_ns for p in cache.rglob("*.png")} == before
    assert record["per_image"] == first["per_image"]
    # another seed is another set
    assert run_eval(*[a if a != 3 else 4 for a in args], "--tasks", "full") == 0
    assert len(list((out / "cache").iterdir())) == 2


def test_python_api_and_identity_distance(tmp_path, faces, identity_package, lift_package):
    pytest.importorskip("dlib")
    from frsengine.eval import evaluate
    from frsengine.eval.metrics import identity_scorer

    if identity_scorer()[0] is None:
        pytest.skip(identity_scorer()[1])
    record = evaluate([identity_package.path, lift_package.path], tmp_path / "out", faces, tasks="full,sr",
                      backend="torch",
                      limit=3, grid_faces=2, progress=False, say=lambda m: None)
    assert "identity" in [m["name"] for m in record["metrics"]]
    for task in ("full", "sr"):
        res = record["results"][task]
        assert set(res) == {"LQ input", "tiny-identity", "tiny-lift-red"}
        assert res["LQ input"]["identity"]["n"] == record["lq_set"]["faces"] == 2
        assert res["tiny-identity"]["identity"] == res["LQ input"]["identity"]
        assert res["tiny-lift-red"]["identity"]["mean"] > 0
    assert "ID dist." in (tmp_path / "out" / "results.md").read_text()
    assert np.asarray(Image.open(tmp_path / "out" / "grid-sr.png")).shape[1] == 2 + 4 * 130


def test_real_faces_niqe_and_grid(tmp_path, faces, identity_package, lift_package):
    real = make_faces(tmp_path / "real", n=3, seed=7)
    (real / "bad.jpg").write_bytes(b"\xff\xd8 truncated")
    niqe_file = tmp_path / "niqe.safetensors"
    out = tmp_path / "out"
    rc = run_eval("--models", identity_package.path, lift_package.path, "--real", real, "--niqe-fit", faces,
                  "--niqe-model", niqe_file, "--out", out, "--quiet")
    assert rc == 0 and niqe_file.is_file()
    record = json.loads((out / "results.json").read_text())
    assert "lq_set" not in record and record["real"]["faces"] == 3
    assert [s["path"].endswith("bad.jpg") for s in record["real"]["skipped"]] == [True]
    res = record["real"]["results"]
    assert res["tiny-identity"]["niqe"] == res["LQ input"]["niqe"]
    assert np.isfinite(res["tiny-lift-red"]["niqe"]["mean"])
    assert "Table 5 layout" in (out / "results.md").read_text()
    grid = np.asarray(Image.open(out / "grid-real.png"))
    assert grid.shape[1] == 2 + 3 * 130 and grid.shape[0] > 2 + 3 * 130  # input | 2 models; 3 faces
    # the saved model is loaded by a later run
    out2 = tmp_path / "out2"
    assert run_eval("--models", identity_package.path, "--real", real, "--niqe-model", niqe_file,
                    "--out", out2, "--quiet", "--grid-faces", 0) == 0
    again = json.loads((out2 / "results.json").read_text())["real"]
    assert again["results"]["LQ input"] == res["LQ input"] and not (out2 / "grid-real.png").exists()


def test_mfpsnet_without_priors_is_skipped(tmp_path, capsys, faces, identity_package):
    mfps = _mfpsnet_package(tmp_path, "tiny")
    out = tmp_path / "out"
    rc = run_eval("--models", identity_package.path, mfps, "--data", faces, "--out", out, "--tasks", "jpeg",
                  "--limit", 2, "--no-identity", "--quiet", "--grid-faces", 1)
    assert rc == 1  # tables written, a model skipped
    assert "1 model(s) not evaluated: mfps-tiny" in capsys.readouterr().err
    record = json.loads((out / "results.json").read_text())
    skipped = record["methods"][2]
    assert skipped["network"] == "mfpsnet" and "--student and --dictionary" in skipped["skipped"]
    assert set(record["results"]["jpeg"]) == {"LQ input", "tiny-identity"}
    assert "**skipped**" in (out / "results.md").read_text()


@pytest.mark.parametrize("case", ["missing", "empty", "not-a-folder", "bad-model", "missing-model", "bad-task",
                                  "nothing", "real-without-niqe", "real-missing", "niqe-model-missing",
                                  "out-inside-data", "half-priors"])
def test_errors_are_one_line(tmp_path, capsys, faces, identity_package, case):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no images here")
    bad_model = tmp_path / "bad-model"
    bad_model.mkdir()
    (bad_model / "model.json").write_text("{ not json")
    model = identity_package.path
    out = tmp_path / "out"
    args = {
        "missing": ["--models", model, "--data", tmp_path / "nope", "--out", out],
        "empty": ["--models", model, "--data", empty, "--out", out],
        "not-a-folder": ["--models", model, "--data", empty / "notes.txt", "--out", out],
        "bad-model": ["--models", bad_model, "--data", faces, "--out", out],
        "missing-model": ["--models", tmp_path / "no-such-model", "--data", faces, "--out", out],
        "bad-task": ["--models", model, "--data", faces, "--out", out, "--tasks", "full,deblur"],
        "nothing": ["--models", model, "--out", out],
        "real-without-niqe": ["--models", model, "--real", faces, "--out", out],
        "real-missing": ["--models", model, "--real", tmp_path / "nope", "--niqe-fit", faces, "--out", out],
        "niqe-model-missing": ["--models", model, "--real", faces, "--niqe-model", tmp_path / "n.st", "--out", out],
        "out-inside-data": ["--models", model, "--data", faces, "--out", faces / "eval-out"],
        "half-priors": ["--models", model, "--data", faces, "--out", out, "--student", tmp_path / "s.safetensors"],
    }[case]
    rc = run_eval(*args, "--quiet", "--no-identity")
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert len(err) == 1 and err[0].startswith("frsengine eval: error: "), err
    expected = {"missing": "does not exist", "empty": "holds no image files", "not-a-folder": "is not a folder",
                "bad-model": str(bad_model), "missing-model": "no-such-model", "bad-task": "unknown task 'deblur'",
                "nothing": "nothing to evaluate", "real-without-niqe": "NIQE model",
                "real-missing": "does not exist", "niqe-model-missing": "n.st' does not exist",
                "out-inside-data": "lies inside the --data folder",
                "half-priors": "--dictionary"}[case]
    assert expected in err[0]
    assert not (out / "cache").exists()  # refused before any LQ set was built


def _tiny_priors(tmp_path):
    """A random student and a 2-atom component dictionary: priors of the engine's default sizes
    (10 parsing classes, 68 heatmaps, 64 dictionary channels)."""
    from frsengine.priors.dictionary import DictionaryConfig, build_dictionary, save_dictionary
    from frsengine.priors.student import StudentConfig, StudentPriorNet
    from frsengine.priors.train import save_checkpoint

    torch.manual_seed(0)
    student = save_checkpoint(tmp_path / "student.safetensors", StudentPriorNet(StudentConfig(widths=(8, 8, 8, 8))),
                              None, {})
    cfg = DictionaryConfig(atoms=2, hidden=8, kmeans_iters=2)
    boxes = torch.tensor([[40.0, 50, 20], [88, 50, 20], [64, 70, 20], [64, 95, 30]]).expand(4, 4, 3).contiguous()
    dictionary = save_dictionary(tmp_path / "dict.safetensors", build_dictionary(torch.rand(4, 3, 128, 128), boxes, cfg),
                                 cfg)
    return student, dictionary


def _mfpsnet_package(tmp_path, preset):
    from frsengine.export import save_package
    from frsengine.models import build_derived
    from frsengine.nas.genotype import load_genotype

    torch.manual_seed(0)
    return save_package(build_derived(load_genotype("configs/genotypes/mfpsnet-seed0.json"), preset),
                        tmp_path / f"mfps-{preset}", preset=preset)


def test_mfpsnet_priors_that_do_not_fit_are_reported(tmp_path, faces, identity_package):
    student, dictionary = _tiny_priors(tmp_path)
    out = tmp_path / "out"
    rc = run_eval("--models", _mfpsnet_package(tmp_path, "tiny"), identity_package.path, "--student", student,
                  "--dictionary", dictionary, "--data", faces, "--out", out, "--tasks", "noise", "--limit", 2,
                  "--no-identity", "--quiet", "--grid-faces", 1)
    assert rc == 1  # tables written, a model skipped
    record = json.loads((out / "results.json").read_text())
    assert "do not fit this MFPSNet package (parsing: 10 channels" in record["methods"][1]["skipped"]
    assert set(record["results"]["noise"]) == {"LQ input", "tiny-identity"}


def test_mfpsnet_with_priors_is_evaluated(tmp_path, faces):
    student, dictionary = _tiny_priors(tmp_path)
    out = tmp_path / "out"
    rc = run_eval("--models", _mfpsnet_package(tmp_path, "small"), "--student", student, "--dictionary", dictionary,
                  "--data", faces, "--out", out, "--tasks", "full", "--limit", 2, "--no-identity", "--quiet",
                  "--grid-faces", 1)
    assert rc == 0
    record = json.loads((out / "results.json").read_text())
    assert "skipped" not in record["methods"][1] and record["methods"][1]["network"] == "mfpsnet"
    assert record["results"]["full"]["mfps-small"]["psnr"]["n"] == 1

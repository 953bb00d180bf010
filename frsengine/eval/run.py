"""`evaluate`: the whole `frsengine eval` run (LQ sets, restoration, metrics, tables, grids)."""
from __future__ import annotations

import datetime
import os
import platform
import sys
from pathlib import Path
from typing import Callable, Sequence

from frsengine.errors import FrsError
from frsengine.eval.models import BASELINES, LQ_INPUT, load_methods, make_prior_fn
from frsengine.eval.report import (
    infinite_counts, real_table, summarize, synthetic_tables, write_grid, write_json,
)
from frsengine.eval.tasks import DEFAULT_TASKS, TASKS, parse_tasks

FORMAT = "frsengine-eval"
FORMAT_VERSION = 1
RESULTS_MD, RESULTS_JSON = "results.md", "results.json"


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
        return True
    except ValueError:
        return False


def versions(identity: bool) -> dict:
    import numpy
    import torch

    from frsengine import __version__

    out = {"frsengine": __version__, "torch": torch.__version__, "numpy": numpy.__version__,
           "python": platform.python_version(), "platform": platform.platform()}
    if identity:
        try:
            import dlib

            out["dlib"] = dlib.__version__
        except ImportError:
            pass
    return out


def evaluate(models: Sequence[str | os.PathLike], out: str | os.PathLike, data: str | os.PathLike | None = None, *,
             tasks: str | Sequence[str] = DEFAULT_TASKS, seed: int = 0, preset: str = "paper",
             overrides: dict[str, object] | None = None, size: int = 128, degrade_backend: str = "torch",
             limit: int | None = None, cache_dir: str | os.PathLike | None = None,
             names: Sequence[str] | None = None, backend: str = "auto", device=None, precision: str | None = None,
             batch_size: int = 16, student=None, dictionary=None, y_channel: bool = False, identity: bool = True,
             real: str | os.PathLike | None = None, niqe_model=None, niqe_fit=None, grid_faces: int = 4,
             progress: bool = True, say: Callable[[str], None] | None = None,
             options: dict | None = None) -> dict:
    """Evaluate model packages (and the LQ-input baseline) on a seeded synthetic LQ set made from
    `data` (full-reference metrics per task) and/or on real LQ faces `real` (NIQE); write
    OUT/results.md, OUT/results.json, OUT/grid-<task>.png and OUT/grid-real.png. Returns the
    results.json record."""
    from frsengine.api import check_output_dir

    say = say or (lambda msg: print(msg, file=sys.stderr))
    if data is None and real is None:
        raise FrsError("nothing to evaluate: pass --data DIR (HQ faces) and/or --real DIR (real LQ faces)")
    if size < 16:
        raise FrsError(f"--size must be at least 16 px, got {size}")
    if grid_faces < 0:
        raise FrsError("--grid-faces must be 0 or more")
    task_list = parse_tasks(tasks) if data is not None else []
    out = Path(out)
    for folder, flag in ((data, "--data"), (real, "--real")):
        if folder is not None and Path(folder).is_dir() and (_inside(out, Path(folder))):
            raise FrsError(f"the output folder '{out}' lies inside the {flag} folder '{folder}': choose one outside it")
    # Inputs first, so that a wrong path fails before models load or any LQ set is built.
    if data is not None:
        from frsengine.eval.lqset import check_data_folder

        check_data_folder(data)
    if real is not None:
        from frsengine.eval.real import check_real_folder

        check_real_folder(Path(real))
        if niqe_model is None and niqe_fit is None and data is None:
            raise FrsError("--real needs a NIQE model: --niqe-model FILE, --niqe-fit DIR of clean HQ faces, "
                           "or --data (NIQE is then fitted on its HQ faces)")
        if niqe_fit is None and niqe_model is not None and not Path(niqe_model).is_file():
            raise FrsError(f"NIQE model '{niqe_model}' does not exist: fit one with --niqe-fit DIR "
                           "(it is saved to --niqe-model)")
    check_output_dir(out)

    prior_fn = make_prior_fn(student, dictionary)
    methods = load_methods(list(models), names=list(names) if names else None, backend=backend, device=device,
                           precision=precision, batch_size=batch_size, prior_fn=prior_fn)
    for m in methods:
        if m.skipped:
            say(f"skipped model {m.label} ({m.path}): {m.skipped}")
    record: dict = {
        "format": FORMAT, "format_version": FORMAT_VERSION,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "options": options, "seed": int(seed), "size": int(size),
        "methods": [{"label": m.label, "kind": m.kind, **m.info, **({"skipped": m.skipped} if m.skipped else {})}
                    for m in methods],
        "baselines": BASELINES, "versions": versions(identity and data is not None), "notes": [],
    }
    md_sections: list[str] = []
    lq = None
    if data is not None:
        lq = _synthetic(record, md_sections, methods, out, data, task_list, seed, preset, overrides, size,
                        degrade_backend, limit, cache_dir, y_channel, identity, grid_faces, progress, say)
    if real is not None:
        _real(record, md_sections, methods, out, real, niqe_model, niqe_fit, lq, size, grid_faces, progress, say)

    write_json(out / RESULTS_JSON, record)
    from frsengine.io import write_bytes_atomic

    write_bytes_atomic(out / RESULTS_MD, ("\n".join(_markdown(record, md_sections)) + "\n").encode())
    return record


def _synthetic(record, md_sections, methods, out, data, task_list, seed, preset, overrides, size, degrade_backend,
               limit, cache_dir, y_channel, identity, grid_faces, progress, say):
    from frsengine.degrade import get_preset
    from frsengine.eval.lqset import prepare_lq_set
    from frsengine.eval.metrics import check_size, full_reference_metrics, identity_scorer
    from frsengine.eval.synthetic import evaluate_tasks

    cache = Path(cache_dir) if cache_dir is not None else out / "cache"
    lq = prepare_lq_set(data, cache, preset=preset, overrides=overrides, seed=seed, size=size,
                        backend=degrade_backend, limit=limit, progress=progress, report=say)
    say(f"LQ set: {len(lq.names)} faces in {lq.root} ({'reused' if lq.reused else f'{lq.written} degraded now'})")
    metrics, omitted = check_size(full_reference_metrics(y_channel, size), size)
    scorer = None
    if identity:
        scorer, why = identity_scorer()
        if scorer is None:
            omitted["identity"] = why
    else:
        omitted["identity"] = "left out (--no-identity)"
    scores = evaluate_tasks(lq, task_list, methods, metrics, scorer, grid_faces, progress, say)

    metric_rows = [m.row() for m in metrics]  # MS-SSIM's with its window ("info") and a note
    if scorer is not None:
        metric_rows.append({"name": scorer.name, "label": scorer.label, "higher_is_better": scorer.higher_is_better})
    runnable = [m for m in methods if m.runnable]
    preset_obj = get_preset(preset, overrides)
    record.update({
        "data": str(data), "preset": preset_obj.name, "preset_settings": preset_obj.to_dict(),
        "overrides": {k: list(v) if isinstance(v, tuple) else v for k, v in (overrides or {}).items()},
        "degrade_backend": degrade_backend, "y_channel": bool(y_channel), "tasks": task_list,
        "task_titles": {t: TASKS[t].title for t in task_list},
        "lq_set": {"cache": str(lq.root), "key": lq.key, "faces": len(lq.names), "reused": lq.reused,
                   "skipped": [{"path": p, "reason": r} for p, r in lq.skipped],
                   "params": str(lq.params_path) if lq.params_path else None},
        "metrics": metric_rows, "omitted_metrics": omitted,
        "results": {t: {m.label: {k: summarize(v) for k, v in scores[t].scores[m.label].items()} for m in runnable}
                    for t in task_list},
        "per_image": {"names": lq.names,
                      **{t: {m.label: scores[t].scores[m.label] for m in runnable} for t in task_list}},
        "failed_faces": {t: {k: v for k, v in scores[t].failed.items() if v} for t in task_list},
        "restore_seconds": {t: {k: round(v, 3) for k, v in scores[t].seconds.items() if k != LQ_INPUT}
                            for t in task_list},
        "grids": {},
    })
    if scorer is not None:
        record["identity_fallbacks"] = {t: {"gt": scores[t].id_gt_fallbacks, **scores[t].id_fallbacks}
                                        for t in task_list}
    if grid_faces:
        for t in task_list:
            g = scores[t].grid
            labels = {"LQ": "LQ (bicubic)" if t == "sr" else "LQ input", "GT": "GT"}
            columns = {"LQ": g["LQ"], **{m.label: g[m.label] for m in runnable if m.kind == "model"}, "GT": g["GT"]}
            path = write_grid(out / f"grid-{t}.png", columns, labels)
            record["grids"][t] = path.name
    md_sections += synthetic_tables(record)
    return lq


def _real(record, md_sections, methods, out, real, niqe_model, niqe_fit, lq, size, grid_faces, progress, say):
    from frsengine.eval.real import evaluate_real, niqe_model_for

    model, niqe_info = niqe_model_for(niqe_model, niqe_fit, lq.root / "hq" if lq is not None else None,
                                      out, size, say)
    res = evaluate_real(real, methods, model, size, grid_faces, progress, say)
    runnable = [m for m in methods if m.runnable]
    record["real"] = {
        "data": str(real), "faces": len(res["names"]),
        "skipped": [{"path": p, "reason": r} for p, r in res["skipped"]],
        "metrics": [{"name": "niqe", "label": "NIQE", "higher_is_better": False}],
        "niqe_model": niqe_info,
        "results": {m.label: {"niqe": summarize(res["scores"][m.label])} for m in runnable},
        "per_image": {"names": res["names"], **{m.label: {"niqe": res["scores"][m.label]} for m in runnable}},
        "failed_faces": {k: v for k, v in res["failed"].items() if v},
    }
    if grid_faces:
        columns = {m.label: res["grid"][m.label] for m in runnable}
        record["real"]["grid"] = write_grid(out / "grid-real.png", columns).name
    md_sections += real_table(record["real"])


def _markdown(record: dict, sections: list[str]) -> list[str]:
    lines = ["# frsengine eval", ""]
    if "lq_set" in record:
        s = record["lq_set"]
        lines.append(f"Synthetic set: `{record['data']}`, {s['faces']} faces ({len(s['skipped'])} skipped), "
                     f"{record['size']}x{record['size']}, preset `{record['preset']}`"
                     + (f" with {record['overrides']}" if record["overrides"] else "")
                     + f", seed {record['seed']}, degradation backend `{record['degrade_backend']}`; "
                     f"LQ set `{s['cache']}`.")
    if "real" in record:
        r = record["real"]
        lines.append(f"Real LQ faces: `{r['data']}`, {r['faces']} faces ({len(r['skipped'])} skipped), "
                     f"centre-cropped to {record['size']}x{record['size']}.")
    lines += ["", "Methods:", ""]
    for m in record["methods"]:
        if m["kind"] == "baseline":
            lines.append(f"- **{m['label']}**: {m['what']}.")
        else:
            desc = (f"`{m['path']}` ({m['network']}, {m['preset']} preset, weights {m['weights_sha256'][:12]}, "
                    f"trained on: {m['training_data']})")
            lines.append(f"- **{m['label']}**: {desc}" + (f" — **skipped**: {m['skipped']}" if m.get("skipped") else ""))
    lines.append("")
    lines += sections
    notes = ["Best in **bold**, second best <u>underlined</u> (ties share a place); ↑ higher is better, "
             "↓ lower is better. Model outputs are rounded to 8 bits before scoring, as saved images are."]
    if "lq_set" in record:
        notes.append("bicubic: " + BASELINES["bicubic"] + ".")
        notes += [m["note"] for m in record["metrics"] if m.get("note")]
        for name, why in record["omitted_metrics"].items():
            notes.append(f"{name} not reported: {why}")
        if record.get("identity_fallbacks"):
            fb = {t: v for t, v in record["identity_fallbacks"].items() if any(v.values())}
            if fb:
                notes.append("ID dist.: dlib's Euclidean distance of 128-d face descriptors (same person below 0.6); "
                             "where dlib found no face the whole crop was described instead — counts of such "
                             f"faces per task: {fb}")
        inf = infinite_counts(record["results"])
        if inf:
            notes.append("faces whose output equals the ground truth exactly (PSNR +inf), left out of the "
                         f"means and counts: {inf}")
        failed = {t: v for t, v in record["failed_faces"].items() if v}
        if failed:
            notes.append(f"faces a model returned NaN/inf for (scored unchanged): {failed}")
        if record["grids"]:
            notes.append("Grids (LQ | each model | GT): " + ", ".join(f"`{g}`" for g in record["grids"].values()))
    if "real" in record:
        n = record["real"]["niqe_model"]
        notes.append(f"NIQE model: `{n['file']}` (fitted on {n['fitted_on']}, {n['n_images']} images, "
                     f"{n['n_patches']} patches of {n['patch_size']} px); NaN scores (no usable patch) are left out.")
        if record["real"].get("grid"):
            notes.append(f"Real-face grid (input | each model): `{record['real']['grid']}`")
    lines += ["Notes:", ""] + [f"- {n}" for n in notes]
    return lines

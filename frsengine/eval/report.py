"""Summaries, the markdown tables (laid out like the paper's Tables 1, 2 and 5), results.json
and the comparison grids (Fig. 6 / Fig. 8 layout)."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from frsengine.eval.tasks import TASKS

DIGITS = {"psnr": 2, "ssim": 4, "ms_ssim": 4, "identity": 4, "niqe": 3}


def summarize(values: list[float]) -> dict:
    """{"mean", "std", "n"} over the finite values. PSNR of a restored face identical to its
    ground truth is +inf: such faces are counted ("inf": k) and left out of the mean, which
    one of them would otherwise make infinite; NaN (not scored) is left out too."""
    a = np.asarray(values, np.float64)
    finite = a[np.isfinite(a)]
    out: dict = {"n": int(finite.size)}
    if finite.size:
        out.update(mean=float(finite.mean()), std=float(finite.std()))
    else:
        out.update(mean=math.nan, std=math.nan)
    n_inf = int(np.isposinf(a).sum())
    if n_inf:
        out["inf"] = n_inf
    return out


def infinite_counts(results: dict) -> dict[str, dict[str, dict[str, int]]]:
    """{task: {method: {metric: k}}} of the +inf values summarize() left out."""
    out: dict = {}
    for task, rows in results.items():
        for method, cells in rows.items():
            for metric, cell in cells.items():
                if cell.get("inf"):
                    out.setdefault(task, {}).setdefault(method, {})[metric] = cell["inf"]
    return out


def json_safe(x):
    """Non-finite floats as the strings "inf", "-inf", "nan" (JSON has no such numbers)."""
    if isinstance(x, float) and not math.isfinite(x):
        return "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf")
    if isinstance(x, dict):
        return {k: json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [json_safe(v) for v in x]
    return x


def write_json(path: Path, record: dict) -> Path:
    from frsengine.io import write_bytes_atomic

    return write_bytes_atomic(path, (json.dumps(json_safe(record), indent=1, allow_nan=False) + "\n").encode())


def fmt(value, metric: str, std=None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float) and math.isinf(value):
        return "inf"
    d = DIGITS.get(metric, 4)
    text = f"{value:.{d}f}"
    if std is not None and isinstance(std, float) and math.isfinite(std):
        text += f" ± {std:.{d}f}"
    return text


def rank_marks(values: list[float | None], higher_is_better: bool) -> list[str]:
    """"best" / "second" / "" per value (ties share a place), as the paper's bold and underline."""
    finite = sorted({v for v in values if v is not None and not math.isnan(v)}, reverse=higher_is_better)
    best = finite[0] if finite else None
    second = finite[1] if len(finite) > 1 else None
    return ["best" if v is not None and v == best else "second" if v is not None and v == second else ""
            for v in values]


def mark(text: str, how: str) -> str:
    return f"**{text}**" if how == "best" else f"<u>{text}</u>" if how == "second" else text


def _arrow(higher: bool) -> str:
    return "↑" if higher else "↓"


def synthetic_tables(record: dict) -> list[str]:
    """Markdown lines: a summary (rows = methods, column groups = tasks), then Table 1's layout
    for the full task and Table 2's for the single degradations (mean ± std)."""
    tasks = record["tasks"]
    metrics = record["metrics"]
    rows = [m["label"] for m in record["methods"] if not m.get("skipped")]
    res = record["results"]
    n = record["lq_set"]["faces"]
    lines = [f"### Summary (means over {n} faces; rows = methods, column groups = tasks)", ""]
    cols = [(t, m) for t in tasks for m in metrics]
    lines.append("| Methods | " + " | ".join(f"{t}<br>{m['label']}{_arrow(m['higher_is_better'])}" for t, m in cols) + " |")
    lines.append("|---|" + "---:|" * len(cols))
    cells = {r: [] for r in rows}
    for t, m in cols:
        vals = [res[t][r][m["name"]]["mean"] for r in rows]
        marks = rank_marks([v if isinstance(v, float) else None for v in vals], m["higher_is_better"])
        for r, v, how in zip(rows, vals, marks):
            cells[r].append(mark(fmt(v, m["name"]), how))
    for r in rows:
        lines.append(f"| {_row_label(r)} | " + " | ".join(cells[r]) + " |")
    lines.append("")

    def task_table(task_list: list[str], with_task: bool) -> list[str]:
        head = ("| Task " if with_task else "") + "| Methods | " + " | ".join(
            f"{m['label']}{_arrow(m['higher_is_better'])}" for m in metrics) + " |"
        out = [head, ("|---" if with_task else "") + "|---|" + "---:|" * len(metrics)]
        for t in task_list:
            marks = {m["name"]: rank_marks([_num(res[t][r][m["name"]]["mean"]) for r in rows], m["higher_is_better"])
                     for m in metrics}
            for i, r in enumerate(rows):
                label = _row_label(r, t)
                cells = [mark(fmt(res[t][r][m["name"]]["mean"], m["name"], res[t][r][m["name"]]["std"]),
                              marks[m["name"]][i]) + _n_note(res[t][r][m["name"]]["n"], n) for m in metrics]
                task = TASKS[t].title if (with_task and i == 0) else ""
                out.append(("| " + task + " " if with_task else "") + f"| {label} | " + " | ".join(cells) + " |")
        return out

    if "full" in tasks:
        lines += [f"### {TASKS['full'].title} (full degradation; Table 1 layout, mean ± std)", ""]
        lines += task_table(["full"], False) + [""]
    singles = [t for t in tasks if t != "full"]
    if singles:
        lines += ["### Restoration sub-tasks (single degradations; Table 2 layout, mean ± std)", ""]
        lines += task_table(singles, True) + [""]
    return lines


def real_table(real: dict) -> list[str]:
    """Table 5's layout: methods as columns, one row per no-reference metric."""
    rows = [m for m in real["results"]]
    n = real["faces"]
    lines = [f"### Real LQ faces (no reference; Table 5 layout, mean ± std over {n} faces)", "",
             "| | " + " | ".join(rows) + " |", "|---|" + "---:|" * len(rows)]
    for metric in real["metrics"]:
        name = metric["name"]
        vals = [_num(real["results"][r][name]["mean"]) for r in rows]
        marks = rank_marks(vals, metric["higher_is_better"])
        cells = [mark(fmt(real["results"][r][name]["mean"], name, real["results"][r][name]["std"]), how)
                 + _n_note(real["results"][r][name]["n"], n) for r, how in zip(rows, marks)]
        lines.append(f"| {metric['label']}{_arrow(metric['higher_is_better'])} | " + " | ".join(cells) + " |")
    return lines + [""]


def _num(v):
    return v if isinstance(v, float) and not math.isnan(v) else None


def _n_note(k: int, n: int) -> str:
    return "" if k == n else f" (n={k})"


def _row_label(label: str, task: str | None = None) -> str:
    from frsengine.eval.models import LQ_INPUT

    if label == LQ_INPUT and task == "sr":
        return "LQ input (= bicubic)"
    return label


def grid_label(text: str, width: int) -> str:
    """`text` cut (with '..') to fit `width` pixels in the grid's font."""
    from PIL import ImageFont

    font = ImageFont.load_default()
    if font.getlength(text) <= width - 4:
        return text
    while text and font.getlength(text + "..") > width - 4:
        text = text[:-1]
    return text + ".."


def write_grid(path: Path, columns: dict[str, list[np.ndarray]], labels: dict[str, str] | None = None) -> Path:
    """Rows = faces, columns = the entries of `columns` in order, labelled."""
    from frsengine.io import save_grid

    keys = list(columns)
    n = min(len(v) for v in columns.values())
    width = next(iter(columns.values()))[0].shape[1]
    rows = [[columns[k][i] for k in keys] for i in range(n)]
    return save_grid(path, rows, [grid_label((labels or {}).get(k, k), width) for k in keys])

"""The evaluation tasks: which folder of an evaluation set (frsengine.data.evalset) holds each
task's LQ faces, and how the paper names the task (Tables 1-4)."""
from __future__ import annotations

from typing import NamedTuple

from frsengine.errors import FrsError


class Task(NamedTuple):
    name: str    # as given to --tasks
    folder: str  # sub-folder of the evaluation set
    title: str   # the paper's name of the task


TASKS: dict[str, Task] = {t.name: t for t in (
    Task("full", "full", "Blind face restoration"),
    Task("blur", "blur", "Face deblurring"),
    Task("noise", "noise", "Face denoising"),
    Task("jpeg", "jpeg", "Face artifacts removal"),
    Task("sr", "downup", "Face super-resolution"),
)}
DEFAULT_TASKS = tuple(TASKS)


def parse_tasks(text: str | list[str] | tuple[str, ...]) -> list[str]:
    """'full,blur' (or a list) -> ['full', 'blur'] in the given order, duplicates dropped."""
    items = text.split(",") if isinstance(text, str) else list(text)
    names = []
    for item in (i.strip().lower() for i in items):
        if not item:
            continue
        if item not in TASKS:
            raise FrsError(f"unknown task '{item}': choose from {', '.join(TASKS)}")
        if item not in names:
            names.append(item)
    if not names:
        raise FrsError(f"no task given: choose from {', '.join(TASKS)}")
    return names

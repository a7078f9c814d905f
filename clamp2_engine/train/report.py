"""What a run tells people: JSON-lines metrics in RUN_DIR and a Rich progress display (main process only)."""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from clamp2_engine.runlog import console
from clamp2_engine.train.config import jsonable


class MetricsLog:
    """Appends one JSON object per event to ``metrics.jsonl`` (a resumed run appends to the same file)."""

    def __init__(self, path: str | os.PathLike, enabled: bool = True):
        self.path = Path(path)
        self.enabled = enabled

    def write(self, event: str, **fields: Any) -> None:
        if not self.enabled:
            return
        record = {"event": event, "time": round(time.time(), 3), **jsonable(fields)}
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")


def fmt(value: float | None, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return f"{value:.{digits}g}"


class Display:
    """A Rich progress bar over optimizer steps with loss, learning rate and samples/s; eval lines above it."""

    def __init__(self, title: str, total: int, done: int, enabled: bool):
        self.enabled = enabled
        self.progress: Progress | None = None
        if enabled:
            self.progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("loss {task.fields[loss]}  lr {task.fields[lr]}  {task.fields[speed]} samples/s"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=console,
                transient=False,
            )
            self.task = self.progress.add_task(
                title, total=total, completed=done, loss="-", lr="-", speed="-"
            )

    def __enter__(self) -> Display:
        if self.progress is not None:
            self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()

    def update(
        self, step: int, loss: float | None = None, lr: float | None = None, speed: float | None = None
    ) -> None:
        if self.progress is None:
            return
        fields = {}
        if loss is not None:
            fields.update(loss=fmt(loss), lr=fmt(lr, 3), speed=fmt(speed, 4))
        self.progress.update(self.task, completed=step, **fields)

    def note(self, text: str) -> None:
        if self.enabled:
            (self.progress.console if self.progress is not None else console).print(text)

"""Finished fan-out task results on disk, one JSON file per task key (resumable sweeps)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cortex_resnet.core.jsonable import to_jsonable
from cortex_resnet.io.results import atomic_write_text

if TYPE_CHECKING:
    from cortex_resnet.fanout.tasks import Task

__all__ = ["TaskCache"]


class TaskCache:
    """Finished task results as JSON files named by the task key."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)

    def path(self, task: Task) -> Path:
        return self.directory / f"{task.key}.json"

    def get(self, task: Task) -> dict[str, Any] | None:
        """The stored result, or None (missing, unreadable, or stored for other inputs)."""
        p = self.path(task)
        if not p.is_file():
            return None
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if data.get("key") != task.key or not isinstance(data.get("result"), dict):
            return None
        return data["result"]

    def put(self, task: Task, result: dict[str, Any]) -> None:
        payload = {"key": task.key, "label": task.label, "inputs": task.inputs, "result": result,
                   "finished": time.time()}
        atomic_write_text(self.path(task), json.dumps(to_jsonable(payload, keep_nan=True), sort_keys=True, default=str))

    def __repr__(self) -> str:
        """One line: the folder and how many results it holds."""
        n = sum(1 for _ in self.directory.glob("*.json")) if self.directory.is_dir() else 0
        return f"TaskCache({str(self.directory)[-60:]!r}, {n} results)"

"""What a training run leaves behind: ``metrics.csv`` and the final ``report.json`` / ``report.md``.

``metrics.csv`` has one row per completed epoch: learning rate, train and test
loss and accuracy, the test accuracy of the readout at every step
(``test_accuracy_step_1 .. K``: the anytime readout), the epoch's wall time
(s) and training throughput (examples/s). The report puts our test accuracy
beside the published baselines of the same dataset, with parameter counts.
All files are written atomically.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from cortex_resnet.training.baselines import published_for
from cortex_resnet.io.results import atomic_write_text, library_versions

__all__ = ["write_metrics", "read_metrics", "write_report", "summary_keys", "runs_table"]

summary_keys = ("out", "dataset", "variant", "params", "test_accuracy", "accuracy_per_step",
                "epochs", "device", "examples_per_s")


def write_metrics(path: Path, history: list[dict[str, Any]]) -> None:
    """Rewrite ``metrics.csv`` from the whole history (atomic; a resumed run rewrites it too)."""
    if not history:
        return
    fields = list(history[0])
    for row in history[1:]:
        fields += [k for k in row if k not in fields]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    w.writeheader()
    for row in history:
        w.writerow({k: (f"{v:.9g}" if isinstance(v, float) else v) for k, v in row.items()})
    atomic_write_text(path, buf.getvalue())


def read_metrics(path: Path) -> list[dict[str, float]]:
    """Read ``metrics.csv`` back as a list of rows of floats."""
    with open(path, newline="") as fh:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(fh)]


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.1f} %"


def write_report(out: Path, report: dict[str, Any]) -> None:
    """Write ``report.json`` and ``report.md`` (ours beside the published numbers)."""
    report = {**report, "published": [
        {"model": p.model, "baseline": p.baseline, "params": p.params,
         "test_accuracy": p.test_accuracy, "source": p.source}
        for p in published_for(report["dataset"])], "versions": library_versions()}
    atomic_write_text(out / "report.json", json.dumps(report, indent=2, default=str) + "\n")
    lines = [f"# {report['experiment']}: {report['model']} on {report['dataset']}", ""]
    if report.get("status") != "completed":
        lines += [f"**Status: {report.get('status')}** — {report.get('message', '')}", ""]
    lines += [f"Test accuracy **{_pct(report['test_accuracy'])}** after {report['epochs']} epochs "
              f"({report['params']:,} parameters; chance {_pct(report.get('chance'))}); "
              f"device {report['device']} x {report.get('world_size', 1)}, "
              f"{report['examples_per_s']:.0f} training examples/s.", "",
              "| model | parameters | test accuracy | source |", "|---|---:|---:|---|",
              f"| **{report['model']} (this run)** | {report['params']:,} | "
              f"**{_pct(report['test_accuracy'])}** | this run, seed {report.get('seed')} |"]
    for p in report["published"]:
        lines.append(f"| {p['model']} (published) | — | {_pct(p['test_accuracy'])} | {p['source']} |")
    steps = report.get("accuracy_per_step") or []
    if len(steps) > 1:
        lines += ["", "Anytime readout — test accuracy at each step:", "",
                  "| step | " + " | ".join(str(k + 1) for k in range(len(steps))) + " |",
                  "|---" * (len(steps) + 1) + "|",
                  "| accuracy | " + " | ".join(f"{100 * a:.1f}" for a in steps) + " |"]
    lines += ["", "Files: `config.toml` (the experiment, circuit inline), `metrics.csv` (per epoch), "
              "`checkpoint.pt` (last completed epoch), `model.pt` (final weights).", ""]
    atomic_write_text(out / "report.md", "\n".join(lines))


def runs_table(run_dirs: list[Path]) -> str:
    """A Markdown table of several runs (from their ``report.json``) beside the published numbers."""
    rows, datasets = [], []
    for d in run_dirs:
        rep = json.loads((Path(d) / "report.json").read_text())
        rows.append(f"| {rep['model']} | {rep['dataset']} | {rep['params']:,} | "
                    f"{_pct(rep['test_accuracy'])} | this work ({Path(d).name}, {rep['epochs']} "
                    f"epochs, seed {rep.get('seed')}) |")
        if rep["dataset"] not in datasets:
            datasets.append(rep["dataset"])
    for ds in datasets:
        for p in published_for(ds):
            rows.append(f"| {p.model} | {ds} | — | {_pct(p.test_accuracy)} | {p.source} |")
    head = ["| model | dataset | parameters | test accuracy | source |", "|---|---|---:|---:|---|"]
    return "\n".join(head + rows) + "\n"

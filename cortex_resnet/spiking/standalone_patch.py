"""Edits of Brian2's generated C++ standalone project before it is compiled (our cached builds only).

1. :func:`keep_only_results`: Brian2's ``_write_arrays()`` (called at the end of every run) writes
   *every* array of the network to the results folder -- for a large network mostly the synapse
   tables (pre/post indices, synapse numbers, weights, delays: ~20 bytes per synapse, 0.3 GB for
   Brunel's model A), which our runs never read (the inputs are run arguments, the outputs are
   the monitors). Only the files the manifest reads are kept.
2. :func:`threads_from_environment`: with OpenMP, the compiled ``omp_set_num_threads(N)`` reads
   ``$CORTEX_RESNET_THREADS`` instead (default ``N``), so one build runs on any number of threads.
"""

from __future__ import annotations

import re
from pathlib import Path

__all__ = ["THREADS_ENV", "keep_only_results", "threads_from_environment"]

THREADS_ENV = "CORTEX_RESNET_THREADS"
_BLOCK = re.compile(r"\n[ \t]*ofstream outfile_(\w+);\n.*?(?=\n[ \t]*ofstream outfile_|\n[ \t]*// Write|\n[ \t]*\Z)", re.S)
_FILE = re.compile(r'results_dir \+ "([^"]+)"')


def keep_only_results(folder: Path, keep: set[str]) -> int:
    """Drop from ``objects.cpp``'s ``_write_arrays`` every array file not in ``keep`` (file names);
    returns how many were dropped. Raises RuntimeError when the generated code has another shape
    (a Brian2 version this edit does not know: better to fail the build than to lose results)."""
    path = Path(folder) / "objects.cpp"
    src = path.read_text()
    start = src.find("void _write_arrays()")
    end = src.find("// Write last run info to disk", start)
    if start < 0 or end < 0:
        raise RuntimeError("unexpected Brian2 objects.cpp: no _write_arrays() ending in 'Write last run info'")
    body = src[start:end]
    dropped = 0
    found: set[str] = set()

    def edit(m: re.Match) -> str:
        nonlocal dropped
        names = _FILE.findall(m.group(0))
        if len(names) != 1:
            raise RuntimeError(f"unexpected Brian2 objects.cpp: block for {m.group(1)} writes {names}")
        if names[0] in keep:
            found.add(names[0])
            return m.group(0)
        dropped += 1
        return ""

    new_body = _BLOCK.sub(edit, body)
    if found != set(keep):
        raise RuntimeError(f"unexpected Brian2 objects.cpp: result files {sorted(set(keep) - found)} not written")
    path.write_text(src[:start] + new_body + src[end:])
    return dropped


def threads_from_environment(folder: Path) -> bool:
    """Make the compiled thread count overridable by ``$CORTEX_RESNET_THREADS``; False without OpenMP."""
    path = Path(folder) / "main.cpp"
    src = path.read_text()
    new, n = re.subn(r"omp_set_num_threads\((\d+)\);",
                     r'{ const char* _cr_t = std::getenv("%s"); '
                     r"omp_set_num_threads(_cr_t && std::atoi(_cr_t) > 0 ? std::atoi(_cr_t) : \1); }" % THREADS_ENV,
                     src)
    if n:
        path.write_text(new)
    return bool(n)

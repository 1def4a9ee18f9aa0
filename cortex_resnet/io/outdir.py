"""Where results go, and the rule that protects everything else.

No command deletes or overwrites a file it did not write:

* **Output folders** (``demo``, ``train``, ``hypothesis run``, ``sweep``,
  ``figures``, ``compare --out``) get a manifest, :data:`MANIFEST`, listing the
  command and every file it wrote there. A new or empty folder is used; a
  folder whose manifest names the same command is reused (only the files the
  manifest lists are replaced); any other non-empty folder is refused (exit 2)
  unless ``--force``, which writes *beside* the foreign files and still never
  replaces or deletes one of them.
* **Single output files** (``simulate --out/--plot/--spikes-out``, ``unroll --out``,
  ``bench --out``, ``train-report --out``, ``export --out``): an existing file is
  replaced only when cortex-resnet wrote it (a netCDF result, NIR graph, neo spike
  file, JSON or figure carrying our signature, see :func:`written_by_us`); any other
  existing file needs ``--force``.

Every writer goes through :func:`cortex_resnet.io.results.atomic_path`, which asks
:func:`guard_write` before writing and :func:`record_write` after: a path that
was foreign when the folder was claimed is never replaced, and every file
written under a claimed folder is added to its manifest as it is written (so a
killed run still leaves a manifest naming its partial files).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import pickletools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

from cortex_resnet.errors import SpecError

__all__ = ["MANIFEST", "SIGNATURE", "OutputFolder", "claim_folder", "check_out_file", "written_by_us",
           "guard_write", "record_write", "file_mode", "remove_written"]

MANIFEST = ".cortex-resnet-manifest.json"
SIGNATURE = "cortex-resnet"  # in JSON ("written_by"), figure metadata and netCDF attributes
_FORMAT = 1
_ACTIVE: list["OutputFolder"] = []


def file_mode() -> int:
    """Permission bits of a new file under the current umask (0o644 under umask 022)."""
    mask = None
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                mask = int(line.split()[1], 8)
    if mask is None:  # not Linux: read it by setting it (and restoring it at once)
        mask = os.umask(0o022)
        os.umask(mask)
    return 0o666 & ~mask


def _files(root: Path, skip: Iterable[str] = ()) -> set[str]:
    """Relative POSIX paths of the files below ``root`` (not the manifest, not ``skip`` dirs)."""
    skip = set(skip)
    found: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = Path(dirpath).relative_to(root)
        dirnames[:] = [d for d in dirnames if (rel_dir / d).as_posix() not in skip]
        for f in filenames:
            rel = (rel_dir / f).as_posix()
            if rel != MANIFEST:
                found.add(rel)
    return found


def _read_manifest(folder: Path) -> dict | None:
    path = folder / MANIFEST
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("files"), list):
        return None
    return data


def _writable_ancestor(path: Path, option: str) -> None:
    """The nearest existing ancestor of ``path`` must be a folder we may write into."""
    probe = path.absolute()
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise SpecError(option, str(path), f"a path below a folder ({probe} is a file)")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise SpecError(option, str(path), f"a path in a folder you may write to ({probe} is not writable)")


@dataclass
class OutputFolder:
    """A folder claimed by one command (see the module docstring)."""

    path: Path
    command: str
    foreign: set[str] = field(default_factory=set)
    owned: set[str] = field(default_factory=set)
    owned_dirs: tuple[str, ...] = ()
    commands: list[str] = field(default_factory=list)

    def holds(self, target: Path) -> str | None:
        """``target`` relative to this folder (POSIX), or None when it lies outside."""
        try:
            return target.absolute().relative_to(self.path.absolute()).as_posix()
        except ValueError:
            return None

    def remove_own(self, sub: str) -> None:
        """Delete the files below ``sub`` that this command wrote (never others), then empty dirs."""
        prefix = sub.rstrip("/") + "/"
        mine = {r for r in self.owned if r.startswith(prefix) or r == sub}
        if any(prefix.startswith(d.rstrip("/") + "/") for d in self.owned_dirs) and (self.path / sub).is_dir():
            mine |= {f"{prefix}{r}" for r in _files(self.path / sub)} - self.foreign
        for rel in sorted(mine):
            with contextlib.suppress(FileNotFoundError):
                (self.path / rel).unlink()
            self.owned.discard(rel)
        root = self.path / sub
        if root.is_dir():
            for dirpath, _, _ in sorted(os.walk(root), key=lambda t: -len(t[0])):
                with contextlib.suppress(OSError):
                    os.rmdir(dirpath)  # only succeeds when empty
        self.save()

    def __repr__(self) -> str:
        """One line: the folder, the command and how many files are its own / foreign."""
        return (f"OutputFolder({str(self.path)[-60:]!r}, {self.command}: {len(self.owned)} own files, "
                f"{len(self.foreign)} foreign)")

    def save(self) -> None:
        if not self.path.is_dir():
            return
        data = {"written_by": SIGNATURE, "format": _FORMAT, "commands": self.commands,
                "owned_dirs": list(self.owned_dirs), "files": sorted(self.owned)}
        tmp = self.path / f".{MANIFEST}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
        os.chmod(tmp, file_mode())
        os.replace(tmp, self.path / MANIFEST)


def _refusal(folder: Path, command: str, option: str, others: list[str], force_ok: bool,
             by: list[str] | None) -> SpecError:
    shown = ", ".join(others[:5]) + (f" and {len(others) - 5} more" if len(others) > 5 else "")
    who = (f"written by `cortex-resnet {' / '.join(by)}`" if by else "not written by cortex-resnet")
    fix = "choose a new or empty folder"
    if force_ok:
        fix += ", or add --force to write beside them (nothing there is replaced or deleted)"
    return SpecError(option, str(folder), f"a new or empty folder, or one `cortex-resnet {command}` "
                     f"wrote before; it holds files {who} ({shown}); {fix}")


def _plan(folder: Path, command: str, *, option: str, force: bool, accept: tuple[str, ...],
          adopt: bool, owned_dirs: tuple[str, ...], force_ok: bool) -> OutputFolder:
    if folder.exists() and not folder.is_dir():
        raise SpecError(option, str(folder), "a folder (it is an existing file)")
    _writable_ancestor(folder, option)
    claim = OutputFolder(folder, command, owned_dirs=owned_dirs, commands=[command])
    if not folder.exists():
        return claim
    manifest = _read_manifest(folder)
    ours_by = list(manifest.get("commands", [])) if manifest else []
    same = bool(manifest) and any(c in ours_by for c in (command, *accept))
    skip = set(owned_dirs) | set(manifest.get("owned_dirs", []) if same and manifest else [])
    present = _files(folder, skip if same or adopt else ())
    if same and manifest:
        claim.owned = {f for f in manifest["files"] if isinstance(f, str)} & present
        claim.owned_dirs = tuple(sorted(skip))
        claim.commands = ours_by + ([command] if command not in ours_by else [])
    elif adopt and not manifest:
        claim.owned = present
        claim.owned_dirs = tuple(sorted(skip))
    claim.foreign = present - claim.owned
    # a sub-folder is owned wholesale only while it holds nothing foreign
    claim.owned_dirs = tuple(d for d in claim.owned_dirs
                             if not any(f.startswith(d.rstrip("/") + "/") for f in claim.foreign))
    ours = same or (adopt and not manifest)
    if claim.foreign and not ours and not force:
        raise _refusal(folder, command, option, sorted(claim.foreign), force_ok, ours_by or None)
    return claim


@contextlib.contextmanager
def claim_folder(folder: str | Path, command: str, *, option: str = "--out", force: bool = False,
                 accept: tuple[str, ...] = (), adopt: bool = False, owned_dirs: tuple[str, ...] = (),
                 expected: Iterable[str] = (), force_ok: bool = True) -> Iterator[OutputFolder]:
    """Check ``folder`` for ``command`` (writes nothing), then track what is written in it.

    Parameters
    ----------
    folder : the output folder (created by the command's writers, not here)
    command : the command's name, stored in the manifest (``"demo"``, ``"train"``)
    option : the option named in errors
    force : write beside foreign files (never replacing one)
    accept : other commands whose folders this command may add files to (``compare`` into
        a ``train`` run folder)
    adopt : treat an existing folder without manifest as ours (``train --resume`` of a run
        written before manifests existed)
    owned_dirs : sub-folders owned wholesale (a task cache)
    expected : relative paths the command will write; a foreign file there is refused now,
        before any work
    force_ok : whether the refusal message may suggest ``--force``

    Raises
    ------
    SpecError
        The folder is a file, not writable, or holds foreign files (without ``force``), or
        a foreign file sits where the command will write.
    """
    claim = _plan(Path(folder), command, option=option, force=force, accept=accept, adopt=adopt,
                  owned_dirs=owned_dirs, force_ok=force_ok)
    clash = sorted(e for e in expected if any(f == e or f.startswith(e.rstrip("/") + "/")
                                              for f in claim.foreign))
    if clash:
        raise SpecError(option, str(folder), f"a folder without files of others where {command} writes "
                        f"({', '.join(clash)} exist and were not written by it); choose another folder")
    _ACTIVE.append(claim)
    try:
        yield claim
    finally:
        _ACTIVE.remove(claim)
        if claim.path.is_dir():
            claim.owned |= _files(claim.path, claim.owned_dirs) - claim.foreign
            if claim.owned or (claim.path / MANIFEST).exists():  # nothing written: nothing added
                claim.save()


def guard_write(target: Path) -> None:
    """Refuse to replace a file that was foreign when its folder was claimed."""
    for claim in _ACTIVE:
        rel = claim.holds(target)
        if rel is not None and rel in claim.foreign:
            raise SpecError("--out", str(target), f"a path that does not replace a file cortex-resnet "
                            f"did not write ({claim.command} keeps it; choose another folder)")


def record_write(target: Path) -> None:
    """Add a file just written to the manifest of the claimed folder holding it."""
    for claim in _ACTIVE:
        rel = claim.holds(target)
        if rel is None or rel in claim.owned or rel == MANIFEST:
            continue
        if any(rel.startswith(d.rstrip("/") + "/") for d in claim.owned_dirs):
            continue
        claim.owned.add(rel)
        claim.save()


# ------------------------------------------------------------------ single files
def _h5_attrs(obj: Any) -> dict[str, str]:
    return {k: (v.decode() if isinstance(v, bytes) else str(v)) for k, v in obj.attrs.items()}


def _h5_text(obj: Any) -> str:
    """A scalar or 1-element HDF5 string dataset as text."""
    v = obj[()]
    v = v.reshape(-1)[0] if getattr(v, "shape", ()) else v
    return v.decode() if isinstance(v, bytes) else str(v)


def _signed_netcdf(f: Any) -> bool:
    attrs = _h5_attrs(f)
    return attrs.get("title", "").startswith("cortex_resnet") or SIGNATURE in attrs.get("versions", "")


def _signed_nir(f: Any) -> bool:
    """A NIR graph (``nir.write``) whose metadata ``written_by`` is ours."""
    return "node/metadata/written_by" in f and _h5_text(f["node/metadata/written_by"]).startswith(SIGNATURE)


def _signed_nix(f: Any) -> bool:
    """A NIX file (neo's NixIO) whose every neo block is annotated ``written_by`` us."""
    blocks = [g for g in f.get("data", {}).values() if _h5_attrs(g).get("type") == "neo.block"]
    key = "metadata/properties/written_by"
    return bool(blocks) and all(key in g and _h5_text(g[key]).startswith(SIGNATURE) for g in blocks)


def _signed_hdf5(path: Path) -> bool:
    import h5py  # deferred: only the signature of an HDF5 file (.nc, .nir, .nix) needs it

    check = {".nc": _signed_netcdf, ".nir": _signed_nir, ".nix": _signed_nix}[path.suffix.lower()]
    with h5py.File(path, "r") as f:
        return check(f)


def _signed_pickle(path: Path) -> bool:
    """A pickle (neo's PickleIO) naming us among its first strings. Decoded with ``pickletools``,
    which reads opcodes and never runs the pickle's code (loading a foreign pickle could)."""
    with open(path, "rb") as fh:
        head = fh.read(1 << 16)
    if not head.startswith(b"\x80"):
        return False
    with contextlib.suppress(ValueError, EOFError):  # a head cut inside an opcode ends the scan
        for k, (_, arg, _) in enumerate(pickletools.genops(io.BytesIO(head))):
            if isinstance(arg, str) and arg.startswith(f"{SIGNATURE} ("):
                return True
            if k > 2000:
                break
    return False


def _signed_json(path: Path) -> bool:
    data = json.loads(path.read_text(encoding="utf-8"))
    return isinstance(data, dict) and str(data.get("written_by", "")).startswith(SIGNATURE)


def _signed_figure(path: Path) -> bool:
    with open(path, "rb") as fh:
        head = fh.read(1 << 16)
        fh.seek(max(0, path.stat().st_size - (1 << 16)))
        tail = fh.read()
    return SIGNATURE.encode() in head or SIGNATURE.encode() in tail


def _signed_markdown(path: Path) -> bool:
    return path.read_text(encoding="utf-8", errors="replace").startswith(f"<!-- {SIGNATURE}")


_SIGNED = {".nc": _signed_hdf5, ".nir": _signed_hdf5, ".nix": _signed_hdf5, ".pkl": _signed_pickle,
           ".json": _signed_json, ".png": _signed_figure, ".svg": _signed_figure, ".pdf": _signed_figure,
           ".md": _signed_markdown}


def written_by_us(path: Path) -> bool:
    """Whether an existing file carries cortex-resnet's signature: netCDF results (title/versions
    attributes), NIR graphs (metadata ``written_by``), neo spike files (.nix: every block's
    ``written_by`` annotation; .pkl: read without unpickling), JSON, figures (PNG/SVG/PDF), Markdown."""
    check = _SIGNED.get(path.suffix.lower())
    if check is None:
        return False
    try:
        return bool(check(path))
    except (OSError, ValueError, KeyError, TypeError, ImportError):
        return False


def check_out_file(path: Path | None, option: str = "--out", *, suffixes: tuple[str, ...] = (),
                   force: bool = False) -> Path | None:
    """Validate an output file before any work: suffix, folder, and no foreign file replaced.

    An existing file is replaced only when :func:`written_by_us` recognises it, or with
    ``force``.
    """
    if path is None:
        return None
    if suffixes and path.suffix.lower() not in suffixes:
        raise SpecError(option, str(path), f"a file name ending in {', '.join(suffixes)}")
    if path.is_dir():
        raise SpecError(option, str(path), "a file path, not a directory")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise SpecError(option, str(path), f"a path in an existing directory ({parent} does not exist)")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise SpecError(option, str(path), f"a path in a folder you may write to ({parent} is not writable)")
    if path.exists() and not force and not written_by_us(path):
        raise SpecError(option, str(path), "a new file or one cortex-resnet wrote; this existing file was "
                        "not written by cortex-resnet: choose another name, or add --force to replace it")
    return path


def remove_written(path: str | Path) -> None:
    """Delete what the command that claimed the enclosing folder wrote under ``path``.

    Files it did not write are kept (and so are their folders). Outside a claimed folder
    nothing is deleted: a :class:`SpecError` says so.
    """
    target = Path(path)
    for claim in reversed(_ACTIVE):
        rel = claim.holds(target)
        if rel is not None and rel != ".":
            claim.remove_own(rel)
            return
    if target.exists():
        raise SpecError("out", str(target), "a folder cortex-resnet claimed before deleting in it "
                        "(nothing was deleted)")

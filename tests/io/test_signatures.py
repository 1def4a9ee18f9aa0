"""Our own NIR graphs and neo spike files are recognised (``written_by_us``), foreign ones are not:
a rerun replaces its own file without ``--force``, a foreign file needs it."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from cortex_resnet.errors import SpecError
from cortex_resnet.io.outdir import check_out_file, written_by_us

nir = pytest.importorskip("nir")
neo = pytest.importorskip("neo")
pq = pytest.importorskip("quantities")
pytest.importorskip("nixio")

from cortex_resnet.io.spikes import WRITTEN_BY


def _graph(metadata: dict):
    return nir.NIRGraph(nodes={"input": nir.Input({"input": np.array([2])}),
                               "output": nir.Output({"output": np.array([2])})},
                        edges=[("input", "output")], metadata=metadata)


def _block(ours: bool):
    b = neo.Block(name="c")
    if ours:
        b.annotate(written_by=WRITTEN_BY)
    seg = neo.Segment(name="s")
    seg.spiketrains.append(neo.SpikeTrain([1.0, 2.0] * pq.ms, t_stop=10.0 * pq.ms))
    b.segments.append(seg)
    return b


def _nix(path: Path, block) -> Path:
    io = neo.io.NixIO(str(path), mode="ow")
    try:
        io.write_block(block)
    finally:
        io.close()
    return path


def test_nir_graph_is_ours_only_with_our_metadata(tmp_path):
    from cortex_resnet.workflows.export import WRITTEN_BY as NIR_BY, write_nir

    write_nir(_graph({"written_by": NIR_BY}), tmp_path / "ours.nir")
    nir.write(tmp_path / "theirs.nir", _graph({"written_by": "someone else"}))
    nir.write(tmp_path / "plain.nir", _graph({}))
    assert written_by_us(tmp_path / "ours.nir")
    assert not written_by_us(tmp_path / "theirs.nir") and not written_by_us(tmp_path / "plain.nir")


def test_nix_file_is_ours_only_with_our_annotation(tmp_path):
    assert written_by_us(_nix(tmp_path / "ours.nix", _block(True)))
    assert not written_by_us(_nix(tmp_path / "theirs.nix", _block(False)))
    (tmp_path / "junk.nix").write_bytes(b"\x89HDF not really")
    assert not written_by_us(tmp_path / "junk.nix")


class _Trap:
    """Unpickling it would create a file: recognising a pickle must never unpickle it."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return (Path.touch, (self.path,))


def test_pickle_is_recognised_without_being_unpickled(tmp_path):
    neo.io.PickleIO(str(tmp_path / "ours.pkl")).write_block(_block(True))
    neo.io.PickleIO(str(tmp_path / "theirs.pkl")).write_block(_block(False))
    sprung = tmp_path / "sprung"
    with open(tmp_path / "trap.pkl", "wb") as fh:
        pickle.dump({"written_by": "x", "trap": _Trap(sprung)}, fh)
    (tmp_path / "text.pkl").write_text("cortex-resnet (cortex_resnet.io.spikes)")  # not a pickle at all
    assert written_by_us(tmp_path / "ours.pkl")
    for name in ("theirs.pkl", "trap.pkl", "text.pkl"):
        assert not written_by_us(tmp_path / name), name
    assert not sprung.exists()


def test_check_out_file_replaces_ours_and_refuses_foreign(tmp_path):
    neo.io.PickleIO(str(tmp_path / "ours.pkl")).write_block(_block(True))
    _nix(tmp_path / "theirs.nix", _block(False))
    assert check_out_file(tmp_path / "ours.pkl", "--spikes-out") == tmp_path / "ours.pkl"
    with pytest.raises(SpecError, match="--force"):
        check_out_file(tmp_path / "theirs.nix", "--spikes-out")
    assert check_out_file(tmp_path / "theirs.nix", "--spikes-out", force=True) == tmp_path / "theirs.nix"

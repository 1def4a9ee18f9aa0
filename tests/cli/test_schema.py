"""``cortex-resnet schema``: every field documented, docs/schema.md in sync, errors link to it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cortex_resnet.catalog import experiments_dir, models_dir
from cortex_resnet.cli import app
from cortex_resnet.cli.schema import ROOTS, field_rows, render_document
from cortex_resnet.errors import SpecError
from cortex_resnet.model.spec import load_spec, parse_spec, parse_stimulus
from cortex_resnet.training.experiment import load_experiment

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()


def _dotted_keys(data: dict, prefix: str = "") -> set[str]:
    out = set()
    for k, v in data.items():
        out.add(_placeholders(prefix + k))
        if isinstance(v, dict):
            out |= _dotted_keys(v, f"{prefix}{k}.")
    return out


def _placeholders(key: str) -> str:
    """Population names in a dumped key as the reference writes them: ``populations.<NAME>``,
    ``pathways.<POST>.<PRE>`` (and ``tuning.sigma_deg.<POST>.<PRE>``), ``input.gain.<NAME>``, ``bias.<parameter>`` (spiking.populations.E/I
    are fields of their own)."""
    parts = key.split(".")
    for i, p in enumerate(parts[:-1]):
        if p == "populations" and (i == 0 or parts[i + 1] not in ("E", "I")):
            parts[i + 1] = "<NAME>"
        elif p == "pathways" or (p == "sigma_deg" and i > 0 and parts[i - 1] == "tuning"):
            parts[i + 1:i + 3] = ["<POST>", "<PRE>"][:len(parts) - i - 1]
        elif (p == "gain" and i > 0 and parts[i - 1] == "input") or p == "dc_mV":
            parts[i + 1] = "<NAME>"
        elif p == "bias" and i == 0 and parts[i + 1] not in ("E", "I"):
            parts[i + 1] = "<parameter>"
    return ".".join(parts)


def test_docs_schema_md_is_the_generated_reference():
    doc = (ROOT / "docs" / "schema.md").read_text()
    assert doc == render_document(), (
        "docs/schema.md is out of date with the spec models: regenerate it with\n"
        "    PYTHONPATH=. cortex-resnet schema all > docs/schema.md\n"
        "(and add a meaning to cortex_resnet/cli/schema_fields.py for a new field)")


@pytest.mark.parametrize("kind", sorted(ROOTS))
def test_every_field_has_a_meaning_and_the_command_prints_it(kind):
    rows = field_rows(ROOTS[kind])
    assert [r.name for r in rows if r.meaning == "(undocumented)"] == []
    res = runner.invoke(app, ["schema", kind])
    assert res.exit_code == 0, res.output
    for r in rows:
        assert f"| `{r.name}` |" in res.stdout


def test_rows_cover_every_key_pydantic_dumps():
    """An independent list of fields: the dumped bundled specs (every default filled in)."""
    documented = {kind: {r.name for r in field_rows(cls)} for kind, cls in ROOTS.items()}
    for path in sorted(models_dir().glob("*.toml")):
        keys = _dotted_keys(load_spec(path).model_dump(mode="json"))
        keys = {k for k in keys if ".transfer." not in k or k.endswith(".transfer.name")}  # free parameters
        assert keys <= documented["model"], (path.name, keys - documented["model"])
    for name in ("mnist1d_tied.toml", "mnist1d_cnn.toml"):
        keys = _dotted_keys(load_experiment(experiments_dir() / name).model_dump(mode="json"))
        keys = {k for k in keys if not k.startswith(("model.spec.", "model.overrides.", "data.params.",
                                                     "model.params."))}
        assert keys <= documented["experiment"], (name, keys - documented["experiment"])
    assert _dotted_keys(parse_stimulus("step:amp=1").model_dump(mode="json")) == documented["stimulus"]


def test_bounds_and_units_shown_are_the_ones_enforced():
    rows = {r.name: r for r in field_rows(ROOTS["model"])}
    assert rows["connectivity.p"].allowed == "0 <= x <= 1"
    assert rows["spiking.dt_ms"].allowed == "0.0001 <= x <= 10" and rows["spiking.dt_ms"].unit == "ms"
    assert rows["connectivity.kind"].allowed == '"dense", "sparse", "spatial"'
    assert rows["populations.<NAME>.n"].default == "required"
    base = {"populations": {"E": {"n": 2, "tau_ms": 10.0}, "I": {"n": 2, "tau_ms": 10.0}}}
    parse_spec({**base, "connectivity": {"p": 1.0}})
    with pytest.raises(SpecError):
        parse_spec({**base, "connectivity": {"p": 1.01}})
    with pytest.raises(SpecError):
        parse_spec({**base, "spiking": {"dt_ms": 0.00009}})


def test_json_schema_lists_the_same_top_level_fields_with_descriptions():
    res = runner.invoke(app, ["schema", "model", "--json"])
    assert res.exit_code == 0, res.output
    schema = json.loads(res.stdout)
    top = {r.name for r in field_rows(ROOTS["model"]) if "." not in r.name}
    assert set(schema["properties"]) == top
    conn = schema["$defs"]["ConnectivitySpec"]["properties"]
    assert conn["p"]["minimum"] == 0 and conn["p"]["maximum"] == 1
    assert "Connection probability" in conn["p"]["description"]
    assert "Unit: ms" in schema["$defs"]["PopulationSpec"]["properties"]["tau_ms"]["description"]


def test_unknown_field_errors_link_the_reference(tmp_path):
    base = {"populations": {"E": {"n": 2, "tau_ms": 10.0}, "I": {"n": 2, "tau_ms": 10.0}}}
    with pytest.raises(SpecError, match="unknown field.*docs/schema.md"):
        parse_spec({**base, "connectivity": {"J_XE": 1.0}})
    with pytest.raises(SpecError, match="unknown field.*docs/schema.md"):
        parse_stimulus("step:amq=1")
    res = runner.invoke(app, ["schema", "bogus"])
    assert res.exit_code == 2 and "model, experiment, stimulus, all" in res.output

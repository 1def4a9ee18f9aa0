"""Experiment specs: every shipped file validates; schedules; round trips; errors name the field."""

from __future__ import annotations

import math
import tomllib
from pathlib import Path

import pytest

from cortex_resnet.data.datasets import known_datasets
from cortex_resnet.errors import SpecError
from cortex_resnet.training.experiment import (CircuitModelSpec, dump_experiment, learning_rate,
                                      load_experiment, parse_experiment)

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = sorted(p for p in (ROOT / "experiments").glob("*.toml")
                 if p.name.split("_")[0] in ("mnist1d", "digits", "crossing", "connected",
                                             "cifar10", "mnist"))


def test_the_issue_s_experiments_are_shipped():
    names = {p.stem for p in SHIPPED}
    assert {"mnist1d_tied", "mnist1d_untied", "mnist1d_plain", "mnist1d_logreg", "mnist1d_mlp",
            "mnist1d_cnn", "mnist1d_gru", "digits_tied", "crossing_tied", "connected_tied",
            "cifar10_resnet20", "cifar10_plain20", "cifar10_resnet56", "cifar10_plain56"} <= names


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_shipped_experiment_validates(path):
    spec = load_experiment(path)
    assert spec.name == path.stem
    assert spec.data.name in known_datasets()
    if isinstance(spec.model, CircuitModelSpec):
        assert spec.circuit_spec().n_units > 0
    again = parse_experiment(tomllib.loads(dump_experiment(spec)))
    assert dump_experiment(again) == dump_experiment(spec)


def test_he_et_al_recipe():
    s = load_experiment(ROOT / "experiments" / "cifar10_resnet56.toml")
    assert (s.optim.name, s.optim.lr, s.optim.momentum, s.optim.weight_decay) == ("sgd", 0.1, 0.9, 1e-4)
    assert (s.train.batch_size, s.train.epochs, s.schedule.milestones) == (128, 164, [82, 123])
    # 32k / 48k / 64k iterations at 391 iterations per epoch (50000 / 128)
    assert [round(k / math.ceil(50000 / 128)) for k in (32000, 48000, 64000)] == [82, 123, 164]


BASE = {"data": {"name": "digits"}, "model": {"kind": "baseline", "name": "mlp"},
        "optim": {"lr": 0.1}, "train": {"epochs": 10}}


@pytest.mark.parametrize("schedule,epoch,expected", [
    ({"kind": "constant"}, 7.3, 0.1),
    ({"kind": "step", "milestones": [3, 6]}, 2.99, 0.1),
    ({"kind": "step", "milestones": [3, 6]}, 3.0, 0.01),
    ({"kind": "step", "milestones": [3, 6]}, 9.5, 0.001),
    ({"kind": "cosine"}, 0.0, 0.1),
    ({"kind": "cosine"}, 5.0, 0.05),
    ({"kind": "cosine"}, 10.0, 0.0),
    ({"kind": "constant", "warmup_epochs": 2, "warmup_factor": 0.1}, 0.0, 0.01),
    ({"kind": "constant", "warmup_epochs": 2, "warmup_factor": 0.1}, 1.0, 0.055),
    ({"kind": "constant", "warmup_epochs": 2, "warmup_factor": 0.1}, 2.0, 0.1),
])
def test_learning_rate_schedule(schedule, epoch, expected):
    spec = parse_experiment({**BASE, "schedule": schedule})
    assert learning_rate(spec, epoch) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("changes,field", [
    ({"train": {"batch_size": 0}}, "train.batch_size"),
    ({"train": {"epochs": 0}}, "train.epochs"),
    ({"optim": {"lr": -1}}, "optim.lr"),
    ({"optim": {"name": "lbfgs"}}, "optim.name"),
    ({"schedule": {"kind": "step", "milestones": [0, 12]}}, "schedule.milestones"),
    ({"model": {"kind": "circuit", "circuit": "x.toml", "kernel_size": 4}}, "model.kernel_size"),
    ({"model": {"kind": "circuit"}}, "model.circuit"),
    ({"model": {"kind": "circuit", "circuit": "x.toml", "variant": "deep"}}, "model.variant"),
    ({"model": {"kind": "transformer"}}, "model"),
    ({"data": {"name": "digits", "augment": "mixup"}}, "data.augment"),
    ({"colour": "blue"}, "colour"),
])
def test_bad_fields_are_named(changes, field):
    with pytest.raises(SpecError) as err:
        parse_experiment({**BASE, **changes})
    assert err.value.field.startswith(field.split(".")[0])
    assert field.split(".")[-1] in str(err.value)


def test_missing_circuit_file_names_where_it_looked(tmp_path):
    p = tmp_path / "exp.toml"
    p.write_text('[data]\nname = "digits"\n[model]\nkind = "circuit"\ncircuit = "missing.toml"\n')
    with pytest.raises(SpecError, match="missing.toml") as err:
        load_experiment(p)
    assert err.value.field == "model.circuit" and str(tmp_path) in str(err.value)


def test_circuit_path_relative_to_the_experiment_file(tmp_path):
    (tmp_path / "circ").mkdir()
    src = ROOT / "experiments" / "circuits" / "ei_dense.toml"
    (tmp_path / "circ" / "c.toml").write_text(src.read_text())
    p = tmp_path / "exp.toml"
    p.write_text('[data]\nname = "digits"\n[model]\nkind = "circuit"\ncircuit = "circ/c.toml"\n'
                 'overrides = { "populations.E.n" = 12 }\n')
    assert load_experiment(p).circuit_spec().populations.E.n == 12


def test_bad_override_is_named(tmp_path):
    spec = parse_experiment({**BASE, "model": {"kind": "circuit", "spec": tomllib.loads(
        (ROOT / "experiments" / "circuits" / "ei_dense.toml").read_text()),
        "overrides": {"populations.X.n": 3}}})
    with pytest.raises(SpecError, match="model.overrides"):
        spec.circuit_spec()


def test_replace_validates():
    spec = parse_experiment(BASE)
    assert spec.replace(**{"train.epochs": 3}).train.epochs == 3
    with pytest.raises(SpecError, match="train.batch_size"):
        spec.replace(**{"train.batch_size": 0})


# ------------------------------------------------------------------ hardened inputs (issue 11 §4)
@pytest.mark.parametrize("changes, field", [
    ({"optim": {"betas": [float("nan"), 0.999]}}, "optim.betas.0"),
    ({"schedule": {"warmup_epochs": float("inf")}}, "schedule.warmup_epochs"),
    ({"optim": {"lr": "0.01"}}, "optim.lr"),
    ({"train": {"epochs": True}}, "train.epochs"),
    ({"description": "x" * 1_000_000}, "description"),
    ({"data": {"name": "digits", "params": {"noise": float("nan")}}}, "data.params.noise"),
])
def test_hardened_fields_are_named(changes, field):
    with pytest.raises(SpecError) as err:
        parse_experiment({**BASE, **changes})
    assert err.value.field == field, str(err.value)


def test_unknown_experiment_key_is_suggested_without_the_union_tag():
    model = {"kind": "circuit", "circuit": "x.toml", "stepz": 3}
    with pytest.raises(SpecError, match="did you mean 'steps'.*valid keys of \\[model\\]") as err:
        parse_experiment({**BASE, "model": model})
    assert err.value.field == "model.stepz"


def test_a_model_file_is_not_an_experiment_file():
    with pytest.raises(SpecError, match="circuit model file.*`cortex-resnet simulate`") as err:
        load_experiment(ROOT / "models" / "canonical_microcircuit.toml")
    assert err.value.field == "<file>"

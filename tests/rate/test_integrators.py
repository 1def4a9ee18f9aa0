"""The integrator registry (:mod:`cortex_resnet.rate.integrators`): names, and the base's loop.

A method only returns its increment; the base owns the loop and its guards. A test-only
method (Heun's explicit trapezoid rule, order 2) registered for one test must therefore reach
its order against the exact solution and be stopped at the first bad step like the built-ins.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cortex_resnet.errors import UnknownNameError, UnstableCircuitError
from cortex_resnet.model.stimulus import make_stimulus
from cortex_resnet.rate.integrators import (
    ADAPTIVE,
    FIXED_STEP,
    INTEGRATORS,
    FixedStep,
    known_integrators,
)
from cortex_resnet.rate.simulator import RateSystem, integrate
from tests import problems as P

U = np.ones(2)  # "constant:amp=1" on the two input channels of problems.linear_spec()


class Heun(FixedStep):
    """Explicit trapezoid rule (test only): ``dt/2 (f(r) + f(r + dt f(r)))``, global order 2."""

    name = "heun_test"

    def increment(self, r, k, t, drive, eta):
        f0 = self.system.rhs(r, drive, k)
        f1 = self.system.rhs(r + self.dt_ms * f0, self.system.drive(self.stimulus(t + self.dt_ms), eta), k)
        return 0.5 * self.dt_ms * (f0 + f1)


class NaNAtStep5(FixedStep):
    """Test only: a finite Euler increment, then NaN from the 5th step (k = 4) on."""

    name = "nan_test"

    def increment(self, r, k, t, drive, eta):
        dr = self.dt_ms * self.system.rhs(r, drive, k)
        return dr * float("nan") if k >= 4 else dr


def _run(circuit, method, dt_ms, duration_ms):
    stim = make_stimulus("constant:amp=1.0", circuit.n_inputs, torch.float64)
    return integrate(RateSystem(circuit, torch.float64), stim, duration_ms, dt_ms, method=method)


def test_names_in_registry_order():
    assert FIXED_STEP == ("euler", "expeuler", "rk4")
    assert ADAPTIVE == ("dopri5", "bosh3", "adaptive_heun", "dopri8")
    assert known_integrators() == list(FIXED_STEP + ADAPTIVE)


def test_unknown_method_lists_the_known_ones():
    with pytest.raises(UnknownNameError) as err:
        _run(P.linear_circuit(), "rk5", 0.1, 1.0)
    assert err.value.field == "method"
    assert all(name in str(err.value) for name in known_integrators())


def test_a_registered_increment_reaches_its_order(monkeypatch):
    """Heun through the base loop: error at t = 20 ms vs the exact (expm) solution falls by
    2^2 = 4 per halving of dt. Accepted 3.6..4.4: the ratio's O(dt) correction is ~ dt/tau = 5 %
    at dt = 0.5 ms (tau = 10 ms); a first-order slip would give 2."""
    monkeypatch.setitem(INTEGRATORS, Heun.name, Heun)
    circuit = P.linear_circuit()
    exact = P.linear_exact(circuit, U, np.array([20.0]))[0]
    errors = [np.abs(_run(circuit, "heun_test", dt, 20.0).r[-1, 0].numpy() - exact).max()
              for dt in (0.5, 0.25)]
    assert 3.6 < errors[0] / errors[1] < 4.4


def test_the_base_loop_stops_a_method_at_its_first_bad_step(monkeypatch):
    """NaN appears in step 5 (t = 0.5 ms with dt = 0.1 ms), inside the first 500-step chunk:
    the base's replay must name that step, not the chunk's end."""
    monkeypatch.setitem(INTEGRATORS, NaNAtStep5.name, NaNAtStep5)
    with pytest.raises(UnstableCircuitError) as err:
        _run(P.linear_circuit(), "nan_test", 0.1, 10.0)
    assert err.value.step == 5
    assert err.value.time_ms == pytest.approx(0.5)
    assert "became NaN/inf" in str(err.value)


def test_every_fixed_step_method_has_a_real_increment():
    """No stub hook: each fixed-step method's ``increment`` is ``advance - r`` (Euler's fused update too)."""
    from cortex_resnet.rate.integrators import get_integrator

    circuit = P.linear_circuit()
    stim = make_stimulus("constant:amp=1.0", circuit.n_inputs, torch.float64)
    system = RateSystem(circuit, torch.float64)
    r = torch.full((1, circuit.n_units), 0.3, dtype=torch.float64)
    for name in FIXED_STEP:
        integ = get_integrator(name)(system, stim, 0.1, 0.0, 0)
        drive = integ.base_drive(0.0)
        inc = integ.increment(r, 0, 0.0, drive, None)
        torch.testing.assert_close(r + inc, integ.advance(r, 0, 0.0, drive, None), rtol=0, atol=1e-15)
        assert float(inc.abs().max()) > 0, name
        assert repr(integ).startswith(type(integ).__name__) and "\n" not in repr(integ)

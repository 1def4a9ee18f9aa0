"""Exception types shared by every layer.

Every error a user can cause names the field, the value and what is allowed;
the CLI maps :class:`SpecError` (and every other :class:`CortexError` that is
not a :class:`SimulationError`) to exit code 2 and :class:`SimulationError` to
exit 1; any other exception is reported as an internal error (exit 1).
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "CortexError",
    "SpecError",
    "UnknownNameError",
    "ResourceError",
    "SimulationError",
    "UnstableCircuitError",
    "ConvergenceError",
    "TooFewSeedsError",
    "SCHEMA_DOC",
]

# where every spec field is documented; named in every "unknown field" message
SCHEMA_DOC = "every field: docs/schema.md or `cortex-resnet schema model|experiment|stimulus`"


class CortexError(Exception):
    """Base class of all cortex_resnet errors."""


class SpecError(CortexError, ValueError):
    """Invalid user input: a spec field, a CLI option or a file.

    Parameters
    ----------
    field
        Dotted path of the offending field (``"connectivity.p"``).
    value
        The value that was given.
    allowed
        What would have been accepted, in words.
    """

    def __init__(self, field: str, value: Any, allowed: str, source: str | None = None):
        self.field = field
        self.value = value
        self.allowed = allowed
        self.source = source
        where = f"{source}: " if source else ""
        shown = repr(value)
        if len(shown) > 300:  # a 1 MB description is not echoed; a long path keeps its head and tail
            shown = f"{shown[:100]}...{shown[-40:]} ({len(shown)} characters)"
        super().__init__(f"{where}{field} = {shown} is not allowed: {allowed}")


class UnknownNameError(SpecError):
    """A name looked up in a registry (transfer function, integrator, ...) is unknown."""

    def __init__(self, kind: str, name: Any, known: list[str], field: str | None = None):
        self.kind = kind
        self.known = sorted(known)
        super().__init__(
            field or kind, name, f"unknown {kind}; known: {', '.join(self.known)}"
        )


class ResourceError(SpecError):
    """A run would need more memory than the configured budget."""


class SimulationError(CortexError, RuntimeError):
    """A run failed at run time (not because of malformed input)."""


class UnstableCircuitError(SimulationError):
    """Rates ran away or became NaN/inf; the message carries the eigen-diagnosis."""

    def __init__(self, message: str, *, step: int | None = None, time_ms: float | None = None,
                 population: str | None = None, max_eig_real: float | None = None):
        self.step = step
        self.time_ms = time_ms
        self.population = population
        self.max_eig_real = max_eig_real
        super().__init__(message)


class ConvergenceError(SimulationError):
    """A fixed-point / steady-state solver did not converge."""

    def __init__(self, message: str, *, residual: float | None = None, iterations: int | None = None):
        self.residual = residual
        self.iterations = iterations
        super().__init__(message)


class TooFewSeedsError(SpecError):
    """Fewer than two usable seeds: no test and no verdict can be drawn from them.

    Raised by :func:`cortex_resnet.hypotheses.stats.require_seeds`; a hypothesis turns it into an untestable
    (inconclusive) sub-claim when seeds were dropped, instead of matching the message text.
    """

    def __init__(self, field: str, n: int, source: str | None = None):
        self.n = n
        super().__init__(field, n, "at least 2 seeds: a verdict is never drawn from one seed", source=source)

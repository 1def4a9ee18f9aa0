"""The rate stage: ``T dr/dt = -r + phi(W r + B u(t) + b + eta(t))``.

``step`` (the Euler step = a residual block, the drive, the step-size check), ``system``
(a circuit's tensors, a run's state), ``integrators`` (registered by name; the base owns the
loop), ``stability`` (diagnosis of a blow-up, final-state stability) and ``simulator``
(the entry points ``simulate`` and ``integrate``, re-exporting the rest).
"""

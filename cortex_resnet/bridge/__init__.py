"""The bridge: circuit dynamics <-> residual networks.

``unroll`` turns a circuit into ``K`` residual blocks (one Euler step each, the
rate simulator's own step function), ``CircuitClassifier`` wraps it with a
learned input projection and an E-only anytime readout, ``to_circuit`` maps a
trained net back to a circuit, ``save_circuit``/``load_circuit`` write and read
it as a model file plus a weight file.
"""

from cortex_resnet.bridge.check import TOLERANCE, compare_with_simulator, reference_circuit
from cortex_resnet.bridge.classifier import INPUT_PROJECTIONS, CircuitClassifier
from cortex_resnet.bridge.convert import load_circuit, load_state, save_circuit, save_state, spec_to_toml, to_circuit
from cortex_resnet.bridge.dale import DaleConv, DaleMatrix, balanced_weights
from cortex_resnet.bridge.options import INPUT_MODES, NORMS, RECURRENCES, VARIANTS, UnrollOptions
from cortex_resnet.bridge.unroll import UnrolledCircuit, unroll

__all__ = [
    "unroll", "UnrolledCircuit", "UnrollOptions", "VARIANTS", "INPUT_MODES", "NORMS",
    "CircuitClassifier", "INPUT_PROJECTIONS", "to_circuit", "save_circuit", "load_circuit",
    "save_state", "load_state", "spec_to_toml", "DaleMatrix", "DaleConv", "balanced_weights", "RECURRENCES",
    "compare_with_simulator", "reference_circuit", "TOLERANCE",
]

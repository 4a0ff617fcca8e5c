"""What the gates do on real text: per-token gate values, switch settings, saturation, fidelity.

>>> from gatelab.explain import explain_text, random_model
>>> ex = explain_text(random_model("mgu", ["good", "bad"]), "good , not bad")
>>> ex.tokens, tuple(ex.gates["f"].shape)
(['good', ',', 'not', 'bad'], (4, 6))
"""

from .fidelity import Condition, Fidelity, fidelity, round_gates
from .gates import TextGates, Trace, explain_text, replay, replay_layers
from .model import ExplainError, Labelled, TextModel, from_module, from_run, random_model
from .saturation import Saturation, saturation
from .switches import Switch, setting_kind, switches

__all__ = [
    "Condition", "ExplainError", "Fidelity", "Labelled", "Saturation", "Switch", "TextGates",
    "TextModel", "Trace", "explain_text", "fidelity", "from_module", "from_run", "random_model",
    "replay", "replay_layers", "round_gates", "saturation", "setting_kind", "switches",
]

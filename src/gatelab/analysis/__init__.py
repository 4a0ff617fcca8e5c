"""The three simplifications of the article, computed for any cell (docs/design.md, "The analysis").

``analyze(cell)`` gives an :class:`Analysis`: memory states and readouts, stages 1-3, every 0/1
gate setting (a :class:`Mode`) with its reduced update, kind and identity path, the gates'
switch actions, scan-parallelism and the shared core. ``reduce_setting`` reduces any setting.
The JSON schema is documented in ``docs/analysis.md``.
"""

from .analyze import Analysis, analyze, reduce_setting
from .kinds import KIND_LABELS, KINDS, kind_label, kind_text
from .stages import MAX_GATES, Mode, parse_setting, read_setting
from .symbols import AnalysisError

__all__ = ["KINDS", "KIND_LABELS", "MAX_GATES", "Analysis", "AnalysisError", "Mode", "analyze",
           "kind_label", "kind_text", "parse_setting", "read_setting", "reduce_setting"]

"""Training: tasks, a trainer with exact resume and DDP, run folders, cell-vs-cell comparisons.

>>> from gatelab.train import TrainConfig, train, load_run      # doctest: +SKIP
>>> run = load_run(train(TrainConfig(task="adding", cell="mgu", T=50, steps=500)))  # doctest: +SKIP
>>> run.metrics[-1]["metric"]                    # test MSE at the end  # doctest: +SKIP
"""

from .config import TASKS, TrainConfig
from .runs import Run, load_run
from .trainer import TrainError, TrainingDiverged, train

__all__ = ["TASKS", "Run", "TrainConfig", "TrainError", "TrainingDiverged", "load_run", "train"]

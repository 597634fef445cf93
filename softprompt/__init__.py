"""softprompt: soft prompt tuning (Lester et al. 2021) and multitask prompt tuning (Wang et al. 2023).

Read top to bottom, the public names follow a learner's path through the notebooks:
load a model, configure and attach a prompt, train it on a task, evaluate and serve it,
read what it learned, and transfer it across tasks with MPT.
"""

from .models import DEFAULT_MODEL, PRESETS, ModelLoadError, load_model

__all__ = ["DEFAULT_MODEL", "PRESETS", "ModelLoadError", "load_model"]

__version__ = "0.1.0"

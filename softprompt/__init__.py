"""softprompt: soft prompt tuning (Lester et al. 2021) and multitask prompt tuning (Wang et al. 2023).

Read top to bottom, the public names follow a learner's path through the notebooks:
load a model, configure and attach a prompt, train it on a task, evaluate and serve it,
read what it learned, and transfer it across tasks with MPT.

Plain imports, no lazy table: importing torch and transformers is most of the cost of
``import softprompt`` (see ARCHITECTURE.md for the measured split), so deferring our own
modules would save little and hide where each name comes from.
"""

__version__ = "0.1.0"

# loading a base model
from .models import DEFAULT_MODEL, PRESETS, ModelLoadError, load_model, load_tokenizer

# prompt tuning (Lester et al. 2021): the core reading path, in reading order
from .config import PromptTuningConfig, PromptTuningInit, RandomInitScale, TaskType, TextInitFill
from .prompt_embedding import PromptEmbedding
from .multitask import (
    MultitaskPromptEmbedding, MultitaskPromptTuningConfig, MultitaskPromptTuningInit, TaskFactorInit,
)
from .prompt_model import PromptModel, get_prompt_model
from .training import TrainingConfig, train
from .evaluation import evaluate
from .precision import tolerance

# beside the core: other heads (they register their task types with PromptModel), kinds of model
from . import seq2seq, seq_cls  # noqa: F401  (importing them registers SEQ_2_SEQ_LM and SEQ_CLS)
from .model_kind import model_task_type

# tasks, training helpers, serving
from .tasks import Task, TaskNotFoundError, list_tasks, load_task
from .tasks.hub import HubDatasetError
from .history import History
from .callbacks import Callback, TrainState
from .live import LiveLossPlot
from .progress import progress_bar
from .hf_trainer import PromptTrainer, TaskCollator
from .prefix_cache import PromptPrefixCache
from .serving import PromptBank, ensemble_predict, evaluate_ensemble

# multitask prompt tuning (Wang et al. 2023): the pipeline
from .mpt import (
    MPTRecipe, adapt_to_target, distill, target_prompt_model, teacher_model, teacher_student_kl, train_teachers,
)

# reading learned prompts
from .neighbors import NeighborTable, nearest_tokens
from .snapshots import PromptSnapshots
from .waywardness import WaywardnessReport, hard_prompt_model, measure_waywardness
from .explorers import PromptExplorer, TaskExplorer
from . import figures  # noqa: F401  (sp.figures)

# run profiles for the notebooks
from . import profiles  # noqa: F401  (sp.profiles)
from .profiles import Profile, pick_profile

__all__ = [
    "DEFAULT_MODEL", "PRESETS", "ModelLoadError", "load_model", "load_tokenizer",
    "PromptTuningConfig", "PromptTuningInit", "RandomInitScale", "TaskType", "TextInitFill", "PromptEmbedding",
    "MultitaskPromptEmbedding", "MultitaskPromptTuningConfig", "MultitaskPromptTuningInit", "TaskFactorInit",
    "PromptModel", "get_prompt_model", "TrainingConfig", "train", "evaluate", "tolerance", "model_task_type",
    "Task", "TaskNotFoundError", "list_tasks", "load_task", "HubDatasetError", "History", "Callback", "TrainState",
    "LiveLossPlot", "progress_bar", "PromptTrainer", "TaskCollator", "PromptPrefixCache", "PromptBank",
    "ensemble_predict", "evaluate_ensemble", "MPTRecipe", "adapt_to_target", "distill", "target_prompt_model",
    "teacher_model", "teacher_student_kl", "train_teachers", "NeighborTable", "nearest_tokens", "PromptSnapshots",
    "WaywardnessReport", "hard_prompt_model", "measure_waywardness", "PromptExplorer", "TaskExplorer",
    "Profile", "pick_profile",
]

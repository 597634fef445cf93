"""softprompt: soft prompt tuning (Lester et al. 2021) and multitask prompt tuning (Wang et al. 2023).

Read top to bottom, the public names follow a learner's path through the notebooks:
load a model, configure and attach a prompt, train it on a task, evaluate and serve it,
read what it learned, and transfer it across tasks with MPT.

Names are imported lazily, on first use, so ``import softprompt`` stays fast and a
notebook pays only for what it touches.
"""

from importlib import import_module

__version__ = "0.1.0"

# public name -> module that defines it (one line each; keep grouped by module)
_LAZY = {
    # loading a base model
    "load_model": "models", "load_tokenizer": "models", "ModelLoadError": "models",
    "PRESETS": "models", "DEFAULT_MODEL": "models",
    # prompt tuning (Lester et al. 2021)
    "TaskType": "config", "PromptTuningInit": "config", "TextInitFill": "config", "PromptTuningConfig": "config",
    "RandomInitScale": "config",
    "PromptEmbedding": "prompt_embedding",
    "PromptModel": "prompt_model", "get_prompt_model": "prompt_model",
    "model_task_type": "model_kind",
    # multitask prompt tuning (Wang et al. 2023)
    "MultitaskPromptTuningConfig": "multitask", "MultitaskPromptTuningInit": "multitask",
    "MultitaskPromptEmbedding": "multitask", "TaskFactorInit": "multitask",
    "MPTRecipe": "mpt", "train_teachers": "mpt", "distill": "mpt", "adapt_to_target": "mpt",
    "target_prompt_model": "mpt", "teacher_model": "mpt", "teacher_student_kl": "mpt",
    # tasks, training, evaluation, serving
    "Task": "tasks", "load_task": "tasks", "list_tasks": "tasks", "HubDatasetError": "tasks.hub",
    "TaskNotFoundError": "tasks",
    "train": "training", "History": "training",
    "TrainingConfig": "training", "LiveLossPlot": "live", "PromptTrainer": "hf_trainer", "TaskCollator": "hf_trainer",
    "Callback": "callbacks", "TrainState": "callbacks",
    "evaluate": "evaluation",
    "PromptPrefixCache": "prefix_cache",
    "PromptBank": "serving", "ensemble_predict": "serving", "evaluate_ensemble": "serving",
    # reading learned prompts
    "nearest_tokens": "neighbors", "NeighborTable": "neighbors",
    "PromptSnapshots": "snapshots",
    # run profiles for the notebooks
    "pick_profile": "profiles", "Profile": "profiles",
    "measure_waywardness": "waywardness", "hard_prompt_model": "waywardness", "WaywardnessReport": "waywardness",
    "PromptExplorer": "explorers", "TaskExplorer": "explorers",
}

__all__ = sorted(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        value = getattr(import_module(f".{_LAZY[name]}", __name__), name)
    else:  # a submodule, e.g. sp.profiles or sp.figures
        try:
            value = import_module(f".{name}", __name__)
        except ModuleNotFoundError as err:
            if err.name != f"{__name__}.{name}":
                raise
            raise AttributeError(f"module 'softprompt' has no attribute {name!r}") from None
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))


from . import seq2seq, seq_cls  # noqa: E402, F401  (register the task types)

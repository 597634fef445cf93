import pytest

from softprompt.profiles import PROFILES, pick_profile


def test_cpu_is_the_default_without_a_gpu(monkeypatch):
    monkeypatch.delenv("SOFTPROMPT_PROFILE", raising=False)
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    profile = pick_profile()
    assert profile.name == "cpu" and profile.model == "smollm2-135m-instruct"


def test_gpu_is_picked_with_cuda_and_env_overrides(monkeypatch):
    monkeypatch.setattr("torch.cuda.is_available", lambda: True)
    monkeypatch.delenv("SOFTPROMPT_PROFILE", raising=False)
    assert pick_profile().name == "gpu"
    monkeypatch.setenv("SOFTPROMPT_PROFILE", "cpu")
    assert pick_profile().name == "cpu"
    assert pick_profile("gpu").name == "gpu"  # an explicit name wins


def test_unknown_profile_and_bad_knobs_are_clear_errors():
    with pytest.raises(ValueError, match="choose one of"):
        pick_profile("tpu")
    with pytest.raises(ValueError, match="must be positive"):
        PROFILES["cpu"].with_(steps=0)


def test_submodules_are_reachable_from_the_package():
    import softprompt as sp

    assert sp.profiles.pick_profile("cpu").name == "cpu"
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        sp.nope  # noqa: B018


def test_load_model_falls_back_to_the_offline_default_and_says_why(monkeypatch, capsys):
    from softprompt import profiles
    from softprompt.models import DEFAULT_MODEL, ModelLoadError
    from softprompt.testing import tiny_model, tiny_tokenizer

    asked = []

    def fake_load(name, dtype, device):
        asked.append(name)
        if name != DEFAULT_MODEL:
            raise ModelLoadError(f"{name} is not on this machine\nmore detail")
        return tiny_model("llama"), tiny_tokenizer()

    monkeypatch.setattr(profiles, "load_model", fake_load)
    model, _ = PROFILES["gpu"].with_(device="cpu").load_model()
    assert asked == [PROFILES["gpu"].model, DEFAULT_MODEL] and not model.training
    out = capsys.readouterr().out
    assert "is not on this machine" in out and "more detail" not in out and DEFAULT_MODEL in out


def test_load_task_falls_back_only_when_the_hub_is_out_of_reach(monkeypatch, capsys):
    from softprompt import profiles
    from softprompt.tasks import TaskNotFoundError, load_task
    from softprompt.tasks.hub import HubDatasetError

    def no_hub(name):
        if name == "sst2":
            raise HubDatasetError("the Hugging Face hub is unreachable")
        return load_task(name)

    monkeypatch.setattr(profiles, "load_task", no_hub)
    gpu = PROFILES["gpu"]
    assert gpu.tasks["main"] == "sst2" and gpu.load_task("main").name == "sentiment_movies"
    assert "hub is unreachable" in capsys.readouterr().out
    assert gpu.load_task("main", fallback="topic").name == "topic"
    with pytest.raises(TaskNotFoundError):  # a misspelt name is the user's to fix, never silently replaced
        gpu.load_task("sentimnet_movies")

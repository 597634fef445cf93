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

"""The README's quick start runs as written (on the offline default model), so it cannot rot."""

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def quick_start() -> str:
    """The first ```python block under the '## Quick start' heading."""
    text = README.read_text(encoding="utf-8")
    section = text.split("## Quick start", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_quick_start_is_short():
    lines = [line for line in quick_start().splitlines() if line.strip()]
    assert len(lines) <= 16, "the quick start should stay about ten lines"


@pytest.mark.slow
def test_quick_start_runs(tmp_path, monkeypatch, smollm2, capsys):
    import softprompt as sp

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sp, "load_model", lambda *a, **k: smollm2)  # the session's copy: same model, no reload
    namespace: dict = {}
    exec(compile(quick_start(), str(README), "exec"), namespace)
    accuracy = float(capsys.readouterr().out.strip().splitlines()[-1])
    assert 0.0 <= accuracy <= 1.0
    assert (tmp_path / "my_prompt" / "adapter_model.safetensors").exists()
    assert namespace["history"].steps == 10
    # PEFT read the same prompt: its prompt encoder holds our weights.
    ours = namespace["prompt_model"].prompt_encoder.adapter_tensors()["prompt_embeddings"]
    theirs = namespace["peft_model"].get_prompt_embedding_to_save("default")
    assert (ours.cpu() == theirs.cpu()).all()

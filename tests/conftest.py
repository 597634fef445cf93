"""Shared fixtures: tiny random models and an offline tokenizer (no network, milliseconds per forward)."""

import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from softprompt.testing import tiny_model, tiny_tokenizer  # noqa: E402

# Tiny models gain nothing from a second thread, and lose a lot when the cores are busy
# (a tiny T5 generate took 2-4 s with two threads under load vs 0.07 s with one).
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture
def tokenizer():
    return tiny_tokenizer()


@pytest.fixture(params=["llama", "gpt2"])
def causal_arch(request):
    return request.param


@pytest.fixture
def llama():
    return tiny_model("llama")


@pytest.fixture
def gpt2():
    return tiny_model("gpt2")


@pytest.fixture
def t5():
    return tiny_model("t5")


@pytest.fixture
def bert():
    return tiny_model("bert")


@pytest.fixture(scope="session")
def smollm2():
    """The offline default model (converted once into the cache, ~0.5 s per later load)."""
    from softprompt import load_model

    return load_model("smollm2-135m-instruct")


def pytest_terminal_summary(terminalreporter):
    """A browser test that could not run says so in the summary too (tests/test_browser_explorers.py): never silent."""
    for report in terminalreporter.stats.get("skipped", []):
        if "browser test did NOT run" in str(report.longrepr):
            terminalreporter.write_line(str(report.longrepr[-1]).removeprefix("Skipped: "), yellow=True, bold=True)
            break

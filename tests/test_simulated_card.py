"""A simulated GPU card (softprompt.simulated_card): ``torch.cuda`` answers as a T4 or an A100, then is restored.

``SimulatedAccelerator(card=...)`` must give the answers a library asks for (capability, memory, bfloat16
support), make ``dtype="auto"`` pick the card's half dtype, run ``torch.autocast("cuda")`` for real (the CPU's
autocast) and make ``GradScaler("cuda")`` scale, unscale and skip a step whose gradient is not finite.
"""

import math

import pytest
import torch

import softprompt as sp
from softprompt.device_check import CARDS, SimulatedAccelerator
from softprompt.precision import Precision, autocast, resolve_dtype
from softprompt.simulated_card import CardAnswers
from softprompt.testing import tiny_model, tiny_tokenizer

EXPECTED = {  # card -> (name, capability, GiB, SMs, native bfloat16, the half dtype "auto" picks)
    "T4": ("Tesla T4", (7, 5), 15, 40, False, torch.float16),
    "A100": ("NVIDIA A100-SXM4-40GB", (8, 0), 40, 108, True, torch.bfloat16),
}


def _torch_answers() -> dict:
    """Every attribute a card patches, as torch has it now."""
    out = {("cuda", n): getattr(torch.cuda, n) for n in CardAnswers.CUDA}
    out |= {("accelerator", n): getattr(torch.accelerator, n, None) for n in CardAnswers.ACCELERATOR}  # old torch
    for name in ("set_autocast_enabled", "is_autocast_enabled", "get_autocast_dtype", "set_autocast_dtype",
                 "get_autocast_gpu_dtype"):
        out["torch", name] = getattr(torch, name)
    return out


@pytest.mark.parametrize("card", sorted(EXPECTED))
def test_the_card_answers_every_question_and_torch_is_restored_on_exit(card):
    name, capability, gib, sms, bf16, half = EXPECTED[card]
    before, cpu_autocast_dtype = _torch_answers(), torch.get_autocast_dtype("cpu")
    with SimulatedAccelerator(card=card) as accel:
        assert accel.card is CARDS[card]
        assert torch.cuda.is_available() and torch.cuda.is_initialized() and torch.cuda.device_count() == 1
        assert torch.cuda.current_device() == 0
        torch.cuda.set_device(0)
        torch.cuda.set_device("cuda:0")
        with pytest.raises(AssertionError, match="Invalid device id"):
            torch.cuda.set_device(1)
        assert torch.cuda.get_device_capability() == capability == torch.cuda.get_device_capability("cuda")
        assert torch.cuda.get_device_name(0) == name
        props = torch.cuda.get_device_properties(torch.cuda.current_device())
        assert (props.name, (props.major, props.minor), props.total_memory, props.multi_processor_count) == (
            name, capability, gib * 2**30, sms)
        assert torch.cuda.get_arch_list() == [f"sm_{capability[0]}{capability[1]}"]
        assert torch.cuda.is_bf16_supported(including_emulation=False) is bf16
        assert torch.cuda.is_bf16_supported() is True  # a T4 runs bfloat16 by emulation, as torch says
        assert resolve_dtype("auto", "cuda") is half and resolve_dtype("auto", "cpu") is torch.float32
        assert sp.profiles.PROFILES["gpu"].torch_dtype() is half
        assert torch.accelerator.is_available() and torch.accelerator.current_accelerator().type == "cuda"
        assert torch.accelerator.device_count() == 1 and torch.accelerator.current_device_index() == 0
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
    assert _torch_answers() == before  # every patched attribute is torch's own again
    assert not torch.cuda.is_available() and torch.get_autocast_dtype("cpu") == cpu_autocast_dtype
    assert resolve_dtype("auto", "cuda") is torch.float32


def test_without_a_card_torch_cuda_is_left_alone_and_unknown_cards_are_refused():
    before = _torch_answers()
    with SimulatedAccelerator() as accel:
        assert accel.card is None and not torch.cuda.is_available()
        assert _torch_answers() == before
    with pytest.raises(ValueError, match="card='P100'.*A100"):
        SimulatedAccelerator(card="P100")


def test_memory_counts_the_live_tensors_on_the_card():
    with SimulatedAccelerator(card="T4"):
        base = torch.cuda.memory_allocated()
        x = torch.zeros(1024, device="cuda")  # 4 KiB
        view = x[:10]  # a view allocates nothing
        assert torch.cuda.memory_allocated() - base == 4096 and view.is_cuda
        y = torch.zeros(2048, device="cuda", dtype=torch.float16)  # 4 KiB more
        assert torch.cuda.memory_allocated() - base == 8192
        free, total = torch.cuda.mem_get_info()
        assert total == CARDS["T4"].total_memory and free == total - torch.cuda.memory_allocated()
        torch.zeros(1024)  # the CPU's memory is not the card's
        assert torch.cuda.memory_allocated() - base == 8192
        del x, view, y
        assert torch.cuda.memory_allocated() == base
        assert torch.cuda.max_memory_allocated() - base == 8192  # the peak seen by the queries
        torch.cuda.reset_peak_memory_stats()
        assert torch.cuda.max_memory_allocated() == base


def test_cuda_rng_state_is_seeded_saved_and_restored():
    with SimulatedAccelerator(card="A100"):
        torch.manual_seed(7)  # seeds every device, CUDA's too
        assert torch.cuda.initial_seed() == 7
        states = torch.cuda.get_rng_state_all()
        assert len(states) == 1 and states[0].dtype == torch.uint8
        torch.cuda.manual_seed_all(8)
        assert torch.cuda.initial_seed() == 8
        torch.cuda.set_rng_state_all(states)
        assert torch.equal(torch.cuda.get_rng_state(), states[0])


@pytest.mark.parametrize("card", sorted(EXPECTED))
def test_autocast_on_cuda_runs_in_the_cards_half_dtype(card):
    half = EXPECTED[card][-1]
    with SimulatedAccelerator(card=card):
        lin = torch.nn.Linear(8, 4).to("cuda")
        x = torch.randn(2, 8, device="cuda")
        assert not torch.is_autocast_enabled("cuda")
        with torch.autocast(device_type="cuda", dtype=half):
            assert torch.is_autocast_enabled("cuda") and torch.get_autocast_dtype("cuda") == half
            y = lin(x)  # a float32 layer, a float32 input: autocast computes in half
            probs = torch.softmax(y, dim=-1)  # autocast keeps softmax in float32
        assert y.dtype == half and y.is_cuda and probs.dtype == torch.float32
        assert not torch.is_autocast_enabled("cuda") and lin(x).dtype == torch.float32
        with torch.autocast(device_type="cuda"):  # CUDA's default autocast dtype
            assert lin(x).dtype == torch.float16
        model = tiny_model("llama").to(half).to("cuda")
        with autocast(model):  # softprompt.precision's: in the model's dtype, on its device
            assert torch.is_autocast_enabled("cuda") and torch.get_autocast_dtype("cuda") == half


@pytest.mark.parametrize("card", sorted(EXPECTED))
def test_half_products_round_like_tensor_cores_and_mixed_dtypes_still_raise(card):
    half = EXPECTED[card][-1]
    with SimulatedAccelerator(card=card):
        a = torch.randn(16, 64, device="cuda").to(half)
        b = torch.randn(64, 8, device="cuda").to(half)
        product = a @ b  # half inputs, float32 accumulation, rounded to half once
        assert product.dtype == half and product.is_cuda
        assert torch.equal(product, (a.float() @ b.float()).to(half))
        with pytest.raises(RuntimeError, match="same dtype"):  # float32 @ half outside autocast, as on a GPU
            torch.randn(4, 16, device="cuda") @ a
        with torch.autocast(device_type="cuda", dtype=half):
            assert (torch.randn(4, 16, device="cuda") @ a).dtype == half  # autocast casts both


def test_pinned_host_memory_is_plain_memory():
    with SimulatedAccelerator(card="T4"):
        x = torch.empty(3, pin_memory=True)  # safetensors asks for this before a copy to the GPU
        assert not x.is_cuda and x.pin_memory() is x and x.to("cuda", non_blocking=True).is_cuda


def test_grad_scaler_on_cuda_skips_a_step_with_an_inf_gradient_and_takes_a_finite_one():
    with SimulatedAccelerator(card="T4"):
        lin = torch.nn.Linear(8, 1).to("cuda")
        opt = torch.optim.SGD(lin.parameters(), lr=0.1)
        scaler = torch.amp.GradScaler("cuda", init_scale=2.0**4)
        assert scaler.is_enabled()  # without a card it warns and disables itself: no CUDA
        x = torch.randn(4, 8, device="cuda")

        def backward():
            opt.zero_grad()
            with torch.autocast(device_type="cuda", dtype=torch.float16):
                loss = lin(x).float().pow(2).mean()
            scaled = scaler.scale(loss)
            assert scaled.is_cuda and torch.allclose(scaled, loss * scaler.get_scale())
            scaled.backward()

        backward()
        lin.weight.grad[0, 0] = math.inf
        before = lin.weight.detach().clone()
        scaler.unscale_(opt)
        found = scaler._found_inf_per_device(opt)  # what unscale_ found, per device
        assert [f.item() for f in found.values()] == [1.0] and all(f.is_cuda for f in found.values())
        scaler.step(opt)
        scaler.update()
        assert torch.equal(lin.weight.detach(), before) and scaler.get_scale() == 8.0  # skipped, the scale halved

        backward()
        grad = lin.weight.grad.clone()
        scaler.unscale_(opt)
        torch.testing.assert_close(lin.weight.grad, grad / 8)  # the true gradient, ready for clipping
        scaler.step(opt)
        scaler.update()
        assert not torch.equal(lin.weight.detach(), before) and scaler.get_scale() == 8.0


def test_softprompt_trains_in_float16_through_the_grad_scaler_on_a_t4():
    with SimulatedAccelerator(card="T4") as accel:
        model = tiny_model("llama").to(resolve_dtype("auto", "cuda")).to("cuda")
        assert model.dtype == torch.float16
        config = sp.PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4, seed=0)
        pm = sp.get_prompt_model(model, config, tokenizer=tiny_tokenizer())
        assert Precision(pm).scaler is not None and Precision(pm).scaler.is_enabled()
        history = sp.train(pm, tiny_tokenizer(), sp.load_task("sentiment_movies"), steps=3, batch_size=4,
                           progress=False, max_length=48)
        weight = pm.prompt_encoder.embedding.weight
        assert all(math.isfinite(v) for _, v in history.loss)
        assert weight.dtype == torch.float32 and accel.on_accelerator(weight)


@pytest.mark.parametrize("card", sorted(EXPECTED))
def test_kernelize_gets_the_cards_answers_and_falls_back(card, tmp_path):
    """transformers (>= 5.25) loads with ``use_kernels=True`` and ``model.train()`` then runs kernels'
    ``kernelize`` for the parameters' device: on "cuda" it asks the compute capability, which without a card
    raises *Torch not compiled with CUDA enabled*. With the card it is answered and, the kernel being absent,
    kernelize keeps the model's own forward.

    The mapping is a local kernel that is not on disk, not transformers' default hub mapping: offline (as the
    tests run), kernels 0.19 raises ``ValueError`` (*Version 2 of 'kernels-community/rotary' is not available
    in the local cache*) for a hub kernel missing from the cache, on a real GPU too, instead of falling back.
    """
    kernels = pytest.importorskip("kernels")
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, head_dim=8)
    LlamaForCausalLM(config).save_pretrained(tmp_path / "model")
    absent = kernels.LocalLayerRepository(tmp_path / "no_kernel_here", layer_name="LlamaRMSNorm")

    def kernelize(model):
        with kernels.use_kernel_mapping({"RMSNorm": {"cuda": absent}}, inherit_mapping=False):
            for mode in (kernels.Mode.TRAINING, kernels.Mode.INFERENCE):
                kernels.kernelize(model, mode=mode, use_fallback=kernels.KernelizeFallback.ALL)

    with SimulatedAccelerator(card=card) as accel:
        model = LlamaForCausalLM.from_pretrained(tmp_path / "model", use_kernels=True)
        model.to("cuda")
        asked, capability = [], torch.cuda.get_device_capability
        torch.cuda.get_device_capability = lambda device=None: asked.append(device) or capability(device)
        try:
            kernelize(model)
        finally:
            torch.cuda.get_device_capability = capability
        assert asked, "kernelize did not ask the compute capability"
        assert accel.on_accelerator(next(model.parameters()))
        assert model(torch.tensor([[1, 2, 3]], device="cuda")).logits.is_cuda
    with SimulatedAccelerator():  # no card: the question kernelize asks has no answer
        model.to("cuda")
        with pytest.raises((AssertionError, RuntimeError), match="not compiled with CUDA"):
            kernelize(model)

"""Exercise 01.3 (★★): centroid_prompt(E, T), the mean of all vocabulary rows copied into each of the T slots."""

import torch
from otter.test_files import test_case

from softprompt.exercises import fresh_generator, notebook_needs, require, same_shape

OK_FORMAT = False
name = "01.3"
points = 3

CALL = "centroid_prompt(E, T)"


def _centroid(E):
    """The table's centroid, in float64: a weighted sum of the rows with weight 1/V each."""
    weights = torch.full((E.shape[0],), 1 / E.shape[0], dtype=torch.float64, device=E.device)  # (V,)
    return (weights @ E.double()).float()  # (d,)


def _every_slot_is(got, E, T, case):
    centroid = _centroid(E)  # (d,)
    got = same_shape(CALL, got, (T, centroid.shape[0]), "T slots of d numbers each")
    got = got.detach().to(centroid.device, torch.float32)
    atol = 1e-5 * float(E.abs().max())  # float32 summation order, relative to the table's entries
    right = torch.isclose(got, centroid.expand_as(got), atol=atol, rtol=1e-4).all(-1)  # (T,)
    if right.all():
        return
    wrong = (~right).nonzero()[:, 0].tolist()
    i = wrong[0]
    cos = torch.nn.functional.cosine_similarity(got[i], centroid, dim=0)
    raise AssertionError(
        f"{case}: {len(wrong)} of {T} slots are not the centroid of E, the mean of its V rows (slots {wrong}). "
        f"Slot {i} has norm {float(got[i].norm()):.4g} and cosine {float(cos):.4f} with the centroid, "
        f"whose norm is {float(centroid.norm()):.4g}")


@test_case(points=1)
def test_one_row_per_slot(centroid_prompt, model):
    centroid_prompt = require("centroid_prompt", centroid_prompt)
    E = torch.randn(50, 6, generator=fresh_generator())  # (V=50, d=6)
    for T in (8, 3):
        same_shape(f"{CALL} for a table E of shape (50, 6) and T={T}", centroid_prompt(E, T), (T, 6),
                   "T slots of d numbers each")


@test_case(points=1)
def test_the_centroid_of_any_table(centroid_prompt):
    centroid_prompt = require("centroid_prompt", centroid_prompt)
    gen = fresh_generator()
    V, d, T = int(torch.randint(20, 200, (), generator=gen)), int(torch.randint(4, 16, (), generator=gen)), 5
    E = torch.randn(V, d, generator=gen) * torch.rand(V, 1, generator=gen) * 3 + torch.randn(d, generator=gen)
    _every_slot_is(centroid_prompt(E, T), E, T, f"a random table E of shape ({V}, {d}), T={T}")


@test_case(points=1)
def test_the_centroid_of_the_model(centroid_prompt, model):
    centroid_prompt = require("centroid_prompt", centroid_prompt)
    notebook_needs(model=model)
    E = model.get_input_embeddings().weight.detach().float()  # (V, d)
    T = int(torch.randint(4, 12, (), generator=fresh_generator()))
    _every_slot_is(centroid_prompt(E, T), E, T, f"the model's table E {tuple(E.shape)}, T={T}")

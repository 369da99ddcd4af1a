"""The batch key: one text for what jobs must share to run together, the same from JobParams and their JSON."""

from __future__ import annotations

import pytest

from jobspec import JobParams, batch_key, parse_prompts

BASE = JobParams(prompts=parse_prompts("a wooden banana temple"))


def test_the_key_is_the_same_from_the_parameters_and_their_stored_json() -> None:
    assert batch_key(BASE) == batch_key(BASE.to_json())
    assert batch_key(BASE) == "512x512/32/24:vqgan_imagenet_f16_16384/18:ViT-B-32-quickgelu/6:openai"
    assert batch_key({}) == batch_key(BASE)  # a stored job without the fields has JobParams' defaults


def test_what_each_job_has_of_its_own_leaves_the_key_alone() -> None:
    other = BASE.with_changes(prompts=parse_prompts("a marble temple:2"), seed=99, steps=50, lr=0.3, alpha=1.0,
                              cut_pow=2.0, init_weight=0.5)
    assert batch_key(other) == batch_key(BASE)


@pytest.mark.parametrize("change", [{"model": "wikiart_16384"}, {"clip_model": "ViT-B-16"},
                                    {"clip_pretrained": "laion2b_s34b_b88k"}, {"width": 256}, {"height": 256},
                                    {"cutn": 64}])
def test_any_shared_field_that_differs_makes_another_key(change: dict) -> None:
    assert batch_key(BASE.with_changes(**change)) != batch_key(BASE)


def test_names_with_the_separators_in_them_cannot_pass_for_other_names() -> None:
    one = BASE.with_changes(model="a/1:b", clip_model="c")
    two = BASE.with_changes(model="a", clip_model="b/1:c")
    assert batch_key(one) != batch_key(two)

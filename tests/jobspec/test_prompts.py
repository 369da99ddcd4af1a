import math

import pytest

from jobspec import JobParams, ParamError, Prompt, PromptError, parse_noise_prompts, parse_prompts
from jobspec.params import parse_size


def test_prompts_split_on_bars_with_weights_and_stops() -> None:
    prompts = parse_prompts("a temple | trending on artstation:0.5 | blurry:-1:0.9")
    assert prompts == (
        Prompt("a temple", 1.0, None),
        Prompt("trending on artstation", 0.5, None),
        Prompt("blurry", -1.0, 0.9),
    )


def test_a_colon_followed_by_words_stays_in_the_text() -> None:
    assert parse_prompts("time: midnight")[0] == Prompt("time: midnight")


@pytest.mark.parametrize(
    "source, prompt",
    [
        ("time: 12 o'clock", Prompt("time: 12 o'clock")),
        ("cat:1:x", Prompt("cat:1:x")),  # a word after the numbers makes them text
        ("a:b:0.5", Prompt("a:b", 0.5)),
        ("a:1:2:3", Prompt("a:1", 2.0, 3.0)),  # only the last two numbers are weight and stop
    ],
)
def test_only_numbers_at_the_end_are_weight_and_stop(source: str, prompt: Prompt) -> None:
    assert parse_prompts(source) == (prompt,)


@pytest.mark.parametrize("source", ["", "   ", "|", " | | "])
def test_empty_prompts_and_bare_separators_are_refused(source: str) -> None:
    with pytest.raises(PromptError, match="empty"):
        parse_prompts(source)


@pytest.mark.parametrize("source", ["cat:nan", "cat:inf", "cat:-inf", "cat:1:nan"])
def test_non_finite_numbers_are_refused(source: str) -> None:
    with pytest.raises(PromptError, match="finite"):
        parse_prompts(source)


def test_absurd_weights_and_zero_weights_are_refused() -> None:
    with pytest.raises(PromptError, match="too large"):
        parse_prompts("cat:1e9")
    with pytest.raises(PromptError, match="weight 0"):
        parse_prompts("cat:0")


def test_a_weight_without_text_is_refused() -> None:
    with pytest.raises(PromptError, match="no text"):
        parse_prompts(":0.5")


def test_too_many_and_too_long_prompts_are_refused() -> None:
    with pytest.raises(PromptError, match="at most"):
        parse_prompts(" | ".join(["cat"] * 17))
    with pytest.raises(PromptError, match="under"):
        parse_prompts("x" * 10_000_000)


def test_noise_prompts_take_a_seed_and_optional_weight() -> None:
    assert [(n.seed, n.weight) for n in parse_noise_prompts("12:0.5 | 7")] == [(12, 0.5), (7, 1.0)]
    with pytest.raises(PromptError, match="seed"):
        parse_noise_prompts("abc:1")


def test_params_round_trip_through_json() -> None:
    params = JobParams(prompts=parse_prompts("a | b:-0.5:0.8"), seed=42, width=256, height=128).validate()
    assert JobParams.from_json(params.to_json()) == params


@pytest.mark.parametrize(
    "change, message",
    [
        ({"width": 500}, "multiple of 16"),
        ({"steps": -1}, "steps must be between"),
        ({"cutn": 0}, "cutn must be between"),
        ({"lr": math.nan}, "finite"),
        ({"steps": 1.5}, "whole number"),
        ({"steps": True}, "must be a number"),
    ],
)
def test_out_of_range_parameters_name_the_field_and_range(change: dict, message: str) -> None:
    with pytest.raises(ParamError, match=message):
        JobParams(prompts=parse_prompts("cat"), **change).validate()


def test_unknown_json_fields_are_refused() -> None:
    with pytest.raises(ParamError, match="Unknown job parameters"):
        JobParams.from_json({"prompts": [], "colour": "red"})


def test_sizes_parse_as_width_by_height() -> None:
    assert parse_size("512x384") == (512, 384)
    assert parse_size("256") == (256, 256)
    with pytest.raises(ParamError):
        parse_size("big")

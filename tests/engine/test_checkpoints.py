"""Checkpoint bytes: a job's state comes back whole, and anything else (torn, corrupt, random, a pickle,
another job's or another shape's, another format) is refused with one exception type and a reason."""

from __future__ import annotations

import hashlib
import io
import pickle
import random

import pytest
import torch
from safetensors.torch import save as save_tensors

from engine.checkpoints import FORMAT_VERSION, MAGIC, CheckpointError, decode, encode, params_digest, shape_of
from engine.jobstate import JobState
from jobspec import JobParams, parse_prompts

PARAMS = JobParams(prompts=parse_prompts("a lighthouse | fog:-0.5"), width=64, height=32, steps=50, cutn=8, seed=5)
EXPLODED: list[str] = []


def state(*, step: int = 20, channels: int = 4, h: int = 2, w: int = 4, z_init: bool = False) -> JobState:
    g = torch.Generator().manual_seed(step)
    shape = (channels, h, w)
    return JobState(step=step, z=torch.randn(shape, generator=g), m=torch.randn(shape, generator=g),
                    v=torch.rand(shape, generator=g), z_init=torch.randn(shape, generator=g) if z_init else None)


def envelope(payload: bytes, version: int = FORMAT_VERSION) -> bytes:
    """Bytes framed as a checkpoint of ``version`` with a valid checksum: what gets past the first checks."""
    return MAGIC + version.to_bytes(4, "big") + hashlib.sha256(payload).digest() + payload


def refused(data: object, params: JobParams = PARAMS) -> str:
    with pytest.raises(CheckpointError) as caught:
        decode(data, params)  # type: ignore[arg-type]
    reason = str(caught.value)
    assert reason and "\n" not in reason
    return reason


def test_a_state_comes_back_whole() -> None:
    for kept, params in ((state(), PARAMS), (state(z_init=True), PARAMS.with_changes(init_weight=1.5))):
        back = decode(encode(kept, params), params)
        assert back.step == kept.step
        for name, tensor in kept.tensors().items():
            assert torch.equal(back.tensors()[name], tensor)
        assert set(back.tensors()) == set(kept.tensors())


def test_a_512x512_checkpoint_is_its_three_latents_and_a_small_header() -> None:
    params = JobParams(prompts=parse_prompts("a temple"), width=512, height=512)
    size = len(encode(state(channels=256, h=32, w=32), params))
    assert 3 * 2**20 < size < 3 * 2**20 + 1024, size  # z, m, v: 1 MiB each in float32


def test_the_same_job_may_go_on_to_more_steps_but_not_from_past_its_end() -> None:
    data = encode(state(step=20), PARAMS)
    assert decode(data, PARAMS.with_changes(steps=500)).step == 20
    assert "made 20 steps of the job's 20" in refused(data, PARAMS.with_changes(steps=20))


def test_torn_empty_and_random_bytes_are_refused() -> None:
    data = encode(state(), PARAMS)
    assert "too short" in refused(b"")
    for cut in (1, 10, 43, 44, 45, 100, len(data) // 2, len(data) - 1):
        refused(data[:cut])
    rng = random.Random(7)
    for size in (3, 44, 100, 5000, len(data)):
        refused(bytes(rng.getrandbits(8) for _ in range(size)))
    refused(MAGIC + bytes(rng.getrandbits(8) for _ in range(200)))
    for not_bytes in ("a checkpoint", None, 12):
        refused(not_bytes)


def test_every_flipped_bit_is_caught() -> None:
    data = encode(state(), PARAMS)
    rng = random.Random(3)
    positions = list(range(48)) + rng.sample(range(48, len(data)), 60) + [len(data) - 1]
    for position in positions:
        damaged = bytearray(data)
        damaged[position] ^= 1 << rng.randrange(8)
        refused(bytes(damaged))


def explode(what: str) -> None:
    EXPLODED.append(what)


class Bomb:
    def __reduce__(self):
        return (explode, ("unpickled",))


def test_a_pickle_or_a_torch_file_is_refused_without_being_unpickled() -> None:
    bomb = pickle.dumps(Bomb())
    buffer = io.BytesIO()
    torch.save({"z": torch.zeros(2), "bomb": Bomb()}, buffer)
    for data in (bomb, buffer.getvalue(), envelope(bomb), envelope(buffer.getvalue())):
        refused(data)
    assert EXPLODED == []


def safetensors_checkpoint(tensors: dict[str, torch.Tensor], **metadata: str) -> bytes:
    base = {"format": str(FORMAT_VERSION), "shape": shape_of(PARAMS), "step": "20", "params": params_digest(PARAMS)}
    return envelope(save_tensors(tensors, metadata={**base, **metadata}))


def test_a_checkpoint_of_another_shape_job_or_format_is_refused_with_its_reason() -> None:
    data = encode(state(), PARAMS)
    assert "another model, size or cutouts" in refused(data, PARAMS.with_changes(width=32))
    assert "another model, size or cutouts" in refused(data, PARAMS.with_changes(cutn=16))
    assert "other parameters" in refused(data, PARAMS.with_changes(seed=6))
    assert "other parameters" in refused(data, PARAMS.with_changes(prompts=parse_prompts("a forest")))
    payload = data[44:]
    assert "older format (0)" in refused(envelope(payload, version=0))
    assert "newer format" in refused(envelope(payload, version=FORMAT_VERSION + 1))
    assert "other parameters" in refused(data, PARAMS.with_changes(init_weight=1.0))


def test_well_framed_checkpoints_with_bad_insides_are_refused() -> None:
    good = state().tensors()
    assert "not finite" in refused(safetensors_checkpoint({**good, "z": torch.full((4, 2, 4), float("nan"))}))
    assert "negative" in refused(safetensors_checkpoint({**good, "v": -good["v"]}))
    assert "float32" in refused(safetensors_checkpoint({**good, "m": good["m"].double()}))
    assert "(4, 2, 3)" in refused(safetensors_checkpoint({**good, "m": good["m"][:, :, :3].contiguous()}))
    assert "needs ['m', 'v', 'z']" in refused(safetensors_checkpoint({"z": good["z"]}))
    assert "needs ['m', 'v', 'z']" in refused(safetensors_checkpoint({**good, "z_init": good["z"].clone()}))
    assert "not a number" in refused(safetensors_checkpoint(good, step="-3"))
    assert "not a number" in refused(safetensors_checkpoint(good, step="9" * 40))
    assert "another format" in refused(safetensors_checkpoint(good, format="0"))
    huge_header = (2**62).to_bytes(8, "little") + b"{}"
    refused(envelope(huge_header))
    refused(envelope(len(b"[1, 2]").to_bytes(8, "little") + b"[1, 2]"))

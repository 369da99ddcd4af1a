"""A job's state (engine.jobstate.JobState) as bytes to keep, and back: for resume after a crash or stop.

Layout: ``MAGIC`` (8 bytes), the format version (4 bytes, big-endian), the SHA-256 of the rest (32 bytes),
then a safetensors file: the tensors z, m, v (and z_init for jobs with an ``init_weight``) as raw float32,
and text metadata (the batch shape it belongs to, the step, a digest of the job's parameters). Nothing is
unpickled: safetensors reads a JSON header and raw numbers, so hostile bytes can at worst be refused.

Every reason a checkpoint can't be used (torn, corrupt, another job's, another shape, an older format)
raises CheckpointError with a sentence; the caller then starts the job from step 0.
"""

from __future__ import annotations

import hashlib
import json
import struct

import torch
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors

from engine.jobstate import JobState
from jobspec import JobParams, batch_key

MAGIC = b"VQBOTCKP"
FORMAT_VERSION = 1
_HEAD = struct.Struct(">8sI32s")  # magic, version, SHA-256 of the payload
_NAMES = ("z", "m", "v", "z_init")


class CheckpointError(ValueError):
    """A checkpoint that cannot be resumed; the message says why, in one sentence."""


def shape_of(params: JobParams) -> str:
    """The batch a job's checkpoint belongs to: its batch key (models, size, cutouts)."""
    return batch_key(params)


def params_digest(params: JobParams) -> str:
    """What a checkpoint's numbers depend on besides its shape: the parameters, but neither the step budget
    (a job may go on to more steps than it was started with) nor ``extra`` (what the bot keeps beside them)."""
    settings = params.to_json()
    settings.pop("steps", None)
    settings.pop("extra", None)
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()


def encode(state: JobState, params: JobParams) -> bytes:
    """The bytes of a job's state; ``params`` are the job's (they name its batch shape)."""
    problem = state.problem()
    if problem is not None:
        raise ValueError(f"this state cannot be kept: {problem}")
    metadata = {"format": str(FORMAT_VERSION), "shape": shape_of(params), "step": str(state.step),
                "params": params_digest(params)}
    tensors = {name: t.detach().to("cpu", torch.float32, copy=True) for name, t in state.tensors().items()}
    payload = save_tensors(tensors, metadata=metadata)
    return _HEAD.pack(MAGIC, FORMAT_VERSION, hashlib.sha256(payload).digest()) + payload


def decode(data: bytes, params: JobParams) -> JobState:
    """The state kept in ``data`` for the job ``params``; CheckpointError for anything that is not a whole,
    intact checkpoint of this format, of this job and its batch shape, with steps left to make."""
    try:
        data = bytes(data)
    except Exception as e:  # not bytes at all
        raise CheckpointError(f"a checkpoint is bytes, not {type(data).__name__}") from e
    if len(data) < _HEAD.size:
        raise CheckpointError(f"the checkpoint is {len(data)} bytes, too short to be one (torn or empty)")
    magic, version, digest = _HEAD.unpack_from(data)
    if magic != MAGIC:
        raise CheckpointError("these bytes are not a vqbot checkpoint")
    if version != FORMAT_VERSION:
        age = "an older" if version < FORMAT_VERSION else "a newer"
        raise CheckpointError(f"the checkpoint is of {age} format ({version}); this engine reads format "
                              f"{FORMAT_VERSION}")
    payload = data[_HEAD.size:]
    if hashlib.sha256(payload).digest() != digest:
        raise CheckpointError("the checkpoint's checksum does not match its contents (torn or corrupt)")
    state = _parse(payload, params)
    problem = state.problem()
    if problem is None and state.step >= params.steps:
        problem = f"it has made {state.step} steps of the job's {params.steps}"
    if problem is not None:
        raise CheckpointError(f"the checkpoint cannot be resumed: {problem}")
    return state


def _parse(payload: bytes, params: JobParams) -> JobState:
    try:
        tensors = load_tensors(payload)
        metadata = _metadata(payload)
    except CheckpointError:
        raise
    except Exception as e:  # safetensors' own errors, whatever a damaged header makes of them
        raise CheckpointError(f"the checkpoint's contents cannot be read ({type(e).__name__})") from e
    if metadata.get("format") != str(FORMAT_VERSION):
        raise CheckpointError("the checkpoint's header names another format than its envelope")
    if metadata.get("shape") != shape_of(params):
        raise CheckpointError(f"the checkpoint belongs to a batch of another model, size or cutouts "
                              f"({metadata.get('shape')}), not this job's ({shape_of(params)})")
    if metadata.get("params") != params_digest(params):
        raise CheckpointError("the checkpoint was made for other parameters (prompts, seed or settings)")
    step = metadata.get("step", "")
    if not step.isdigit() or len(step) > 9:
        raise CheckpointError(f"the checkpoint's step count {step[:20]!r} is not a number of steps")
    names = set(tensors)
    wanted = {"z", "m", "v"} | ({"z_init"} if params.init_weight else set())
    if names != wanted:
        raise CheckpointError(f"the checkpoint holds {sorted(names)}, a job like this one needs {sorted(wanted)}")
    return JobState(step=int(step), z=tensors["z"], m=tensors["m"], v=tensors["v"], z_init=tensors.get("z_init"))


def _metadata(payload: bytes) -> dict[str, str]:
    """The safetensors header's text metadata (load_tensors checked the header is whole JSON)."""
    (size,) = struct.unpack_from("<Q", payload)
    header = json.loads(payload[8:8 + size])
    metadata = header.get("__metadata__") if isinstance(header, dict) else None
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise CheckpointError("the checkpoint's header has no metadata")
    return metadata

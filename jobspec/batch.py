"""The batch key: what jobs must share to be stepped together in one batch.

Two jobs run in one batch only when they use the same VQGAN and CLIP models and
make pictures of one size with one cutout count; everything else (prompts,
seeds, learning rates, step counts) is per job. The key is defined here once:
the store keeps it per job (a column, written at enqueue) so that a claim can
take only jobs of one key, the worker groups and tops up its batches by it, and
the engine refuses a job of another key.

The text is stable and unambiguous: numbers first, then each name prefixed by
its length, e.g. ``512x512/32/24:vqgan_imagenet_f16_16384/18:ViT-B-32-quickgelu/6:openai``.
The store's migrations compute the same text in SQL for rows older than the
column (``db/migrations.py``, ``db/postgres/schema.py``), so keep the two in step.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from jobspec.params import DEFAULT_CLIP, DEFAULT_CLIP_PRETRAINED, DEFAULT_VQGAN, JobParams

# The parameters of the key and their defaults where a stored job's JSON lacks them, in key order.
KEY_NUMBERS = (("width", 512), ("height", 512), ("cutn", 32))
KEY_NAMES = (("model", DEFAULT_VQGAN), ("clip_model", DEFAULT_CLIP), ("clip_pretrained", DEFAULT_CLIP_PRETRAINED))


def batch_key(params: JobParams | Mapping[str, Any]) -> str:
    """The batch key of a job, from its JobParams or their JSON form (``JobParams.to_json``):
    both give the same text. Missing or null values count as JobParams' defaults."""
    values = params.to_json() if isinstance(params, JobParams) else params
    width, height, cutn = (_text(values.get(name), default) for name, default in KEY_NUMBERS)
    names = "/".join(f"{len(text)}:{text}" for text in (_text(values.get(name), default) for name, default in KEY_NAMES))
    return f"{width}x{height}/{cutn}/{names}"


def _text(value: object, default: object) -> str:
    if value is None:
        value = default
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))

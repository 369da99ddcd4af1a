"""Jobs as the rest of vqbot sees them, and the checks a new job must pass.

``params`` is opaque to the store except for ``steps``, ``width``, ``height``,
``cutn`` and ``model``: the store reads them to compute the job's cost
(steps x pixels x cutouts); ``jobspec.batch_key`` reads the job's batch key from them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

# The value checks live in db.checks; these names stay importable from here.
from db.checks import MAX_LEASE_S as MAX_LEASE_S
from db.checks import MAX_SNOWFLAKE as MAX_SNOWFLAKE
from db.checks import MAX_WORKER_CHARS as MAX_WORKER_CHARS
from db.checks import check_bytes as check_bytes
from db.checks import check_id as check_id
from db.checks import check_int as check_int
from db.checks import check_json, check_text, describe, has_surrogate
from db.checks import check_lease as check_lease
from db.checks import check_seconds as check_seconds
from db.checks import check_worker as check_worker
from db.errors import InvalidInput
from db.states import PARENTLESS_RELATIONS, JobKind, JobState, Relation
from jobspec.batch import batch_key

MAX_PROMPT_CHARS = 2000
MAX_PARAMS_BYTES = 64 * 1024
MAX_MODEL_CHARS = 100
MAX_ERROR_CHARS = 2000
MAX_BATCH = 64
MAX_PREVIEW_BYTES = 2 * 1024 * 1024
MAX_RESULT_BYTES = 64 * 1024 * 1024
# A checkpoint holds a job's latent and Adam's two moments (plus the init latent when init_weight > 0):
# 3-4 MiB in fp32 at 512x512 (32x32x256 each), 12-16 MiB at 1024x1024 and 48-64 MiB at the 2048x2048 the
# parameters allow. 64 MiB covers every size with room for the engine's own header.
MAX_CHECKPOINT_BYTES = 64 * 1024 * 1024
PRIORITY_RANGE = (-1000, 1000)
ATTEMPTS_RANGE = (1, 20)
# Sanity bounds, far beyond any guild's limits (those refuse with LimitExceeded).
STEPS_RANGE = (1, 100_000)
SIDE_RANGE = (1, 16_384)
CUTN_RANGE = (1, 4096)
MESSAGE_COLUMNS = {"card": "message_id", "result": "result_message_id"}
"""``set_message``'s kinds: the Job field (and the column, in every backend) each one sets."""
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


@dataclass(frozen=True)
class NewJob:
    """A job as the bot submits it."""

    guild_id: int
    channel_id: int
    user_id: int
    prompt: str
    params: dict[str, Any]
    seed: int
    parent_id: int | None = None
    relation: Relation | str | None = None
    priority: int = 0
    max_attempts: int = 3


@dataclass(frozen=True)
class Job:
    """One row of the job table. Timestamps are aware UTC datetimes.

    ``version`` is the store-wide change counter at this job's last change;
    ``params`` is a fresh dict per Job: treat it as read-only. ``not_before``: a queued job
    that failed waits until then before it is claimed again (``error`` says why it failed).
    ``resumed_from_step``: the step of the checkpoint the current (or last) attempt started
    from, None when it started from step 0.
    """

    id: int
    guild_id: int
    channel_id: int
    user_id: int
    message_id: int | None
    result_message_id: int | None
    prompt: str
    params: dict[str, Any]
    state: JobState
    priority: int
    cost: int
    attempts: int
    max_attempts: int
    step: int
    total_steps: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    error: str | None
    parent_id: int | None
    relation: Relation | None
    seed: int
    steps_per_s: float | None
    gpu_seconds: float
    delivered: bool
    version: int
    worker: str | None = None
    lease_expires_at: datetime | None = field(default=None, repr=False)
    group_id: int | None = None
    """The first job's id of the group (a grid of candidates) this job was queued in, or None."""
    not_before: datetime | None = None
    resumed_from_step: int | None = None

    @property
    def kind(self) -> JobKind:
        """What the job makes (the ``kind`` column, generated from ``params["kind"]``)."""
        return job_kind(self.params)

    @property
    def model(self) -> str:
        return str(self.params["model"])

    @property
    def width(self) -> int:
        return int(self.params["width"])

    @property
    def height(self) -> int:
        return int(self.params["height"])

    @property
    def cutn(self) -> int:
        return int(self.params["cutn"])

    @property
    def batch_key(self) -> str:
        """What jobs must share to run in one batch (``jobspec.batch_key``); a claim never mixes keys."""
        return batch_key(self.params)

    @property
    def cancel_requested(self) -> bool:
        return self.state is JobState.CANCELLING


@dataclass(frozen=True)
class Claim:
    """A job a worker now holds, and the lease token that proves it."""

    job: Job
    token: str


@dataclass(frozen=True)
class ProgressAck:
    """What ``report_progress`` tells the worker.

    ``ok`` is False when the worker no longer holds the job (lease lost):
    it must stop and not report again. ``cancel`` is True when the user asked
    to cancel: the worker should stop and call ``confirm_cancelled``.
    Truthiness is ``ok``, so ``if not await store.report_progress(...)`` works.
    """

    ok: bool
    cancel: bool = False

    def __bool__(self) -> bool:
        return self.ok


@dataclass(frozen=True)
class CheckedJob:
    """A NewJob that passed ``check_new_job``, with what the store derives from it."""

    new: NewJob
    prompt: str
    params_json: str
    relation: Relation | None
    model: str
    width: int
    height: int
    steps: int
    cutn: int
    kind: JobKind = JobKind.IMAGINE

    @property
    def cost(self) -> int:
        """Work units: steps x pixels x cutouts."""
        return self.steps * self.width * self.height * self.cutn

    @property
    def batch_key(self) -> str:
        return batch_key(self.new.params)


def check_new_job(new: NewJob) -> CheckedJob:
    """Validate everything about a new job that does not depend on the guild.

    Raises InvalidInput naming the bad field; never touches the database.
    """
    if not isinstance(new, NewJob):
        raise InvalidInput("job", f"A job must be a NewJob, got {type(new).__name__}.")
    check_id("guild_id", new.guild_id)
    check_id("channel_id", new.channel_id)
    check_id("user_id", new.user_id)
    check_int("seed", new.seed, 0, MAX_SNOWFLAKE)
    check_int("priority", new.priority, *PRIORITY_RANGE)
    check_int("max_attempts", new.max_attempts, *ATTEMPTS_RANGE)
    prompt = check_prompt(new.prompt)
    relation = check_relation(new.parent_id, new.relation)
    params = new.params
    if not isinstance(params, dict):
        raise InvalidInput("params", "params must be a JSON object with string keys.")
    params_json = check_json("params", params, max_bytes=MAX_PARAMS_BYTES)
    if "seed" in params and params["seed"] != new.seed:
        raise InvalidInput(
            "params.seed",
            f"params.seed ({describe(params['seed'])}) differs from seed ({new.seed}).",
        )
    model = params.get("model")
    if not isinstance(model, str) or not 0 < len(model.strip()) <= MAX_MODEL_CHARS:
        raise InvalidInput(
            "params.model", f"params.model must be a model name, got {describe(model)}."
        )
    check_text("params.model", model, most=MAX_MODEL_CHARS, printable=True)
    kind = params.get("kind", JobKind.IMAGINE.value)
    if kind not in set(JobKind):
        valid = ", ".join(k.value for k in JobKind)
        raise InvalidInput("params.kind", f"params.kind must be one of {valid}, got {describe(kind)}.")
    return CheckedJob(
        new=new,
        prompt=prompt,
        params_json=params_json,
        relation=relation,
        model=model,
        width=check_int("params.width", params.get("width"), *SIDE_RANGE),
        height=check_int("params.height", params.get("height"), *SIDE_RANGE),
        steps=check_int("params.steps", params.get("steps"), *STEPS_RANGE),
        cutn=check_int("params.cutn", params.get("cutn"), *CUTN_RANGE),
        kind=JobKind(kind),
    )


def job_kind(params: dict[str, Any]) -> JobKind:
    """A job's kind from its params (stored params were checked by ``check_new_job``)."""
    kind = params.get("kind")
    return JobKind.IMAGINE if kind is None else JobKind(kind)


def check_prompt(prompt: object) -> str:
    if not isinstance(prompt, str):
        raise InvalidInput("prompt", f"The prompt must be text, got {type(prompt).__name__}.")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise InvalidInput(
            "prompt",
            f"The prompt is {len(prompt)} characters long; the limit is {MAX_PROMPT_CHARS}. "
            "Shorten it and try again.",
        )
    if "\x00" in prompt:
        raise InvalidInput(
            "prompt", "The prompt contains a NUL character. Remove it and try again."
        )
    if has_surrogate(prompt):
        raise InvalidInput(
            "prompt",
            "The prompt contains a broken character (a lone UTF-16 surrogate). "
            "Remove it and try again.",
        )
    stripped = prompt.strip()
    if not stripped:
        raise InvalidInput("prompt", "The prompt is empty. Describe a picture and try again.")
    return stripped


def check_relation(parent_id: int | None, relation: Relation | str | None) -> Relation | None:
    if parent_id is None:
        if relation is None:
            return None
        if isinstance(relation, str) and relation in PARENTLESS_RELATIONS:
            return Relation(relation)
        raise InvalidInput("relation", f"relation {describe(relation)} given without a parent_id.")
    check_id("parent_id", parent_id)
    try:
        return Relation(relation if isinstance(relation, str) else "")
    except ValueError:
        valid = ", ".join(r.value for r in Relation)
        raise InvalidInput(
            "relation", f"relation must be one of {valid} when parent_id is set, got {describe(relation)}."
        ) from None


def storable_error(text: object) -> str:
    """A worker's error text as the store keeps it: cut to ``MAX_ERROR_CHARS`` (the cut marked
    with "…"), lone surrogates (e.g. from a file name that was not UTF-8) as U+FFFD; anything
    but text is InvalidInput."""
    if not isinstance(text, str):
        raise InvalidInput("error", f"error must be text, got {type(text).__name__}.")
    text = _UNSTORABLE.sub("\ufffd", text)
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 1] + "…"

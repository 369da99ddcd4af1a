"""Component custom ids that name a job, so buttons survive restarts.

A button's custom id is ``vq:<action>:<job id>`` (at most 100 characters,
Discord's limit). The bot's ``DynamicItem`` templates can use
``CUSTOM_ID_PATTERN``; ``Store.by_custom_id`` finds the job.
"""

from __future__ import annotations

import re

CUSTOM_ID_PATTERN = r"vq:(?P<action>[a-z][a-z0-9_]{0,31}):(?P<job_id>[1-9][0-9]{0,18})"
_CUSTOM_ID = re.compile(CUSTOM_ID_PATTERN)
MAX_JOB_ID = 2**63 - 1


def custom_id(action: str, job_id: int) -> str:
    """The custom id for ``action`` on a job, e.g. ``custom_id("cancel", 42) == "vq:cancel:42"``."""
    value = f"vq:{action}:{job_id}"
    if not _CUSTOM_ID.fullmatch(value) or parse_custom_id(value) is None:
        raise ValueError(
            f"action must be 1-32 of a-z, 0-9, _ and job_id positive, got {action!r}, {job_id!r}"
        )
    return value


def parse_custom_id(value: str) -> tuple[str, int] | None:
    """(action, job id) from a custom id made by ``custom_id``, else None."""
    match = _CUSTOM_ID.fullmatch(value) if isinstance(value, str) else None
    if match is None or int(match["job_id"]) > MAX_JOB_ID:  # 19 digits may pass 2**63 - 1
        return None
    return match["action"], int(match["job_id"])

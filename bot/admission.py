"""Asking the store to queue a job, and its refusals as the sentences members read.

A job's parameters are a whole :class:`jobspec.JobParams` by the time they get here (uploads
saved, their paths in it); :func:`new_job` serialises them once. The store decides whether
the job is admitted (its checks and the server's limits, in one transaction); the bot only
says what it answered.
"""

from __future__ import annotations

import discord

from bot.errors import UserError
from bot.text import plain
from db import InvalidInput, Job, LimitExceeded, NewJob, Relation, Store
from db.jobs import check_new_job
from db.limits import check_policy
from jobspec import JobParams


def new_job(params: JobParams, *, guild_id: int, channel_id: int, user_id: int, parent_id: int | None = None,
            relation: Relation | None = None, prompt: str | None = None) -> NewJob:
    """The job the store is asked to queue: ``params`` as JSON, their prompt (or ``prompt``, the
    title of a job without text prompts) and seed beside them."""
    return NewJob(guild_id=guild_id, channel_id=channel_id, user_id=user_id, prompt=prompt or params.prompt_text,
                  params=params.to_json(), seed=params.seed, parent_id=parent_id, relation=relation)


def refusal(exc: InvalidInput | LimitExceeded) -> str:
    """The store's refusal as the member reads it: its sentence, and for a server limit the
    setting and when it frees up."""
    if isinstance(exc, LimitExceeded):
        when = f", frees up {discord.utils.format_dt(exc.retry_at, 'R')}" if exc.retry_at else ""
        return f"{plain(exc.message)} (limit: `{exc.limit}`{when})"
    return plain(exc)


async def enqueue(store: Store, new: NewJob) -> Job:
    """Queue ``new``; UserError with the store's refusal otherwise."""
    try:
        return await store.enqueue(new)
    except (InvalidInput, LimitExceeded) as exc:
        raise UserError(refusal(exc)) from None


async def enqueue_group(store: Store, news: list[NewJob]) -> list[Job]:
    """Queue ``news`` as one group (a grid's candidates), all or none, each charged to the
    server's limits as the job it is; UserError with the store's refusal otherwise."""
    try:
        return await store.enqueue_many(news, group=True)
    except (InvalidInput, LimitExceeded) as exc:
        raise UserError(refusal(exc)) from None


async def precheck(store: Store, new: NewJob) -> None:
    """Refuse early what the store would refuse for the job itself or the server's rules (not
    for what the queue holds), before anything is downloaded; UserError otherwise.

    The store runs these checks again when it queues the job. Until it answers this question
    itself (a read-only ``Store.check_admission(new)``), this asks its two checks directly.
    """
    try:
        check_policy(await store.settings(new.guild_id), check_new_job(new))
    except (InvalidInput, LimitExceeded) as exc:
        raise UserError(refusal(exc)) from None

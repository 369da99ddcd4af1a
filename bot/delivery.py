"""The progress and delivery loop: database changes become card edits and result messages.

One task per bot. It reads ``store.changed_since(version)``, keeps only the
newest state of each job (frames are coalesced), edits each card through the
bot's own channel-message calls (never the 15-minute interaction token) at
most once per ``edit_interval_s``, backs off on 429 and 5xx, and posts the
finished picture in a new message that mentions its owner. A job counts as
delivered only once its result message went out, so a restart or an outage
delays delivery but never loses it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import io
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import discord

from bot import cards, mentions, own_reactions
from bot.pictures import fit_upload
from db.jobs import Job
from db.settings import GuildSettings
from db.states import JobState

if TYPE_CHECKING:
    from bot.client import MessageChannel, VQBot

log = logging.getLogger(__name__)

QUEUED_REFRESH_LIMIT = 10
CHANGES_PAGE = 500  # changed jobs read at a time; a pass reads pages until one comes back short
BACKLOG_PAGE = 100  # finished, undelivered jobs read at a time, until a page comes back short


@dataclass
class CardState:
    """What the loop remembers about one job's card between passes."""

    next_edit_at: float = 0.0
    blocked_until: float = 0.0
    backoff: float = 0.0
    shown_step: int = -1
    replaced: bool = False


def discord_now() -> float:
    """Seconds on Discord's clock (discord.utils.utcnow), the one simcord virtualises in tests."""
    return discord.utils.utcnow().timestamp()


def jump_url(job: Job, message_id: int) -> str:
    return f"https://discord.com/channels/{job.guild_id}/{job.channel_id}/{message_id}"


def result_nonce(job: Job) -> str:
    """The same for every post of one job's result, so Discord keeps only the first one."""
    return f"vqr-{job.id}"  # Discord takes 25 characters at most


def retryable(exc: discord.HTTPException) -> bool:
    return exc.status == 429 or exc.status >= 500


class Delivery:
    def __init__(self, bot: VQBot) -> None:
        self.bot = bot
        self.config = bot.config
        self.version: int | None = None  # None until the first pass reads the store's version
        self.backlog = True  # jobs that ended before the start (or before a lost pass) may wait
        self.backlog_seen: set[int] = set()  # ids the backlog already brought this sweep
        self.pending: dict[int, Job] = {}
        self.cards: dict[int, CardState] = {}
        self.finished: set[int] = set()
        self._sleeper: asyncio.Task[None] | None = None
        self._woken = False
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    # ---------------------------------------------------------------- the loop
    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="vqbot-delivery")

    async def stop(self) -> None:
        if self._sleeper is not None:
            self._sleeper.cancel()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def card_posted(self, job_id: int) -> None:
        """A card was just posted: its next edit waits for the cadence like any other."""
        self.cards.setdefault(job_id, CardState()).next_edit_at = discord_now() + self.config.edit_interval_s

    def wake(self) -> None:
        """Ask for a pass soon (the worker calls this after it changed a job)."""
        self._woken = True
        if self._sleeper is not None and not self._sleeper.done():
            self._sleeper.cancel()

    async def _run(self) -> None:
        while True:
            try:
                await self.run_pass()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("delivery pass failed; trying again in %.0f s", self.config.poll_interval_s)
            # A plain sleep in its own task, cancelled by wake(): (simcord parks plain sleeps)
            self._sleeper = asyncio.get_running_loop().create_task(asyncio.sleep(self._next_timeout()))
            if self._woken:
                self._sleeper.cancel()
            self._woken = False
            await asyncio.wait([self._sleeper])

    def _next_timeout(self) -> float:
        now = discord_now()
        timeout = self.config.poll_interval_s
        for job_id in self.pending:
            state = self.cards.get(job_id)
            if state is not None:
                due = max(state.blocked_until, state.next_edit_at) - now
                timeout = min(timeout, max(due, 0.0))
        return max(timeout, 0.05)

    async def run_pass(self) -> None:
        """Read what changed and act on every pending job that is due."""
        async with self._lock:
            store = self.bot.store
            if self.version is None:  # first pass: changes from now on; what ended before is the backlog
                self.version = await store.version()
            started_or_ended: set[int] = set()
            while True:
                changed = await store.changed_since(self.version, limit=CHANGES_PAGE)
                for job in changed:
                    self.version = max(self.version, job.version)
                    if job.state.is_terminal and job.delivered and job.id in self.finished:
                        continue  # our own marks (delivered, result message) come back as changes
                    old = self.pending.get(job.id)
                    if (old is None or old.state != job.state) and job.state is not JobState.QUEUED:
                        started_or_ended.add(job.guild_id)
                    self.pending[job.id] = job
                if len(changed) < CHANGES_PAGE:
                    break
            for guild_id in started_or_ended:
                for queued in (await store.queue(guild_id))[:QUEUED_REFRESH_LIMIT]:
                    if queued.state is JobState.QUEUED:
                        self.pending.setdefault(queued.id, queued)
            for job in list(self.pending.values()):
                await self._attend(job)
            await self._drain_backlog()

    async def _drain_backlog(self) -> None:
        """Deliver the jobs that ended while no bot watched, a page of ``store.undelivered()``
        at a time, however many there are.

        Delivered jobs leave ``undelivered()``, so each page brings the next ones. A page is
        read only once the last page's jobs have left ``pending``: jobs held back by a rate
        limit are retried by later passes at their own pace, and the sweep goes on after them.
        A short page is the last; a page that brings nothing new also ends the sweep.
        """
        while self.backlog and not (self.backlog_seen & self.pending.keys()):
            read = await self.bot.store.undelivered(limit=BACKLOG_PAGE)
            page = [job for job in read if job.id not in self.backlog_seen]
            self.backlog = len(read) == BACKLOG_PAGE and len(page) > 0
            for job in page:
                self.backlog_seen.add(job.id)
                self.pending.setdefault(job.id, job)
                await self._attend(self.pending[job.id])
        if not self.backlog:
            self.backlog_seen.clear()

    async def _attend(self, job: Job) -> None:
        state = self.cards.setdefault(job.id, CardState())
        now = discord_now()
        if now < state.blocked_until:
            return
        try:
            if job.state.is_terminal:
                done = await self._finish(job, state)
            else:
                done = await self._update(job, state, now)
        except discord.HTTPException as exc:
            if retryable(exc):
                state.backoff = min(max(state.backoff * 2, self.config.backoff_initial_s), self.config.backoff_max_s)
                state.blocked_until = discord_now() + state.backoff
                log.info("job %s: Discord answered %s; waiting %.0f s", job.id, exc.status, state.backoff)
                return
            # Refused for good (no permission, channel gone, bad request): retrying the same
            # call would only hammer Discord. Wait for the next change at the usual cadence and
            # make sure a finished job's owner hears about it anyway.
            log.warning("job %s: Discord refused a message in channel %s (%s %s: %s); giving up on it",
                        job.id, job.channel_id, exc.status, exc.code, exc.text)
            state.next_edit_at = discord_now() + self.config.edit_interval_s
            await self._undeliverable(job, exc)
            done = True
        if done:
            self.pending.pop(job.id, None)
            if job.state.is_terminal:
                self.cards.pop(job.id, None)
                self.finished.add(job.id)

    # ---------------------------------------------------------------- cards
    def _channel(self, job: Job) -> MessageChannel:
        return self.bot.channel_for(job.channel_id)

    async def _update(self, job: Job, state: CardState, now: float) -> bool:
        """Edit a pending job's card; True when nothing is left to do for this version."""
        if job.message_id is None:
            return True  # the card is still being posted; set_message will bring the job back
        if now < state.next_edit_at:
            return False  # coalesce: the newest version is edited when the slot opens
        settings = await self.bot.guild_settings(job.guild_id)
        spot = None
        if job.state is JobState.QUEUED:
            ahead, eta = await self.bot.store.position(job.id)
            spot = cards.QueueSpot(ahead, eta)
        preview = None
        if job.state is JobState.RUNNING and job.step != state.shown_step:
            stored = await self.bot.store.preview(job.id)
            preview = stored[1] if stored is not None else None
        kwargs: dict[str, Any] = {
            "embed": cards.card_embed(job, spot=spot, with_preview=preview is not None),
            "view": cards.card_view(job, buttons_enabled=settings.buttons_enabled),
        }
        if preview is not None:
            kwargs["attachments"] = [discord.File(io.BytesIO(preview), filename=cards.PREVIEW_NAME)]
        if job.state is JobState.RUNNING and not state.replaced and self._card_too_old(job):
            await self._replace_card(job, kwargs)
            state.replaced = True
        else:
            try:
                await self._channel(job).get_partial_message(job.message_id).edit(**kwargs)
            except discord.NotFound:
                log.info("job %s: card %s is gone; posting a new one", job.id, job.message_id)
                await self._replace_card(job, kwargs, delete_old=False)
        state.next_edit_at = discord_now() + self.config.edit_interval_s
        state.backoff = 0.0
        if preview is not None:
            state.shown_step = job.step
        return True

    def _card_too_old(self, job: Job) -> bool:
        assert job.message_id is not None
        age = (discord.utils.utcnow() - discord.utils.snowflake_time(job.message_id)).total_seconds()
        return age > self.config.card_max_age_s

    async def _replace_card(self, job: Job, kwargs: dict[str, Any], *, delete_old: bool = True) -> discord.Message:
        """Post a fresh card (old cards edit slowly and the original may be gone)."""
        send = dict(kwargs)
        if "attachments" in send:
            send["files"] = send.pop("attachments")
        if send.get("view") is None:
            send.pop("view", None)
        message = await self._channel(job).send(**send)
        old = job.message_id
        await self.bot.store.set_message(job.id, message.id, kind="card")
        own_reactions.add_controls(self.bot, job, message.id, own_reactions.card_actions(job))
        log.info("job %s: new card %s replaces %s", job.id, message.id, old)
        if delete_old and old is not None:
            try:
                await self._channel(job).get_partial_message(old).delete()
            except discord.HTTPException as exc:
                log.info("job %s: old card %s not deleted (%s)", job.id, old, exc.status)
        return message

    # ---------------------------------------------------------------- the end
    async def _finish(self, job: Job, state: CardState) -> bool:
        settings = await self.bot.guild_settings(job.guild_id)
        if not job.delivered:
            # Posted first, marked delivered after: a crash in between errs towards posting the
            # result twice, never towards losing it. Two things keep the repost rare: the
            # result's message id is stored right after the post (a job that has one is only
            # marked delivered, not posted again), and the post carries a nonce per job that
            # Discord dedupes for a few minutes (enforce_nonce), which covers a crash between
            # the post and storing its id when the bot comes back soon.
            if job.result_message_id is None:
                job = await self._post_result(job, settings)
            await self.bot.store.mark_delivered(job.id)
            job = dataclasses.replace(job, delivered=True)
            self.pending[job.id] = job  # a retried card edit must not post again
        if job.message_id is not None:
            embed = cards.card_embed(job)
            if job.result_message_id is not None:
                embed.description = f"{embed.description} · [result]({jump_url(job, job.result_message_id)})"
            try:
                await self._channel(job).get_partial_message(job.message_id).edit(
                    embed=embed, attachments=[], view=cards.card_view(job, buttons_enabled=settings.buttons_enabled)
                )
            except discord.NotFound:
                log.info("job %s: card %s is gone; the result stands alone", job.id, job.message_id)
            else:
                own_reactions.add_controls(self.bot, job, job.message_id, own_reactions.card_actions(job),
                                           remove=own_reactions.PENDING_CARD)
        log.info("job %s: delivered (%s)", job.id, job.state)
        return True

    async def _post_result(self, job: Job, settings: GuildSettings) -> Job:
        """Post the picture (or the failure) that mentions the owner; the job as it is now,
        with ``result_message_id`` set once the message went out."""
        if job.state is JobState.CANCELLED:
            return job
        channel = self._channel(job)
        kwargs: dict[str, Any] = {"allowed_mentions": mentions.owner(job.user_id), "nonce": result_nonce(job)}
        content = cards.failure_content(job)
        png = None if job.state is JobState.FAILED else await self.bot.store.result(job.id)
        if job.state is JobState.SUCCEEDED and png is None:
            log.error("job %s: succeeded but has no stored result", job.id)
        if png is not None:
            timelapse = self.bot.timelapse_for(job.id) if job.params.get("extra", {}).get("timelapse") else None
            kwargs["files"] = fit_upload(job.id, png, timelapse, limit=self.config.upload_limit_bytes)
            view = cards.result_view(job, buttons_enabled=settings.buttons_enabled)
            if view is not None:
                kwargs["view"] = view
            content = cards.result_content(job)
        message = await channel.send(content, **kwargs)
        job = await self.bot.store.set_message(job.id, message.id, kind="result")
        self.pending[job.id] = job
        if png is not None:
            own_reactions.add_controls(self.bot, job, message.id, own_reactions.RESULT)
        return job

    async def _undeliverable(self, job: Job, exc: discord.HTTPException) -> None:
        """The channel refused a finished job's result: tell the owner by DM where possible."""
        if not job.state.is_terminal or job.delivered:
            return
        await self.bot.store.mark_delivered(job.id)
        self.pending[job.id] = dataclasses.replace(job, delivered=True)
        if isinstance(exc, discord.Forbidden):
            why = (f"I may not post in <#{job.channel_id}>. Ask an admin to give me Send Messages, Embed Links "
                   f"and Attach Files there, then use /show {job.id}.")
        elif isinstance(exc, discord.NotFound):
            why = f"its channel is gone. Use /show {job.id} in another channel of the server to see it."
        else:
            why = f"Discord refused the message ({exc.status}). Use /show {job.id} to see it."
        try:
            user = self.bot.get_user(job.user_id) or await self.bot.fetch_user(job.user_id)
            await user.send(f"Job #{job.id} ended ({job.state}) but {why}")
        except discord.HTTPException as dm_exc:
            log.info("job %s: could not DM the owner either (%s)", job.id, dm_exc.status)

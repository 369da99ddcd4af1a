"""The progress and delivery loop: database changes become card edits and result messages.

One task per bot. It reads ``store.changed_since(version)``, keeps only the
newest state of each job (frames are coalesced), edits each card through the
bot's own channel-message calls (never the 15-minute interaction token) at
most once per ``edit_interval_s``, backs off on 429 and 5xx, and posts the
finished picture in a new message that mentions its owner. A job counts as
delivered only once its result message went out, so a restart or an outage
delays delivery but never loses it. The candidates of a grid share one message: their changes
go to bot.grid_delivery.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import io
import logging
from dataclasses import dataclass

import discord
from discord.ext import commands

from bot import mentions
from bot.card_posting import CardPoster
from bot.cards import PREVIEW_NAME, render_failure, render_result
from bot.config import BotConfig
from bot.describe_answer import render_stored_description
from bot.events import JOBS_CHANGED
from bot.grid_delivery import GridDelivery
from bot.grid_posting import GridPoster
from bot.reaction_offers import ReactionOffers
from bot.result_files import fit_upload
from db import Job, JobKind, JobState, Store

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
    message_id: int | None = None  # the card message the cadence counts from


def discord_now() -> float:
    """Seconds on the clock Discord's timestamps and message ids come from (discord.utils.utcnow)."""
    return discord.utils.utcnow().timestamp()


def posted_at(message_id: int) -> float:
    """When a message was posted, in ``discord_now`` seconds (a message id holds its time)."""
    return discord.utils.snowflake_time(message_id).timestamp()


def jump_url(job: Job, message_id: int) -> str:
    return f"https://discord.com/channels/{job.guild_id}/{job.channel_id}/{message_id}"


def result_nonce(job: Job) -> str:
    """The same for every post of one job's result, so Discord keeps only the first one."""
    return f"vqr-{job.id}"  # Discord takes 25 characters at most


def preview_file(preview: bytes | None) -> discord.File | None:
    """A progress picture as a card's file (a new one for each message: a sent file is used up)."""
    return discord.File(io.BytesIO(preview), filename=PREVIEW_NAME) if preview is not None else None


def retryable(exc: discord.HTTPException) -> bool:
    return exc.status == 429 or exc.status >= 500


class Delivery(commands.Cog):
    def __init__(self, client: discord.Client, store: Store, config: BotConfig, cards: CardPoster,
                 offers: ReactionOffers, grids: GridPoster) -> None:
        self.client = client
        self.store = store
        self.config = config
        self.cards = cards
        self.offers = offers
        self.grids = GridDelivery(store, grids, edit_interval_s=config.edit_interval_s, posted_at=posted_at)
        self.version: int | None = None  # None until the first pass reads the store's version
        self.backlog = True  # jobs that ended before the start (or before a lost pass) may wait
        self.backlog_seen: set[int] = set()  # ids the backlog already brought this sweep
        self.pending: dict[int, Job] = {}
        self.card_states: dict[int, CardState] = {}
        self.finished: set[int] = set()
        self._woken = False  # told of changes since the current pass began
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    # ---------------------------------------------------------------- the loop
    async def cog_load(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="vqbot-delivery")

    async def cog_unload(self) -> None:
        await self.stop()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    @commands.Cog.listener()
    async def on_jobs_changed(self) -> None:
        """Jobs changed in the store: a pass soon (at once, if one is under way now)."""
        self._woken = True

    async def _run(self) -> None:
        while True:
            self._woken = False
            try:
                await self.run_pass()
            except Exception:
                log.exception("delivery pass failed; trying again in %.0f s", self.config.poll_interval_s)
            if not self._woken:
                with contextlib.suppress(TimeoutError):  # sleep until jobs change or an edit is due
                    await self.client.wait_for(JOBS_CHANGED, timeout=self._next_timeout())

    def _next_timeout(self) -> float:
        now = discord_now()
        timeout = self.config.poll_interval_s
        for job_id in self.pending:
            state = self.card_states.get(job_id)
            if state is not None:
                due = max(state.blocked_until, state.next_edit_at) - now
                timeout = min(timeout, max(due, 0.0))
        return max(timeout, 0.05)

    async def run_pass(self) -> None:
        """Read what changed and act on every pending job that is due."""
        async with self._lock:
            started_or_ended = await self._read_changes()
            for guild_id in started_or_ended:
                for queued in (await self.store.queue(guild_id))[:QUEUED_REFRESH_LIMIT]:
                    if queued.state is JobState.QUEUED:
                        self.pending.setdefault(queued.id, queued)
            for job in list(self.pending.values()):
                await self._attend(job)
            await self._drain_backlog()

    async def _read_changes(self) -> set[int]:
        """Take in every change since the last pass; the guilds where a job started or ended
        (their queued cards' places changed)."""
        if self.version is None:  # first pass: changes from now on; what ended before is the backlog
            self.version = await self.store.version()
        started_or_ended: set[int] = set()
        while True:
            changed = await self.store.changed_since(self.version, limit=CHANGES_PAGE)
            for job in changed:
                self.version = max(self.version, job.version)
                if job.state.is_terminal and job.delivered and job.id in self.finished:
                    continue  # our own marks (delivered, result message) come back as changes
                old = self.pending.get(job.id)
                if (old is None or old.state != job.state) and job.state is not JobState.QUEUED:
                    started_or_ended.add(job.guild_id)
                self.pending[job.id] = job
            if len(changed) < CHANGES_PAGE:
                return started_or_ended

    async def _drain_backlog(self) -> None:
        """Deliver the jobs that ended while no bot watched, a page of ``store.undelivered()``
        at a time, however many there are.

        Delivered jobs leave ``undelivered()``, so each page brings the next ones. A page is
        read only once the last page's jobs have left ``pending``: jobs held back by a rate
        limit are retried by later passes at their own pace, and the sweep goes on after them.
        A short page is the last; a page that brings nothing new also ends the sweep.
        """
        while self.backlog and not (self.backlog_seen & self.pending.keys()):
            read = await self.store.undelivered(limit=BACKLOG_PAGE)
            page = [job for job in read if job.id not in self.backlog_seen]
            self.backlog = len(read) == BACKLOG_PAGE and len(page) > 0
            for job in page:
                self.backlog_seen.add(job.id)
                self.pending.setdefault(job.id, job)
                await self._attend(self.pending[job.id])
        if not self.backlog:
            self.backlog_seen.clear()

    async def _attend(self, job: Job) -> None:
        state = self.card_states.setdefault(job.id, CardState())
        now = discord_now()
        if now < state.blocked_until:
            return
        try:
            if job.group_id is not None:
                done = await self.grids.attend(job, now)
                state.next_edit_at = self.grids.next_edit_at(job.group_id)  # when the loop looks again
            else:
                done = await (self._finish(job) if job.state.is_terminal else self._update(job, state, now))
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
                self.card_states.pop(job.id, None)
                self.finished.add(job.id)

    # ---------------------------------------------------------------- cards
    async def _update(self, job: Job, state: CardState, now: float) -> bool:
        """Edit a pending job's card; True when nothing is left to do for this version."""
        if job.message_id is None:
            return True  # the card is still being posted; set_message will bring the job back
        if state.message_id != job.message_id:  # a card just posted waits for the cadence like any other
            state.message_id = job.message_id
            state.next_edit_at = max(state.next_edit_at, posted_at(job.message_id) + self.config.edit_interval_s)
        if now < state.next_edit_at:
            return False  # coalesce: the newest version is edited when the slot opens
        preview = None
        if job.state is JobState.RUNNING and job.step != state.shown_step:
            stored = await self.store.preview(job.id)
            preview = stored[1] if stored is not None else None
        card = await self.cards.render(job, image=preview_file(preview))
        if job.state is JobState.RUNNING and not state.replaced and self._card_too_old(job):
            await self.cards.replace(job, card)
            state.replaced = True
        elif not await self.cards.edit(job, card):
            log.info("job %s: card %s is gone; posting a new one", job.id, job.message_id)
            await self.cards.replace(job, await self.cards.render(job, image=preview_file(preview)), delete_old=False)
        state.next_edit_at = discord_now() + self.config.edit_interval_s
        state.backoff = 0.0
        if preview is not None:
            state.shown_step = job.step
        return True

    def _card_too_old(self, job: Job) -> bool:
        assert job.message_id is not None
        return discord_now() - posted_at(job.message_id) > self.config.card_max_age_s

    # ---------------------------------------------------------------- the end
    async def _finish(self, job: Job) -> bool:
        if not job.delivered:
            # Posted first, marked delivered after: a crash in between errs towards posting the
            # result twice, never towards losing it. Two things keep the repost rare: the
            # result's message id is stored right after the post (a job that has one is only
            # marked delivered, not posted again), and the post carries a nonce per job that
            # Discord dedupes for a few minutes (enforce_nonce), which covers a crash between
            # the post and storing its id when the bot comes back soon.
            if job.result_message_id is None:
                job = await self._post_result(job)
            await self.store.mark_delivered(job.id)
            job = dataclasses.replace(job, delivered=True)
            self.pending[job.id] = job  # a retried card edit must not post again
        if job.message_id is not None:
            url = jump_url(job, job.result_message_id) if job.result_message_id is not None else None
            card = await self.cards.render(job, result_url=url)
            if await self.cards.edit(job, card):
                self.offers.offer(job, job.message_id, card.reactions, remove=card.withdrawn)
            else:
                log.info("job %s: card %s is gone; the result stands alone", job.id, job.message_id)
        log.info("job %s: delivered (%s)", job.id, job.state)
        return True

    async def _post_result(self, job: Job) -> Job:
        """Post the picture (or the failure) that mentions the owner; the job as it is now,
        with ``result_message_id`` set once the message went out."""
        if job.state is JobState.CANCELLED:
            return job
        png = None if job.state is JobState.FAILED else await self.store.result(job.id)
        if job.state is JobState.SUCCEEDED and png is None:
            log.error("job %s: succeeded but has no stored result", job.id)
        if png is not None and job.kind is JobKind.DESCRIBE:  # the stored result is a description
            message = render_stored_description(job, png, buttons=(await self.store.settings(job.guild_id)).buttons_enabled)
        elif png is not None:
            timelapse = self._timelapse(job) if job.params.get("extra", {}).get("timelapse") else None
            settings = await self.store.settings(job.guild_id)
            files = fit_upload(job.id, png, timelapse, limit=self.config.upload_limit_bytes)
            message = render_result(job, files, buttons=settings.buttons_enabled)
        else:
            message = render_failure(job)
        posted = await self.cards.channel(job).send(allowed_mentions=mentions.owner(job.user_id),
                                                    nonce=result_nonce(job), **message.send_kwargs())
        job = await self.store.set_message(job.id, posted.id, kind="result")
        self.pending[job.id] = job
        self.offers.offer(job, posted.id, message.reactions)
        return job

    def _timelapse(self, job: Job) -> bytes | None:
        path = self.config.timelapse_dir / f"{job.id}.webp"
        return path.read_bytes() if path.is_file() else None

    async def _undeliverable(self, job: Job, exc: discord.HTTPException) -> None:
        """The channel refused a finished job's result: tell the owner by DM where possible."""
        if not job.state.is_terminal or job.delivered:
            return
        await self.store.mark_delivered(job.id)
        self.pending[job.id] = dataclasses.replace(job, delivered=True)
        if isinstance(exc, discord.Forbidden):
            why = (f"I may not post in <#{job.channel_id}>. Ask an admin to give me Send Messages, Embed Links "
                   f"and Attach Files there, then use /show {job.id}.")
        elif isinstance(exc, discord.NotFound):
            why = f"its channel is gone. Use /show {job.id} in another channel of the server to see it."
        else:
            why = f"Discord refused the message ({exc.status}). Use /show {job.id} to see it."
        try:
            user = self.client.get_user(job.user_id) or await self.client.fetch_user(job.user_id)
            await user.send(f"Job #{job.id} ended ({job.state}) but {why}")
        except discord.HTTPException as dm_exc:
            log.info("job %s: could not DM the owner either (%s)", job.id, dm_exc.status)

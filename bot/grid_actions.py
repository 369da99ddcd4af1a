"""Upscale (U), vary (V), four new seeds (🔁) and cancel for a grid's candidates.

Only the candidates' owner or a server admin may press these: the new jobs are theirs and
charged to them (each candidate as the job it is). U makes one job at the full size and steps
from the candidate's picture, posted as a card of its own that names its parent; V makes four
new candidates from it, 🔁 four from the grid's prompt with new seeds, each posted as a new
grid; ❌ cancels every candidate that has not ended. A U or V button that made its job shows as used on
the grid's message from then on (it still works: a second click makes another).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import discord

from bot import admission
from bot.card_posting import CardPoster
from bot.config import BotConfig
from bot.controls import Action, custom_id
from bot.errors import UserError
from bot.events import Wakeups
from bot.grid_posting import GridPoster
from bot.grids import reroll_params, upscale_params, variation_params
from bot.text import plain
from bot.user_pictures import Picture, save_picture
from db import Job, JobState, NewJob, NotAllowed, Relation, Store
from jobspec import JobParams, ParamError, PromptError

log = logging.getLogger(__name__)


def stored_params(job: Job) -> JobParams:
    try:
        return JobParams.from_json(job.params)
    except (ParamError, PromptError, TypeError):
        log.warning("job %s: stored params do not read as JobParams", job.id, exc_info=True)
        raise UserError(f"Job #{job.id} was made by another version of vqbot and can't be used again.") from None


class GridActions:
    def __init__(self, store: Store, config: BotConfig, cards: CardPoster, grids: GridPoster,
                 wakeups: Wakeups) -> None:
        self.store = store
        self.config = config
        self.cards = cards
        self.grids = grids
        self.wakeups = wakeups

    async def perform(self, action: Action, job: Job, user_id: int, is_admin: bool, channel_id: int, *,
                      message: discord.Message | None = None) -> tuple[str, Job | None]:
        """(the sentence for the member, the job made or changed; None when refused).

        ``message``: the grid message whose U or V button was clicked, marked used once its job is made."""
        if job.user_id != user_id and not is_admin:
            return f"Only the owner of job #{job.id} or a server admin can use its buttons.", None
        try:
            if action is Action.CANCEL:
                return await self.cancel(job, user_id, is_admin)
            if action in (Action.UPSCALE, Action.VARY):
                made = await (self.upscale if action is Action.UPSCALE else self.vary)(job, user_id, channel_id)
                if message is not None:
                    await self.mark_used(message, action, job)
                return made
            if action is Action.RERUN:
                return await self.reroll(job, user_id, channel_id)
        except UserError as exc:
            return str(exc), None
        return f"Job #{job.id} is a grid's candidate; use its U or V button.", None

    async def cancel(self, job: Job, user_id: int, is_admin: bool) -> tuple[str, Job | None]:
        members = await self.store.group(job.group_id) if job.group_id is not None else [job]
        pending = [member for member in members if not member.state.is_terminal]
        if not pending:
            return f"The candidates of job #{members[0].id} have already ended.", None
        updated = None
        try:
            for member in pending:
                updated = await self.store.request_cancel(member.id, by_user=user_id, is_admin=is_admin)
        except NotAllowed as exc:
            return plain(exc), None
        log.info("group %s: cancel requested by %s", members[0].id, user_id)
        self.wakeups.jobs_changed()
        self.wakeups.worker()
        return f"Cancelling the {len(pending)} candidates of jobs #{members[0].id}–#{members[-1].id}.", updated

    async def mark_used(self, message: discord.Message, action: Action, job: Job) -> None:
        """Show ``action``'s button of candidate ``job`` as used on its grid's ``message`` (the
        finished grid's; any other message is left as it is)."""
        if job.group_id is None or message.id != job.result_message_id:
            return
        try:
            await self.grids.mark_used(await self.store.group(job.group_id), message, custom_id(action, job.id))
        except discord.HTTPException as exc:
            log.info("job %s: used %s button not marked on %s (%s %s)", job.id, action, message.id, exc.status, exc.code)

    async def picture_of(self, job: Job) -> str:
        """The path of the candidate's finished picture, kept with the uploads."""
        if job.state is not JobState.SUCCEEDED:
            raise UserError(f"Job #{job.id} has no finished picture yet.")
        png = await self.store.result(job.id)
        if png is None:
            raise UserError(f"Job #{job.id}'s picture is no longer stored.")
        picture = Picture(data=png, format="png", width=job.width, height=job.height)
        return str(save_picture(picture, self.config.attachments_dir))

    async def upscale(self, job: Job, user_id: int, channel_id: int) -> tuple[str, Job | None]:
        settings = await self.store.settings(job.guild_id)
        params = upscale_params(stored_params(job), await self.picture_of(job), settings)
        child = await admission.enqueue(self.store, admission.new_job(
            params, guild_id=job.guild_id, channel_id=channel_id, user_id=user_id, parent_id=job.id,
            relation=Relation.UPSCALE, prompt=job.prompt))
        log.info("job %s: upscale of job %s queued by %s", child.id, job.id, user_id)
        try:
            await self.cards.post(child)
        except discord.HTTPException as exc:
            log.warning("job %s: card not posted in %s (%s %s)", child.id, child.channel_id, exc.status, exc.code)
        self.wakeups.worker()
        return f"Upscale of job #{job.id} queued as job #{child.id} ({child.width}x{child.height}).", child

    async def vary(self, job: Job, user_id: int, channel_id: int) -> tuple[str, Job | None]:
        params = variation_params(stored_params(job), await self.picture_of(job))
        children = await self.queue_grid(params, job, user_id, channel_id, Relation.VARIATION, lambda _: job.id)
        return f"Variations of job #{job.id} queued as jobs #{children[0].id}–#{children[-1].id}.", children[0]

    async def reroll(self, job: Job, user_id: int, channel_id: int) -> tuple[str, Job | None]:
        members = await self.store.group(job.group_id) if job.group_id is not None else [job]
        params = reroll_params([stored_params(member) for member in members])
        children = await self.queue_grid(params, members[0], user_id, channel_id, Relation.RERUN,
                                         lambda i: members[i].id)
        text = (f"New seeds for jobs #{members[0].id}–#{members[-1].id} queued as jobs "
                f"#{children[0].id}–#{children[-1].id}.")
        return text, children[0]

    async def queue_grid(self, params: Sequence[JobParams], source: Job, user_id: int, channel_id: int,
                         relation: Relation, parent: Callable[[int], int]) -> list[Job]:
        """Queue a new grid (candidate ``i``'s parent: ``parent(i)``) and post its message."""
        news: list[NewJob] = [admission.new_job(p, guild_id=source.guild_id, channel_id=channel_id, user_id=user_id,
                                                parent_id=parent(i), relation=relation, prompt=source.prompt)
                              for i, p in enumerate(params)]
        children = await admission.enqueue_group(self.store, news)
        log.info("group %s: %s of job %s queued by %s", children[0].id, relation, source.id, user_id)
        try:
            await self.grids.post(children)
        except discord.HTTPException as exc:
            log.warning("group %s: card not posted (%s %s)", children[0].id, exc.status, exc.code)
        self.wakeups.worker()
        return children

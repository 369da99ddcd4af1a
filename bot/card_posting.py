"""The one place a job's card is posted, edited or replaced.

A card is rendered from the job's row (bot.cards) with what the store says beside it: the
server's button setting and, while the job waits, its place in the queue. A posted card's
message id goes to the store at once (reactions and restarts find the job by it), and the bot
offers its reactions on it. Cards go out through the bot's own channel-message calls; only the
first answer to /imagine goes through the interaction.
"""

from __future__ import annotations

import logging

import discord

from bot.cards import JobMessage, QueueSpot, render_card
from bot.reaction_offers import ReactionOffers
from db import Job, JobState, Store

log = logging.getLogger(__name__)


class CardPoster:
    def __init__(self, client: discord.Client, store: Store, offers: ReactionOffers) -> None:
        self.client = client
        self.store = store
        self.offers = offers

    def channel(self, job: Job) -> discord.PartialMessageable:
        """The job's channel, for posting and editing (no cache needed)."""
        return self.client.get_partial_messageable(job.channel_id, guild_id=job.guild_id)

    async def render(self, job: Job, *, image: discord.File | None = None, result_url: str | None = None) -> JobMessage:
        """``job``'s card as it should look now."""
        settings = await self.store.settings(job.guild_id)
        spot = QueueSpot(*await self.store.position(job.id)) if job.state is JobState.QUEUED else None
        return render_card(job, buttons=settings.buttons_enabled, spot=spot, image=image, result_url=result_url)

    async def post(self, job: Job, card: JobMessage | None = None) -> discord.Message:
        """Post a card for ``job`` in its channel (raises discord.HTTPException) and remember it."""
        card = card or await self.render(job)
        message = await self.channel(job).send(**card.send_kwargs())
        await self._posted(job, message.id, card)
        return message

    async def answer(self, interaction: discord.Interaction, job: Job) -> bool:
        """Post a new job's card as the answer to the (deferred) command that queued it, or in
        the channel when the interaction can't take it any more; True when the interaction took it."""
        card = await self.render(job)
        try:
            message = await interaction.edit_original_response(**card.edit_kwargs())
        except discord.HTTPException as exc:  # token gone or message deleted: fall back to a channel message
            log.warning("job %s: card not posted through the interaction (%s %s)", job.id, exc.status, exc.code)
            try:
                await self.post(job)
            except discord.HTTPException as again:
                log.warning("job %s: card not posted in %s (%s %s)", job.id, job.channel_id, again.status, again.code)
            return False
        await self._posted(job, message.id, card)
        return True

    async def edit(self, job: Job, card: JobMessage) -> bool:
        """Edit the job's card into ``card``; False when the card message is gone."""
        assert job.message_id is not None
        try:
            await self.channel(job).get_partial_message(job.message_id).edit(**card.edit_kwargs())
        except discord.NotFound:
            return False
        return True

    async def replace(self, job: Job, card: JobMessage, *, delete_old: bool = True) -> discord.Message:
        """Post a fresh card in place of the old one (old cards edit slowly, and the old one may be gone)."""
        old = job.message_id
        message = await self.post(job, card)
        log.info("job %s: new card %s replaces %s", job.id, message.id, old)
        if delete_old and old is not None:
            try:
                await self.channel(job).get_partial_message(old).delete()
            except discord.HTTPException as exc:
                log.info("job %s: old card %s not deleted (%s)", job.id, old, exc.status)
        return message

    async def _posted(self, job: Job, message_id: int, card: JobMessage) -> None:
        await self.store.set_message(job.id, message_id, kind="card")
        self.offers.offer(job, message_id, card.reactions)

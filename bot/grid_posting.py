"""The one place a grid's message is rendered with its picture, posted or edited.

A grid's message is the card of all four candidates: each candidate's job row keeps its
message id (``set_message``), so a reaction or a restart finds the group from any of them.
The picture is composed from what the store holds: a candidate's finished PNG, else its
newest preview.
"""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Sequence

import discord

from bot import mentions
from bot.card_posting import CardPoster
from bot.cards import JobMessage, QueueSpot
from bot.grid_cards import GRID_PREVIEW_NAME, GRID_RESULT_NAME, grid_view, render_grid_card, used_buttons
from bot.grid_pictures import compose
from db import Job, JobState, Store

log = logging.getLogger(__name__)


class GridPoster:
    def __init__(self, store: Store, cards: CardPoster) -> None:
        self.store = store
        self.cards = cards

    async def picture(self, jobs: Sequence[Job], *, final: bool) -> discord.File | None:
        """The 2x2 picture of the candidates as they are; None while none has a picture."""
        pictures: list[bytes | None] = []
        for job in jobs:
            data = await self.store.result(job.id) if job.state is JobState.SUCCEEDED else None
            if data is None and not job.state.is_terminal:
                stored = await self.store.preview(job.id)
                data = stored[1] if stored is not None else None
            pictures.append(data)
        if not any(pictures):
            return None
        size = (jobs[0].width, jobs[0].height)
        data = await asyncio.to_thread(compose, pictures, size, final=final)
        return discord.File(io.BytesIO(data), filename=GRID_RESULT_NAME if final else GRID_PREVIEW_NAME)

    async def render(self, jobs: Sequence[Job], *, picture: bool = True, mention: bool = False) -> JobMessage:
        """The group's message as it should look now (``picture``: with the 2x2 picture)."""
        first = jobs[0]
        settings = await self.store.settings(first.guild_id)
        queued = [job for job in jobs if job.state is JobState.QUEUED]
        spot = QueueSpot(*await self.store.position(queued[0].id)) if queued else None
        ended = all(job.state.is_terminal for job in jobs)
        image = await self.picture(jobs, final=ended) if picture else None
        return render_grid_card(jobs, buttons=settings.buttons_enabled, spot=spot, image=image, mention=mention)

    async def answer(self, interaction: discord.Interaction, jobs: Sequence[Job]) -> bool:
        """Post a new group's message as the answer to the (deferred) command that queued it,
        or in the channel when the interaction can't take it; True when the interaction took it."""
        card = await self.render(jobs)
        try:
            message = await interaction.edit_original_response(**card.edit_kwargs())
        except discord.HTTPException as exc:
            log.warning("group %s: card not posted through the interaction (%s %s)", jobs[0].id, exc.status, exc.code)
            try:
                await self.post(jobs)
            except discord.HTTPException as again:
                log.warning("group %s: card not posted (%s %s)", jobs[0].id, again.status, again.code)
            return False
        await self.posted(jobs, message.id, card)
        return True

    async def post(self, jobs: Sequence[Job], card: JobMessage | None = None, *, mention: bool = False,
                   nonce: str | None = None) -> discord.Message:
        """Post the group's message in its channel (raises discord.HTTPException) and remember it."""
        card = card or await self.render(jobs, mention=mention)
        kwargs = card.send_kwargs()
        if nonce:
            kwargs["nonce"] = nonce
        allowed = mentions.owner(jobs[0].user_id) if mention else mentions.NOBODY
        message = await self.cards.channel(jobs[0]).send(allowed_mentions=allowed, **kwargs)
        await self.posted(jobs, message.id, card)
        return message

    async def edit(self, jobs: Sequence[Job], message_id: int, card: JobMessage) -> bool:
        """Edit the group's message into ``card``; False when it is gone."""
        try:
            await self.cards.channel(jobs[0]).get_partial_message(message_id).edit(**card.edit_kwargs())
        except discord.NotFound:
            return False
        return True

    async def mark_used(self, jobs: Sequence[Job], message: discord.Message, used_id: str) -> None:
        """Show the button ``used_id`` of the finished grid ``message`` as used, with the marks it
        has; only its buttons change (raises discord.HTTPException)."""
        await message.edit(view=grid_view(jobs, used=used_buttons(message) | {used_id}))

    async def posted(self, jobs: Sequence[Job], message_id: int, card: JobMessage) -> None:
        for job in jobs:
            await self.store.set_message(job.id, message_id, kind="card")
        self.cards.offers.offer(jobs[0], message_id, card.reactions)

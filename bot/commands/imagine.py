"""/imagine: check everything cheap, defer, fetch pictures, queue, answer with the job card."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands

from bot import cards, own_reactions
from bot.attachments import PictureCaps, check_announced, fetch_picture, save_picture
from bot.errors import UserError
from bot.options import ASPECTS, MAX_SEED, ImagineOptions, build_params
from bot.text import label, plain
from db.errors import InvalidInput, LimitExceeded
from db.jobs import Job, NewJob, check_new_job
from db.limits import check_policy
from jobspec import LIMITS, Prompt

if TYPE_CHECKING:
    from bot.client import VQBot

log = logging.getLogger(__name__)

QUICK_ANSWER_S = 2.0  # of the 3 s Discord gives for the first answer
NEEDED = discord.Permissions(view_channel=True, send_messages=True, embed_links=True, attach_files=True,
                             read_message_history=True)
PERMISSION_NAMES = {"view_channel": "View Channel", "send_messages": "Send Messages", "embed_links": "Embed Links",
                    "attach_files": "Attach Files", "read_message_history": "Read Message History"}


def missing_permissions(have: discord.Permissions) -> list[str]:
    return [PERMISSION_NAMES[name] for name, value in NEEDED if value and not getattr(have, name)]


def caps(bot: VQBot) -> PictureCaps:
    c = bot.config
    return PictureCaps(hosts=c.attachment_hosts, max_bytes=c.max_attachment_bytes, max_pixels=c.max_attachment_pixels)


async def style_autocomplete(interaction: discord.Interaction[VQBot], current: str) -> list[app_commands.Choice[str]]:
    bot = interaction.client
    if interaction.guild_id is None:
        return []
    styles: dict[str, str] = await bot.store.styles(interaction.guild_id)
    typed = current.casefold()
    found = [(n, t) for n, t in sorted(styles.items()) if typed in n.casefold() or typed in t.casefold()]
    return [app_commands.Choice(name=label(f"{n}: {t}"), value=n) for n, t in found[:25]]


async def model_autocomplete(interaction: discord.Interaction[VQBot], current: str) -> list[app_commands.Choice[str]]:
    bot = interaction.client
    typed = current.casefold()
    return [app_commands.Choice(name=label(m), value=m) for m in bot.config.models if typed in m.casefold()][:25]


@app_commands.command(name="imagine", description="Make a picture from a prompt with VQGAN+CLIP")
@app_commands.guild_only()
@app_commands.describe(
    prompt="What to draw; separate prompts with |, weigh them with :0.5 or push away with :-1",
    steps="How many optimisation steps (more is slower and more detailed)",
    size="WIDTHxHEIGHT in pixels, multiples of 16, e.g. 512x384",
    aspect="Aspect ratio instead of an exact size",
    seed="Seed for a repeatable picture",
    init_image="Start from this picture",
    image_prompt="Also aim for what this picture shows",
    style="A style preset of this server",
    cutouts="Cutouts per step (more is slower and steadier)",
    model="VQGAN model",
    timelapse="Also send an animation of the picture forming",
)
@app_commands.choices(aspect=[app_commands.Choice(name=a, value=a) for a in ASPECTS])
@app_commands.autocomplete(style=style_autocomplete, model=model_autocomplete)
async def imagine(
    interaction: discord.Interaction[VQBot],
    prompt: app_commands.Range[str, 1, 1000],
    steps: app_commands.Range[int, 1, int(LIMITS["steps"].high)] | None = None,
    size: app_commands.Range[str, 2, 11] | None = None,
    aspect: str | None = None,
    seed: app_commands.Range[int, 0, MAX_SEED] | None = None,
    init_image: discord.Attachment | None = None,
    image_prompt: discord.Attachment | None = None,
    style: str | None = None,
    cutouts: app_commands.Range[int, 1, int(LIMITS["cutn"].high)] | None = None,
    model: str | None = None,
    timelapse: bool = False,
) -> None:
    bot = interaction.client
    assert interaction.guild_id is not None and interaction.channel_id is not None
    try:
        new = await precheck(bot, interaction, ImagineOptions(
            prompt=prompt, steps=steps, size=size, aspect=aspect, seed=seed, cutouts=cutouts, model=model,
            style=style, timelapse=timelapse), init_image, image_prompt)
    except UserError as exc:
        await interaction.response.send_message(str(exc), ephemeral=True)
        return
    # Downloads and the queue's own limits usually take well under a second: wait for them a
    # little so that a refusal can still be a private answer; past that, defer and go on.
    prepare = asyncio.get_running_loop().create_task(queue_job(bot, new, init_image, image_prompt))
    done, _ = await asyncio.wait([prepare], timeout=QUICK_ANSWER_S)
    if done and prepare.exception() is not None and isinstance(prepare.exception(), UserError):
        await interaction.response.send_message(str(prepare.exception()), ephemeral=True)
        return
    await interaction.response.defer(thinking=True)
    try:
        job = await prepare
    except UserError as exc:
        await refuse_late(interaction, str(exc))
        return
    log.info("job %s: queued by %s in guild %s: %r", job.id, job.user_id, job.guild_id, job.prompt)
    bot.notify_worker()
    settings = await bot.guild_settings(job.guild_id)
    ahead, eta = await bot.store.position(job.id)
    kwargs: dict[str, Any] = {"embed": cards.card_embed(job, spot=cards.QueueSpot(ahead, eta))}
    view = cards.card_view(job, buttons_enabled=settings.buttons_enabled)
    if view is not None:
        kwargs["view"] = view
    try:
        message = await interaction.edit_original_response(**kwargs)
    except discord.HTTPException as exc:  # token gone or message deleted: fall back to a channel message
        log.warning("job %s: card not posted through the interaction (%s %s)", job.id, exc.status, exc.code)
        await bot.actions.post_card(job)
    else:
        await bot.store.set_message(job.id, message.id, kind="card")
        bot.delivery.card_posted(job.id)
        own_reactions.add_controls(bot, job, message.id, own_reactions.PENDING_CARD)
    bot.delivery.wake()


async def precheck(bot: VQBot, interaction: discord.Interaction[VQBot], opts: ImagineOptions,
                   init_image: discord.Attachment | None, image_prompt: discord.Attachment | None) -> NewJob:
    """Everything that needs no download: permissions, options, styles, attachments' metadata, policy."""
    assert interaction.guild_id is not None and interaction.channel_id is not None
    missing = missing_permissions(interaction.app_permissions)
    if missing:
        raise UserError(f"I need {', '.join(missing)} in this channel to post pictures; ask an admin to grant them.")
    settings = await bot.guild_settings(interaction.guild_id)
    if opts.style:
        styles: dict[str, str] = await bot.store.styles(interaction.guild_id)
        text = styles.get(opts.style.strip().casefold())
        if text is None:
            known = plain(", ".join(sorted(styles)[:10])) or "none yet"
            raise UserError(f"There is no style called “{plain(opts.style, 100)}” here; pick one of: {known}.")
        opts = dataclasses.replace(opts, style=text)
    for what, attachment in (("init image", init_image), ("image prompt", image_prompt)):
        if attachment is not None:
            check_announced(attachment, caps(bot), what=what)
    params = build_params(opts, settings, bot.config,
                          image_prompts=("(upload)",) if image_prompt else (),
                          init_image="(upload)" if init_image else None)
    new = NewJob(guild_id=interaction.guild_id, channel_id=interaction.channel_id, user_id=interaction.user.id,
                 prompt=params.prompt_text, params=params.to_json(), seed=params.seed)
    try:
        check_policy(settings, check_new_job(new))
    except LimitExceeded as exc:
        raise UserError(cards.refusal(exc)) from None
    except InvalidInput as exc:
        raise UserError(plain(exc)) from None
    return new


async def queue_job(bot: VQBot, new: NewJob, init_image: discord.Attachment | None,
                    image_prompt: discord.Attachment | None) -> Job:
    """Fetch the uploads and queue the job; UserError with the sentence to show otherwise."""
    try:
        return await bot.store.enqueue(await with_pictures(bot, new, init_image, image_prompt))
    except InvalidInput as exc:
        raise UserError(plain(exc)) from None
    except LimitExceeded as exc:
        raise UserError(cards.refusal(exc)) from None


async def with_pictures(bot: VQBot, new: NewJob, init_image: discord.Attachment | None,
                        image_prompt: discord.Attachment | None) -> NewJob:
    """Download, check and store the uploads; the job's params then point at the stored files."""
    params = dict(new.params)
    folder = bot.config.attachments_dir
    if init_image is not None:
        picture = await fetch_picture(init_image, caps(bot), what="init image")
        params["init_image"] = str(save_picture(picture, folder))
    if image_prompt is not None:
        picture = await fetch_picture(image_prompt, caps(bot), what="image prompt")
        params["image_prompts"] = [dataclasses.asdict(Prompt(text=str(save_picture(picture, folder))))]
    return dataclasses.replace(new, params=params)


async def refuse_late(interaction: discord.Interaction[VQBot], text: str) -> None:
    """A refusal after the public defer (a slow download): answer privately, leave nothing public.

    Discord turns the first follow-up after a "thinking" defer into the public original
    itself (whatever its ephemeral flag), and into an error once the original is deleted. So:
    end the thinking with a neutral line, send the refusal as a private follow-up, then delete
    the neutral line. Each step may fail on its own; the user always gets one of the two.
    """
    try:
        await interaction.edit_original_response(content="Not queued; only you can see why.")
    except discord.HTTPException as exc:
        log.info("late refusal: placeholder not edited (%s %s)", exc.status, exc.code)
    try:
        await interaction.followup.send(text, ephemeral=True)
    except discord.HTTPException as exc:
        log.info("late refusal: private answer not sent (%s %s): %s", exc.status, exc.code, text)
        with contextlib.suppress(discord.HTTPException):
            await interaction.edit_original_response(content=text)  # public, but an answer
        return
    try:
        await interaction.delete_original_response()
    except discord.HTTPException as exc:
        log.info("late refusal: placeholder not deleted (%s %s)", exc.status, exc.code)

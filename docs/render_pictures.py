"""Make the README's pictures: what a member sees in Discord, from the real bot.

Runs the real bot on a simulated Discord (simcord), the real store (SQLite in a temporary
folder) and a real worker and engine on the CPU with the tests' tiny models (tests/tiny_models.py),
as the bot tests do: a member's /imagine, the grid's card while its candidates run, the finished
grid after U2 was clicked, the upscale's card while it runs, its result, and /describe's answer.
Each message, as simulated Discord holds it, becomes a Discord-like HTML page
(docs/message_page.py) that headless Chromium screenshots into docs/pictures/NAME.png.

    apt-get install chromium fonts-noto-color-emoji   # once
    python3 docs/render_pictures.py [--out docs/pictures] [--chromium chromium]

The tiny models are random, so the pictures are noise; the messages around them are the bot's own.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path

import discord
import simcord
from PIL import Image, ImageChops

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from db import GuildSettings, Job, JobState, SqliteStore
from docs.message_page import Attachment, ShownMessage, message_page
from tests.bot.conftest import DiscordClock, make_bot, tiny_bot_config
from tests.bot.world import World, build_world
from tests.worker.engine_fixtures import tiny_cpu_engine, write_tiny_models

PROMPT = "a wooden banana temple in an underwater kingdom | Studio Ghibli style"
GRID = {"grid_size": 64, "grid_steps": 20, "cooldown_s": 0}
WIDTH = 840
AUTHOR = "vqbot"  # the application's name as a server shows it (simcord calls its bot TestBot)
BACKGROUND = (0x31, 0x33, 0x38)
MAX_BYTES = 200_000


async def shown(world: World, message: discord.Message, *, command: tuple[str, str] | None = None) -> ShownMessage:
    """``message`` as the simulated Discord holds it now, pictures included."""
    current = world.message(message.id)
    names = {member.id: member.name for member in (world.alice, world.bob, world.admin)}
    return ShownMessage(
        author=AUTHOR if current.author.bot else current.author.name, created_at=current.created_at, content=current.content,
        embeds=[embed.to_dict() for embed in current.embeds],
        components=[row.to_dict() for row in current.components],
        attachments=[Attachment(a.filename, await a.read()) for a in current.attachments],
        bot=current.author.bot, command=command, names=names, seen_at=world.env.now())


class Watcher:
    """Between the worker's reports: the test world's tick, then ``check`` (once it is true, not again)."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.checks: list[Callable[[], Awaitable[bool]]] = []

    async def __call__(self) -> None:
        await self.world.tick()
        self.checks = [check for check in self.checks if not await check()]


async def scenario(world: World) -> dict[str, ShownMessage]:
    """Drive the bot as a member would; the messages to show, by picture name."""
    store, alice, captured = world.store, world.alice, {}
    watcher = Watcher(world)
    world.worker.on_change = watcher
    for key, value in GRID.items():
        await store.set_setting(world.guild.id, key, value, by_user=world.admin.id)

    def capture_running(name: str, message: discord.Message, jobs: Callable[[], Awaitable[list[Job]]],
                        far_enough: Callable[[Job], bool], command: tuple[str, str] | None = None) -> None:
        """Capture ``message`` once all its ``jobs`` run and are ``far_enough``, and it shows a preview."""
        async def check() -> bool:
            running = await jobs()
            if all(j.state is JobState.RUNNING and far_enough(j) for j in running) and \
                    world.message(message.id).attachments:
                captured[name] = await shown(world, message, command=command)
                return True
            return False

        watcher.checks.append(check)

    answer = await alice.slash(world.channel, "imagine", prompt=PROMPT, seed=7)
    card = answer.response
    capture_running("grid-running", card, lambda: store.group(1), lambda j: j.step >= 10,
                    command=("alice", "imagine"))
    while await world.worker.run_once():
        pass
    await world.env.settle()
    (final,) = [m for m in world.messages() if any(a.filename == "grid.png" for a in m.attachments)]

    upscaled = await alice.click(final, label="U2")
    child = await store.get(5)
    assert child is not None and child.message_id is not None, upscaled.response.content
    captured["grid-finished"] = await shown(world, final)
    upscale_card = world.message(child.message_id)

    async def upscale_job() -> list[Job]:
        job = await store.get(child.id)
        assert job is not None
        return [job]

    capture_running("upscale-running", upscale_card, upscale_job, lambda j: j.step * 2 >= j.total_steps)
    while await world.worker.run_once():
        pass
    await world.env.settle()
    done = await store.get(child.id)
    assert done is not None and done.result_message_id is not None, done
    result = world.message(done.result_message_id)
    captured["result"] = await shown(world, result)

    picture = await store.result(child.id)
    assert picture is not None
    await alice.slash(world.channel, "describe", picture=("temple.png", picture))
    await world.worker.run_once()
    await world.env.settle()
    captured["describe"] = await shown(world, world.messages()[-1])
    missing = {"grid-running", "grid-finished", "upscale-running", "result", "describe"} - set(captured)
    assert not missing, f"not captured: {sorted(missing)}"
    return captured


async def capture_messages(folder: Path) -> dict[str, ShownMessage]:
    models = write_tiny_models(folder / "models")
    engine = tiny_cpu_engine(models, threads=2)
    config = replace(tiny_bot_config(folder / "data", models), default_side=128, default_steps=30)
    store = await SqliteStore.open(folder / "vqbot.sqlite3", clock=DiscordClock(), defaults=GuildSettings())
    try:
        async with simcord.run(make_bot(store, config)) as env:
            return await scenario(build_world(env, store, engine))
    finally:
        await store.close()


def trimmed(png: bytes) -> Image.Image:
    """The screenshot without the empty background below the message."""
    image = Image.open(io.BytesIO(png)).convert("RGB")
    box = ImageChops.difference(image, Image.new("RGB", image.size, BACKGROUND)).getbbox()
    bottom = box[3] if box else image.height
    return image.crop((0, 0, image.width, min(image.height, bottom + 16)))


def screenshot(page: str, out: Path, chromium: str, work: Path) -> int:
    """Screenshot ``page`` into ``out`` (a PNG under MAX_BYTES, reduced to a palette if need be)."""
    html = work / f"{out.stem}.html"
    html.write_text(page, encoding="utf-8")
    raw = work / f"{out.stem}.raw.png"
    subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    "--force-device-scale-factor=1", f"--window-size={WIDTH},1600", f"--screenshot={raw}",
                    html.as_uri()], check=True, capture_output=True, timeout=120)
    image = trimmed(raw.read_bytes())
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    if buffer.tell() > MAX_BYTES:
        buffer = io.BytesIO()
        image.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(
            buffer, format="PNG", optimize=True)
    out.write_bytes(buffer.getvalue())
    return buffer.tell()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("pictures"))
    parser.add_argument("--chromium", default="chromium", help="the Chromium (or Chrome) command")
    args = parser.parse_args(argv)
    chromium = shutil.which(args.chromium)
    if chromium is None:
        parser.error(f"{args.chromium} not found: apt-get install chromium fonts-noto-color-emoji")
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="vqbot-pictures-") as temporary:
        work = Path(temporary)
        messages = asyncio.run(capture_messages(work))
        for name, message in messages.items():
            size = screenshot(message_page(message), args.out / f"{name}.png", chromium, work)
            print(f"{args.out / name}.png: {size / 1000:.0f} KB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""``onecard screen voices``: pre-render the holder screen's spoken prompts at build time.

Every fixed prompt (:func:`terminal.screen.voice.fixed_prompts`) is rendered by espeak-ng
into the directory the screen serves clips from, so the terminal never waits for espeak-ng
on a common outcome. Wire it in with :func:`add_commands`.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from terminal.screen.voice import (
    DEFAULT_SPEED,
    MAX_SPEED,
    MIN_SPEED,
    VOICES,
    VoiceCatalog,
    VoiceError,
    clip_info,
    fixed_prompts,
)


def _speed(text: str) -> int:
    value = int(text)
    if not MIN_SPEED <= value <= MAX_SPEED:
        raise argparse.ArgumentTypeError(f"must be {MIN_SPEED}..{MAX_SPEED} words per minute")
    return value


def add_commands(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``screen`` with its sub-command ``voices``; it sets ``func`` (``args -> exit
    code``)."""
    p = subparsers.add_parser(
        "screen",
        help="build what the holder screen needs (spoken prompts)",
        description="Tools for the holder-facing screen.",
    )
    sub = p.add_subparsers(dest="screen_command", metavar="ACTION", required=True)

    q = sub.add_parser(
        "voices",
        help="pre-render every fixed spoken prompt with espeak-ng",
        description=(
            "Render every fixed holder prompt, in Chinese and English, into DIR as WAV clips "
            "named as the screen asks for them. Clips already in DIR are kept. Needs espeak-ng "
            "(apt-get install espeak-ng)."
        ),
    )
    q.add_argument("--out", required=True, type=Path, metavar="DIR", help="clip directory")
    q.add_argument(
        "--speed",
        type=_speed,
        default=DEFAULT_SPEED,
        help=f"words per minute (default {DEFAULT_SPEED})",
    )
    q.add_argument("--voice-zh", default=VOICES["zh"], help=f"default {VOICES['zh']}")
    q.add_argument("--voice-en", default=VOICES["en"], help=f"default {VOICES['en']}")
    q.set_defaults(func=cmd_screen_voices)


def cmd_screen_voices(args: argparse.Namespace) -> int:
    catalog = VoiceCatalog(
        args.out, voices={"zh": args.voice_zh, "en": args.voice_en}, speed=args.speed
    )
    prompts = fixed_prompts()
    started = time.monotonic()
    try:
        # Checked first so that a missing espeak-ng or voice is one clear line, not a
        # failure on the first of many clips.
        catalog.check()
        rendered = catalog.prerender(prompts)
    except VoiceError as exc:
        print(f"onecard screen voices: {exc.reason}", file=sys.stderr)
        return 1
    elapsed = time.monotonic() - started
    size = 0
    seconds = 0.0
    for lang, text in prompts:
        data = catalog.render(lang, text).read_bytes()
        size += len(data)
        seconds += clip_info(data).duration
    print(
        f"{len(prompts)} clips in {args.out} ({rendered} rendered now in {elapsed:.1f} s): "
        f"{size / 1e6:.1f} MB, {seconds:.1f} s of speech"
    )
    return 0

"""Spoken prompts for the holder screen: espeak-ng renders each prompt to a WAV clip.

Every outcome the holder screen shows is also said, in Chinese (default) or English. The
fixed prompts (:func:`fixed_prompts`: every holder message of :mod:`terminal.outputs`
without amounts, and the screen's idle prompts) are rendered at build time with
``onecard screen voices``; anything else - a text with a fare or balance in it - is rendered
on first request by :meth:`VoiceCatalog.render` and kept in the same cache directory, which
is bounded (:mod:`terminal.screen.clipcache`: the fixed prompts kept, the others at most
``max_bytes`` and ``max_clips``, the least recently used removed first).

A clip's file name is a hash of what decides its sound (voice, speed, text), so a cache
directory can be filled at build time and served read-only at run time, and a change of
voice or speed never serves a stale clip. The browser fetches clips as ``/voice/<name>``;
:meth:`VoiceCatalog.path` maps such a name back to a file and refuses anything else.

espeak-ng runs as a child process with the text as one argument (never through a shell)
and a time-out; its output is checked to be a whole, non-empty WAV before it takes its name,
so neither a crash nor two threads rendering the same clip leave a half-written file where
the screen would serve it. The texts are reason-code messages and amounts: no personal data.
"""

from __future__ import annotations

import contextlib
import enum
import hashlib
import io
import json
import logging
import os
import re
import signal
import struct
import subprocess
import tempfile
import threading
import time
import wave
import weakref
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from terminal.errors import OneCardError
from terminal.host.atomicfile import write_atomically
from terminal.outputs import _FALLBACK, MESSAGES
from terminal.screen.clipcache import ClipCache

log = logging.getLogger(__name__)

VOICES: dict[str, str] = {"zh": "cmn", "en": "en-us"}
"""The espeak-ng voice for each screen language (``espeak-ng --voices`` lists them)."""

DEFAULT_SPEED = 150
"""Words per minute (espeak-ng ``-s``): a little slower than espeak's 175, for a noisy hall."""

MIN_SPEED, MAX_SPEED = 80, 450
"""The speeds espeak-ng accepts; it clamps others silently, which would give two names to
one sound."""

CLIP_NAME = re.compile(r"[0-9a-f]{32}\.wav")
"""What a clip's name looks like (:meth:`VoiceCatalog.clip_name`)."""

INSTALL_HINT = "apt-get install espeak-ng"

DEFAULT_CACHE_MB = 50
DEFAULT_CACHE_CLIPS = 200
"""The clips rendered at run time a catalog keeps (``[screen] voice_cache_mb`` and
``voice_cache_clips``): a clip is 100 to 350 KB, and a validator's recent balances are what
is said again."""


class VoiceFailure(enum.Enum):
    """Why a clip could not be rendered (:attr:`VoiceError.kind`)."""

    ESPEAK_MISSING = "espeak_missing"
    VOICE_MISSING = "voice_missing"
    TIMEOUT = "timeout"
    BAD_OUTPUT = "bad_output"
    CACHE_UNWRITABLE = "cache_unwritable"


class VoiceError(OneCardError):
    """A spoken prompt that cannot be rendered or stored; ``kind`` says why (espeak-ng not
    installed, the voice not installed, espeak-ng too slow, its output not a whole WAV, the
    cache directory not writable). The screen shows the message without sound."""

    code = "voice_error"

    def __init__(self, reason: str, kind: VoiceFailure) -> None:
        super().__init__(reason)
        self.kind = kind

    def to_json(self) -> dict[str, object]:
        out = super().to_json()
        out["kind"] = self.kind.value
        return out


# --- what is said ---------------------------------------------------------------------------

# Sentence ends a part may already carry; stripped so that joining never doubles them.
_ENDS = "。，．.,;；!！ \t\n"


def _check_lang(lang: str) -> None:
    if lang not in VOICES:
        raise ValueError(f"lang must be one of {', '.join(VOICES)}, not {lang!r}")


def spoken_text(title: str, detail: str, lang: str) -> str:
    """What is said for a holder message with ``title`` and ``detail`` in ``lang``
    (``zh``: ``请勿通行，请咨询工作人员。``; ``en``: ``Not accepted. Please ask the staff.``).
    An empty part is left out; both empty give ``""``."""
    _check_lang(lang)
    parts = [p for p in (title.strip().rstrip(_ENDS), detail.strip().rstrip(_ENDS)) if p]
    if not parts:
        return ""
    if lang == "zh":
        return "，".join(parts) + "。"
    return ". ".join(parts) + "."


def fixed_prompts(extra: Iterable[tuple[str, str]] = ()) -> list[tuple[str, str]]:
    """Every ``(lang, spoken text)`` the screen says without an amount in it: each holder
    message of :data:`terminal.outputs.MESSAGES` and the generic fall-backs, in ``zh`` and
    ``en``, then ``extra`` (already spoken texts, e.g. the idle prompts); duplicates once."""
    # The fall-backs are what message_for says for a reason code it does not know; they are
    # private to outputs, but every one of them can reach the holder, so it is pre-rendered.
    texts = [*MESSAGES.values(), *_FALLBACK.values()]
    prompts = [("zh", spoken_text(t.title_zh, t.detail_zh, "zh")) for t in texts] + [
        ("en", spoken_text(t.title_en, t.detail_en, "en")) for t in texts
    ]
    for lang, text in extra:
        _check_lang(lang)
        prompts.append((lang, text))
    return list(dict.fromkeys(p for p in prompts if p[1].strip()))


# --- clips ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClipInfo:
    """The shape of a WAV clip: channels, bytes per sample, frames per second and frames."""

    channels: int
    sample_width: int
    frame_rate: int
    frames: int

    @property
    def duration(self) -> float:
        """Seconds of sound."""
        return self.frames / self.frame_rate


def clip_info(data: bytes) -> ClipInfo:
    """The shape of the WAV ``data``; a :class:`VoiceError` (``bad_output``) unless it is a
    whole PCM WAV with at least one frame (not truncated, not garbage)."""
    try:
        with wave.open(io.BytesIO(data), "rb") as clip:
            info = ClipInfo(
                clip.getnchannels(), clip.getsampwidth(), clip.getframerate(), clip.getnframes()
            )
            # The header's frame count is what a player trusts; a short body is a cut file.
            body = len(clip.readframes(info.frames))
    except (wave.Error, EOFError, ValueError, struct.error) as exc:
        raise VoiceError(f"not a WAV file: {exc}", VoiceFailure.BAD_OUTPUT) from exc
    if info.channels < 1 or info.sample_width < 1 or info.frame_rate < 1 or info.frames < 1:
        raise VoiceError(f"empty or invalid WAV: {info}", VoiceFailure.BAD_OUTPUT)
    if body != info.frames * info.channels * info.sample_width:
        raise VoiceError(
            f"truncated WAV: {body} bytes of sound, header says {info.frames} frames",
            VoiceFailure.BAD_OUTPUT,
        )
    return info


class VoiceCatalog:
    """The spoken clips of one screen: rendered by espeak-ng into ``cache_dir`` on demand.

    ``voices`` maps screen languages to espeak-ng voices, ``speed`` is words per minute,
    ``command`` the espeak-ng executable (a name on PATH or a path), ``timeout`` the seconds
    one rendering may take, ``max_bytes`` and ``max_clips`` the bounds of the clips rendered
    at run time (the fixed prompts, :func:`fixed_prompts`, and those given to :meth:`keep`
    are kept outside them). Thread-safe: the screen's HTTP threads share one catalog.
    """

    def __init__(
        self,
        cache_dir: Path,
        voices: Mapping[str, str] = VOICES,
        speed: int = DEFAULT_SPEED,
        command: str = "espeak-ng",
        timeout: float = 10.0,
        max_bytes: int = DEFAULT_CACHE_MB * 1_000_000,
        max_clips: int = DEFAULT_CACHE_CLIPS,
    ) -> None:
        if not MIN_SPEED <= speed <= MAX_SPEED:
            raise ValueError(f"speed must be {MIN_SPEED}..{MAX_SPEED} words per minute")
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        self.cache_dir = Path(cache_dir)
        self.voices = dict(voices)
        self.speed = speed
        self.command = command
        self.timeout = timeout
        self._locks_guard = threading.Lock()
        # One lock per clip being rendered, gone when no thread holds it: texts with amounts
        # make the set of names open-ended, so they must not pile up for the process's life.
        self._locks: weakref.WeakValueDictionary[str, threading.Lock] = (
            weakref.WeakValueDictionary()
        )
        self._available: bool | None = None
        self.cache = ClipCache(self.cache_dir, max_bytes, max_clips, CLIP_NAME)
        self.keep(fixed_prompts())

    def _voice(self, lang: str) -> str:
        try:
            return self.voices[lang]
        except KeyError:
            raise ValueError(
                f"unknown lang {lang!r}: this catalog speaks {', '.join(self.voices)}"
            ) from None

    def keep(self, items: Iterable[tuple[str, str]]) -> None:
        """Keep the clips of ``(lang, text)`` (those of a language this catalog does not
        speak left out) whatever the bounds: prompts that recur all day."""
        self.cache.keep(self.clip_name(lang, text) for lang, text in items if lang in self.voices)

    def clip_name(self, lang: str, text: str) -> str:
        """The clip's file name: 32 hex digits of SHA-256 over (voice, speed, text), then
        ``.wav``. The same for the same sound, different when any of the three differs."""
        key = json.dumps([self._voice(lang), self.speed, text], ensure_ascii=False)
        return hashlib.sha256(key.encode("utf-8")).hexdigest()[:32] + ".wav"

    def path(self, name: str) -> Path | None:
        """The cached clip served as ``/voice/<name>``, or None when ``name`` is not a clip
        name (anything but 32 lowercase hex digits and ``.wav``: no directories, no ``..``)
        or no such clip has been rendered."""
        if not isinstance(name, str) or CLIP_NAME.fullmatch(name) is None:
            return None
        candidate = self.cache_dir / name
        # A regular file only: a symlink planted in the cache must not lead out of it.
        if not candidate.is_file() or candidate.is_symlink():
            return None
        self.cache.used(name)
        return candidate

    def render(self, lang: str, text: str) -> Path:
        """The clip of ``text`` spoken in ``lang``: the cached file when there is one, else
        rendered by espeak-ng now and cached. Raises :class:`VoiceError`; ValueError for an
        unknown ``lang`` or a text with nothing to say."""
        return self._render(lang, text)[0]

    def prerender(self, items: Iterable[tuple[str, str]]) -> int:
        """Render every ``(lang, text)`` not yet cached; returns how many were rendered now."""
        return sum(self._render(lang, text)[1] for lang, text in items)

    def _render(self, lang: str, text: str) -> tuple[Path, bool]:
        name = self.clip_name(lang, text)
        if not text.strip():
            raise ValueError("nothing to say: the text is empty")
        target = self.cache_dir / name
        if target.is_file():
            self.cache.used(name)
            return target, False
        with self._locks_guard:
            lock = self._locks.setdefault(name, threading.Lock())
        with lock:
            # Another thread may have rendered it while this one waited for the lock.
            if target.is_file():
                self.cache.used(name)
                return target, False
            data = self._synthesise(self._voice(lang), text)
            info = clip_info(data)
            try:
                self.cache_dir.mkdir(parents=True, exist_ok=True)
                # Room first: on a full disk the old clips must go before the new one fits.
                self.cache.make_room(name, len(data))
                # 0644: clips are not secret, and the build user may differ from the server's.
                write_atomically(target, data, mode=0o644)
                self.cache.stored(name, len(data))
            except OSError as exc:
                raise VoiceError(
                    f"cannot store {name} in {self.cache_dir}: {exc}",
                    VoiceFailure.CACHE_UNWRITABLE,
                ) from exc
        log.info(
            "rendered voice clip %s (%s, %.2f s, %d bytes)", name, lang, info.duration, len(data)
        )
        return target, True

    def _run(self, args: list[str]) -> subprocess.CompletedProcess[bytes]:
        """Run espeak-ng with ``args``; VoiceError when it is missing or takes too long."""
        try:
            # A session of its own, so that on time-out the whole group goes (a wrapper
            # script's children too), not only the process we started.
            proc = subprocess.Popen(
                [self.command, *args],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
        except OSError as exc:
            raise VoiceError(
                f"cannot run {self.command!r} ({exc.strerror or exc}): {INSTALL_HINT}",
                VoiceFailure.ESPEAK_MISSING,
            ) from exc
        try:
            _, stderr = proc.communicate(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            raise VoiceError(
                f"{self.command} took longer than {self.timeout:g} s", VoiceFailure.TIMEOUT
            ) from None
        return subprocess.CompletedProcess(proc.args, proc.returncode, b"", stderr)

    def _check_exit(self, result: subprocess.CompletedProcess[bytes], voice: str) -> None:
        message = result.stderr.decode("utf-8", "replace").strip()
        if result.returncode == 0:
            return
        if "voice does not exist" in message.lower():
            raise VoiceError(
                f"{self.command} has no voice {voice!r} (espeak-ng --voices lists them)",
                VoiceFailure.VOICE_MISSING,
            )
        raise VoiceError(
            f"{self.command} -v {voice} exited {result.returncode}: {message[:200]}",
            VoiceFailure.BAD_OUTPUT,
        )

    def _synthesise(self, voice: str, text: str) -> bytes:
        """The WAV bytes espeak-ng makes of ``text`` (not yet checked)."""
        started = time.monotonic()
        # espeak-ng writes the file and then seeks back to fill in the sizes, so it needs a
        # real file (not a pipe); a private directory keeps its half-written file out of the
        # cache that is served.
        with tempfile.TemporaryDirectory(prefix="onecard-voice-") as tmp:
            out = Path(tmp) / "clip.wav"
            args = ["-v", voice, "-s", str(self.speed), "-w", str(out), "--", text]
            self._check_exit(self._run(args), voice)
            try:
                data = out.read_bytes()
            except FileNotFoundError:
                raise VoiceError(
                    f"{self.command} -v {voice} wrote no file", VoiceFailure.BAD_OUTPUT
                ) from None
        log.debug(
            "espeak-ng %s took %.3f s for %d characters",
            voice,
            time.monotonic() - started,
            len(text),
        )
        return data

    def check(self) -> None:
        """Raise :class:`VoiceError` unless espeak-ng runs and has every voice of the
        catalog (``espeak_missing`` / ``voice_missing``, or ``timeout``)."""
        for voice in dict.fromkeys(self.voices.values()):
            # -q: load the voice and say "a" to nothing - no file, no sound device needed.
            self._check_exit(self._run(["-q", "-v", voice, "--", "a"]), voice)

    def available(self) -> bool:
        """True when espeak-ng runs and has every voice (checked once, then remembered)."""
        if self._available is None:
            try:
                self.check()
                self._available = True
            except VoiceError as exc:
                log.warning("spoken prompts unavailable: %s", exc.reason)
                self._available = False
        return self._available


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    # The group may be gone already: espeak-ng finished just as the time ran out.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate()

"""Spoken prompts of the holder screen (terminal/screen/voice.py): names, lookup, espeak-ng
failures through fake executables, concurrent renders, and the real espeak-ng."""

from __future__ import annotations

import io
import shutil
import stat
import threading
import time
import wave
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from onecard.cli import main
from terminal.outputs import MESSAGES, Outcome, message_for
from terminal.screen.voice import (
    CLIP_NAME,
    VOICES,
    VoiceCatalog,
    VoiceError,
    VoiceFailure,
    clip_info,
    fixed_prompts,
    spoken_text,
)

ESPEAK = shutil.which("espeak-ng")
needs_espeak = pytest.mark.skipif(ESPEAK is None, reason="espeak-ng not installed")


def fake_espeak(tmp_path: Path, body: str) -> str:
    """An executable standing in for espeak-ng: ``$out`` is the ``-w`` file it was given,
    then ``body`` runs (sh)."""
    script = tmp_path / "fake-espeak"
    script.write_text(
        "#!/bin/sh\n"
        'out=""\n'
        'while [ $# -gt 0 ]; do [ "$1" = -w ] && { shift; out="$1"; }; shift; done\n' + body
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return str(script)


def wav_bytes(frames: int = 100) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(22050)
        out.writeframes(b"\x01\x00" * frames)
    return buf.getvalue()


# --- what is said ---------------------------------------------------------------------------


def test_spoken_text_joins_per_language() -> None:
    assert spoken_text("请勿通行", "请咨询工作人员", "zh") == "请勿通行，请咨询工作人员。"
    assert spoken_text("Not accepted", "Please ask the staff", "en") == (
        "Not accepted. Please ask the staff."
    )


def test_spoken_text_empty_detail_and_no_doubled_ends() -> None:
    assert spoken_text("请通行", "", "zh") == "请通行。"
    assert spoken_text("Please pass", "  ", "en") == "Please pass."
    assert spoken_text("请通行。", "", "zh") == "请通行。"
    assert spoken_text("", "", "en") == ""


def test_spoken_text_unknown_lang() -> None:
    with pytest.raises(ValueError):
        spoken_text("a", "b", "zh+en")


def test_fixed_prompts_cover_every_message_and_fallback() -> None:
    prompts = fixed_prompts()
    assert len(prompts) == len(set(prompts))
    for text in MESSAGES.values():
        assert ("zh", spoken_text(text.title_zh, text.detail_zh, "zh")) in prompts
        assert ("en", spoken_text(text.title_en, text.detail_en, "en")) in prompts
    # What the screen says for an unknown reason code is pre-rendered too.
    for outcome in Outcome:
        for lang in ("zh", "en"):
            msg = message_for(outcome, "no_such_reason", lang=lang)
            assert (lang, spoken_text(msg.title, msg.detail, lang)) in prompts


def test_fixed_prompts_extra() -> None:
    extra = [("zh", "请刷社保卡。"), ("en", "Tap your card."), ("zh", "请刷社保卡。")]
    prompts = fixed_prompts(extra)
    assert prompts[: len(fixed_prompts())] == fixed_prompts()
    assert prompts[-2:] == extra[:2]
    with pytest.raises(ValueError):
        fixed_prompts([("fr", "Bonjour.")])


# --- names and lookup -----------------------------------------------------------------------


def test_clip_name_deterministic_and_distinct(tmp_path: Path) -> None:
    base = VoiceCatalog(tmp_path)
    name = base.clip_name("zh", "请通行。")
    assert CLIP_NAME.fullmatch(name)
    assert VoiceCatalog(tmp_path / "other").clip_name("zh", "请通行。") == name
    assert base.clip_name("zh", "请通行") != name
    assert VoiceCatalog(tmp_path, speed=151).clip_name("zh", "请通行。") != name
    assert VoiceCatalog(tmp_path, voices={"zh": "yue"}).clip_name("zh", "请通行。") != name
    # The name follows the voice, not the language label.
    assert VoiceCatalog(tmp_path, voices={"zh": "en-us"}).clip_name("zh", "x") == (
        base.clip_name("en", "x")
    )


def test_unknown_lang(tmp_path: Path) -> None:
    catalog = VoiceCatalog(tmp_path)
    with pytest.raises(ValueError):
        catalog.clip_name("fr", "Bonjour")
    with pytest.raises(ValueError):
        catalog.render("fr", "Bonjour")


def test_bad_parameters(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        VoiceCatalog(tmp_path, speed=10)
    with pytest.raises(ValueError):
        VoiceCatalog(tmp_path, timeout=0)
    with pytest.raises(ValueError):
        VoiceCatalog(tmp_path).render("zh", "  ")


@given(
    st.sampled_from(sorted(VOICES)),
    st.text(),
    st.text(),
    st.integers(min_value=80, max_value=450),
)
def test_clip_name_shape_and_collisions(lang: str, a: str, b: str, speed: int) -> None:
    catalog = VoiceCatalog(Path("/nonexistent"), speed=speed)
    name = catalog.clip_name(lang, a)
    assert CLIP_NAME.fullmatch(name)
    assert catalog.path(name) is None
    assert (catalog.clip_name(lang, b) == name) == (a == b)


@pytest.mark.parametrize(
    "name",
    [
        "../" + "0" * 32 + ".wav",
        "/etc/passwd",
        "0" * 32 + ".wav/",
        "0" * 32 + ".wav\n",
        "0" * 32 + ".WAV",
        "A" * 32 + ".wav",
        "0" * 31 + ".wav",
        "0" * 33 + ".wav",
        "0" * 32 + ".wav.tmp",
        "." + "0" * 31 + ".wav",
        "%2e%2e%2f" + "0" * 23 + ".wav",
        "",
    ],
)
def test_path_refuses_bad_names(tmp_path: Path, name: str) -> None:
    (tmp_path / "cache").mkdir()
    # Every refused name would otherwise find a file: the refusal is the name check.
    (tmp_path / ("0" * 32 + ".wav")).write_bytes(wav_bytes())
    assert VoiceCatalog(tmp_path / "cache").path(name) is None


@settings(max_examples=300)
@given(st.text())
def test_path_only_accepts_clip_names(name: str) -> None:
    catalog = VoiceCatalog(Path("/"))
    if CLIP_NAME.fullmatch(name) is None:
        assert catalog.path(name) is None


def test_path_finds_cached_clip_but_not_symlink(tmp_path: Path) -> None:
    catalog = VoiceCatalog(tmp_path)
    name = catalog.clip_name("zh", "请通行。")
    assert catalog.path(name) is None
    (tmp_path / name).write_bytes(wav_bytes())
    assert catalog.path(name) == tmp_path / name
    other = catalog.clip_name("en", "Please pass.")
    (tmp_path / other).symlink_to(tmp_path / name)
    assert catalog.path(other) is None


def test_render_uses_cache_without_running_espeak(tmp_path: Path) -> None:
    catalog = VoiceCatalog(tmp_path, command=str(tmp_path / "missing"))
    name = catalog.clip_name("en", "Please pass.")
    (tmp_path / name).write_bytes(wav_bytes())
    assert catalog.render("en", "Please pass.") == tmp_path / name
    assert catalog.prerender([("en", "Please pass.")]) == 0


# --- the bounded cache ----------------------------------------------------------------------


class SilentCatalog(VoiceCatalog):
    """A catalog whose "espeak-ng" makes a clip of ``frames`` frames at once."""

    frames = 2205

    def _synthesise(self, voice: str, text: str) -> bytes:
        return wav_bytes(self.frames)


def balance(i: int) -> tuple[str, str]:
    """A text with an amount in it: a new clip each time, as a validator's balances are."""
    return "zh", spoken_text("请通行", f"余额{i}.00元", "zh")


def test_clips_rendered_at_run_time_stay_within_the_bounds(tmp_path: Path) -> None:
    catalog = SilentCatalog(tmp_path, max_clips=5)
    fixed = fixed_prompts()
    assert catalog.prerender(fixed) == len(fixed)
    names = [catalog.render(*balance(i)).name for i in range(40)]
    on_disk = {p.name for p in tmp_path.iterdir()}
    fixed_names = {catalog.clip_name(lang, text) for lang, text in fixed}
    # Every fixed prompt is kept; of the others, the five most recent.
    assert on_disk == fixed_names | set(names[-5:])
    assert catalog.cache.totals == (5, 5 * len(wav_bytes(SilentCatalog.frames)))


def test_the_size_bound(tmp_path: Path) -> None:
    size = len(wav_bytes(SilentCatalog.frames))
    catalog = SilentCatalog(tmp_path, max_bytes=3 * size + size // 2)
    names = [catalog.render(*balance(i)).name for i in range(10)]
    assert {p.name for p in tmp_path.iterdir()} == set(names[-3:])


def test_a_clip_looked_up_or_rendered_again_is_recent(tmp_path: Path) -> None:
    catalog = SilentCatalog(tmp_path, max_clips=3)
    first = catalog.render(*balance(0)).name
    catalog.render(*balance(1))
    catalog.render(*balance(2))
    assert catalog.path(first) is not None  # served again
    catalog.render(*balance(3))
    assert catalog.path(first) is not None
    assert catalog.path(catalog.clip_name(*balance(1))) is None
    catalog.render(*balance(2))  # found in the cache: recent too
    catalog.render(*balance(4))
    assert catalog.path(catalog.clip_name(*balance(2))) is not None


def test_clips_already_there_count_at_start(tmp_path: Path) -> None:
    # A terminal that ran without a bound: the next clip brings the directory within it.
    old = SilentCatalog(tmp_path, max_clips=1000)
    for i in range(20):
        old.render(*balance(i))
    catalog = SilentCatalog(tmp_path, max_clips=4)
    catalog.render(*balance(100))
    assert len(list(tmp_path.iterdir())) == 4


# --- checking espeak-ng's output ------------------------------------------------------------


def test_clip_info() -> None:
    info = clip_info(wav_bytes(2205))
    assert (info.channels, info.sample_width, info.frame_rate) == (1, 2, 22050)
    assert info.duration == pytest.approx(0.1)
    for bad in (b"", b"garbage", wav_bytes(0), wav_bytes(100)[:-10]):
        with pytest.raises(VoiceError) as err:
            clip_info(bad)
        assert err.value.kind is VoiceFailure.BAD_OUTPUT


@given(st.binary(max_size=200))
def test_clip_info_never_crashes(data: bytes) -> None:
    try:
        assert clip_info(data).frames > 0
    except VoiceError as exc:
        assert exc.kind is VoiceFailure.BAD_OUTPUT


# --- espeak-ng failures ---------------------------------------------------------------------


def test_missing_command(tmp_path: Path) -> None:
    catalog = VoiceCatalog(tmp_path / "cache", command=str(tmp_path / "no-espeak-ng"))
    with pytest.raises(VoiceError) as err:
        catalog.render("zh", "请通行。")
    assert err.value.kind is VoiceFailure.ESPEAK_MISSING
    assert "apt-get install espeak-ng" in err.value.reason
    assert err.value.to_json()["kind"] == "espeak_missing"
    assert catalog.available() is False


def test_garbage_output(tmp_path: Path) -> None:
    command = fake_espeak(tmp_path, 'printf "not a wav at all" > "$out"\n')
    catalog = VoiceCatalog(tmp_path / "cache", command=command)
    with pytest.raises(VoiceError) as err:
        catalog.render("en", "Please pass.")
    assert err.value.kind is VoiceFailure.BAD_OUTPUT
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())


def test_no_output_and_failure_exit(tmp_path: Path) -> None:
    catalog = VoiceCatalog(tmp_path / "cache", command=fake_espeak(tmp_path, "exit 0\n"))
    with pytest.raises(VoiceError) as err:
        catalog.render("en", "Please pass.")
    assert err.value.kind is VoiceFailure.BAD_OUTPUT
    catalog = VoiceCatalog(
        tmp_path / "cache", command=fake_espeak(tmp_path, "echo boom >&2; exit 2\n")
    )
    with pytest.raises(VoiceError) as err:
        catalog.render("en", "Please pass.")
    assert err.value.kind is VoiceFailure.BAD_OUTPUT
    assert "boom" in err.value.reason


def test_timeout_kills_the_whole_group(tmp_path: Path) -> None:
    # No exec: the shell waits on a child sleep that holds the stderr pipe. Only killing
    # the process group lets the render return at the time-out rather than after 60 s.
    catalog = VoiceCatalog(
        tmp_path / "cache", command=fake_espeak(tmp_path, "sleep 60\n"), timeout=0.3
    )
    started = time.monotonic()
    with pytest.raises(VoiceError) as err:
        catalog.render("zh", "请通行。")
    assert err.value.kind is VoiceFailure.TIMEOUT
    assert time.monotonic() - started < 10


def test_missing_voice_fake(tmp_path: Path) -> None:
    body = 'echo "Error: The specified espeak-ng voice does not exist." >&2; exit 1\n'
    catalog = VoiceCatalog(tmp_path / "cache", command=fake_espeak(tmp_path, body))
    with pytest.raises(VoiceError) as err:
        catalog.render("zh", "请通行。")
    assert err.value.kind is VoiceFailure.VOICE_MISSING


def test_unwritable_cache(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache directory's parent should be")
    command = fake_espeak(tmp_path, 'cp "$WAV" "$out"\n')
    (tmp_path / "clip.wav").write_bytes(wav_bytes())
    catalog = VoiceCatalog(blocker / "cache", command=command)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WAV", str(tmp_path / "clip.wav"))
        with pytest.raises(VoiceError) as err:
            catalog.render("en", "Please pass.")
    assert err.value.kind is VoiceFailure.CACHE_UNWRITABLE


def test_concurrent_renders_of_one_clip(tmp_path: Path) -> None:
    calls = tmp_path / "calls"
    # Slow enough that the threads overlap; every run is logged to count them.
    body = f'echo run >> "{calls}"; sleep 0.2; cp "{tmp_path / "clip.wav"}" "$out"\n'
    (tmp_path / "clip.wav").write_bytes(wav_bytes(4410))
    catalog = VoiceCatalog(tmp_path / "cache", command=fake_espeak(tmp_path, body))
    barrier = threading.Barrier(8)

    def worker(_: int) -> Path:
        barrier.wait()  # all eight ask at once
        return catalog.render("zh", "请通行。")

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(worker, range(8)))  # re-raises any thread's error
    assert len(set(results)) == 1 and len(results) == 8
    assert calls.read_text().count("run") == 1
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [results[0].name]
    assert clip_info(results[0].read_bytes()).duration == pytest.approx(0.2)


# --- the real espeak-ng ---------------------------------------------------------------------


@needs_espeak
@pytest.mark.parametrize(
    ("lang", "text"),
    [("zh", "余额不足，请充值后再试。"), ("en", "Insufficient balance. Please top up.")],
)
def test_real_espeak(tmp_path: Path, lang: str, text: str) -> None:
    catalog = VoiceCatalog(tmp_path)
    assert catalog.available()
    clip = catalog.render(lang, text)
    assert clip.name == catalog.clip_name(lang, text)
    assert catalog.path(clip.name) == clip
    info = clip_info(clip.read_bytes())
    assert (info.channels, info.sample_width, info.frame_rate) == (1, 2, 22050)
    assert info.duration > 0.3
    assert [p.name for p in tmp_path.iterdir()] == [clip.name]


@needs_espeak
def test_real_espeak_missing_voice(tmp_path: Path) -> None:
    # Not "no-such-voice": espeak-ng would take that for Norwegian ("no") and a variant.
    catalog = VoiceCatalog(tmp_path, voices={"zh": "cmn", "en": "nosuchvoice"})
    assert catalog.available() is False
    catalog.render("zh", "请通行。")
    with pytest.raises(VoiceError) as err:
        catalog.render("en", "Please pass.")
    assert err.value.kind is VoiceFailure.VOICE_MISSING


@needs_espeak
def test_cli_renders_every_fixed_prompt(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "voices"
    assert main(["screen", "voices", "--out", str(out)]) == 0
    count = len(fixed_prompts())
    names = sorted(p.name for p in out.iterdir())
    assert len(names) == count
    catalog = VoiceCatalog(out)
    assert names == sorted(catalog.clip_name(lang, text) for lang, text in fixed_prompts())
    assert f"{count} clips" in capsys.readouterr().out
    assert main(["screen", "voices", "--out", str(out)]) == 0
    assert f"({count} clips" not in (printed := capsys.readouterr().out)
    assert "0 rendered now" in printed


def test_cli_without_espeak(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert main(["screen", "voices", "--out", str(tmp_path / "voices")]) != 0
    assert "apt-get install espeak-ng" in capsys.readouterr().err
    assert not (tmp_path / "voices").exists()

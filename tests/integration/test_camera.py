"""The camera path end to end: a video file of phone frames through the real CameraScanner
(``cv2.VideoCapture`` on the file, zxing-cpp decoding, the capture and decode threads)."""

from __future__ import annotations

from pathlib import Path

import pytest

from drivers.camera import CameraScanner
from firmware_sim.qr_frames import make_scan_video, sample_code_texts
from terminal.devices.scanner import ScanEvent
from terminal.errors import CameraError

pytestmark = pytest.mark.integration

FPS = 15.0
TEXTS = sample_code_texts(3, seed=21)
A, B, C = TEXTS


def read_all(scanner: CameraScanner, timeout: float = 30.0) -> list[ScanEvent]:
    """Every event until the file ends (read returns None once the source is exhausted)."""
    events = []
    while (event := scanner.read(timeout=timeout)) is not None:
        events.append(event)
    assert scanner.exhausted, "read returned None before the file ended"
    return events


@pytest.fixture(scope="module")
def session_video(tmp_path_factory) -> Path:
    # A, then B, then B again after a 4-frame (0.27 s) blank, C, then A again.
    path = tmp_path_factory.mktemp("camera") / "session.avi"
    return make_scan_video([A, B, B, C, A], path, frames_per_code=6, gap_frames=4, fps=FPS)


@pytest.fixture(scope="module")
def changing_video(tmp_path_factory) -> Path:
    # Codes that change from one frame to the next, with no blank between them.
    path = tmp_path_factory.mktemp("camera") / "changing.avi"
    return make_scan_video([A, B, C], path, frames_per_code=5, gap_frames=0, fps=FPS)


def test_one_event_per_appearance_in_order(session_video) -> None:
    # A window shorter than the blank: B coming back is a new appearance.
    with CameraScanner(str(session_video), realtime=False, dedupe_seconds=0.2) as scanner:
        events = read_all(scanner)
    assert [e.text for e in events] == [A, B, B, C, A]
    assert all(e.symbology == "Q1" and e.source == str(session_video) for e in events)
    assert all(e.raw == e.text.encode() for e in events)
    frames = [e.meta["frame"] for e in events]
    assert frames == sorted(frames)


def test_comeback_within_window_is_the_same_event(session_video) -> None:
    # The default 2 s window covers B's short absence, not A's return after ~2.5 s.
    with CameraScanner(str(session_video), realtime=False, dedupe_seconds=2.0) as scanner:
        events = read_all(scanner)
    assert [e.text for e in events] == [A, B, C, A]


def test_changed_code_on_the_next_frame_is_a_new_event(changing_video) -> None:
    with CameraScanner(str(changing_video), realtime=False) as scanner:
        events = read_all(scanner)
    assert [e.text for e in events] == [A, B, C]


def test_realtime_playback_gives_the_same_events(changing_video) -> None:
    with CameraScanner(str(changing_video), realtime=True) as scanner:
        events = read_all(scanner)
        assert scanner.read(timeout=0) is None
    assert [e.text for e in events] == [A, B, C]


def test_decode_rate_is_bounded(session_video) -> None:
    # 15 fps file, 5 decodes per second of video: one frame in three is decoded.
    with CameraScanner(str(session_video), realtime=False, decode_fps=5.0) as scanner:
        read_all(scanner)
        stats = scanner.stats
    duration = stats.frames / FPS
    assert stats.frames == 4 + 5 * (6 + 4)
    assert stats.decodes <= duration * 5.0 + 1
    assert stats.decodes >= duration * 5.0 - 1


def test_unopenable_sources_raise_camera_error(tmp_path) -> None:
    with pytest.raises(CameraError, match="no such file"):
        CameraScanner(str(tmp_path / "missing.avi"))
    junk = tmp_path / "junk.avi"
    junk.write_bytes(b"not a video at all")
    with pytest.raises(CameraError, match="cannot open"):
        CameraScanner(str(junk))


def test_close_stops_promptly(session_video) -> None:
    scanner = CameraScanner(str(session_video), realtime=True)
    first = scanner.read(timeout=10)
    assert first is not None and first.text == A
    scanner.close()
    assert not any(t.is_alive() for t in (scanner._capture_thread, scanner._decode_thread))
    assert scanner.read(timeout=5) is None

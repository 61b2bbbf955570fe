"""Camera QR scanner: OpenCV ``VideoCapture`` for frames, zxing-cpp for decoding.

zxing-cpp finds far more real-world codes than OpenCV's own ``QRCodeDetector`` (tilted,
small, blurred; see ``bench/ecode_decode.py``) and is faster, so OpenCV only captures.

:class:`CameraScanner` runs two daemon threads:

- the *capture* thread grabs every frame the source delivers (a camera must be drained, or
  its driver buffer hands us stale frames) and passes the frames due for decoding on;
- the *decode* thread decodes at most ``decode_fps`` frames per second and turns codes into
  :class:`~terminal.devices.scanner.ScanEvent` values, one per appearance of a code.

Sources: a device index (``0``), a video file, or a stream URL - whatever ``cv2.VideoCapture``
opens. A video file is played at its own frame rate by default (``realtime=True``), so it
behaves like a camera and decoding never takes more than ``decode_fps`` calls per second of
wall time; with ``realtime=False`` the file is read as fast as one core allows (tests,
offline analysis) and every frame due for decoding is decoded, none dropped - the result
then depends only on the file, not on the machine's load.

Which frames are decoded and the de-duplication window are reckoned in *frame time*: the
media time of the frame for a file (``frame index / fps``), ``clock.monotonic()`` at capture
for a live source.
"""

from __future__ import annotations

import logging
import math
import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import zxingcpp

from terminal.devices.scanner import ScanEvent
from terminal.errors import CameraError
from terminal.host.clock import Clock, SystemClock

log = logging.getLogger(__name__)

# zxing-cpp 3.x: QRCode is the family (Model 1, Model 2, Micro, rMQR); our codes are always
# Model 2, and asking only for it skips the other finders. 2.x has no QRCodeModel2.
REOPEN_EVERY = 20
"""Failed grabs (about ten seconds with the growing wait) before a device is reopened."""
GRAB_RETRY_STEP = 0.05
"""The wait after the n-th failed grab in a row is n times this (at most a second)."""
_QR_FORMAT = getattr(zxingcpp.BarcodeFormat, "QRCodeModel2", zxingcpp.BarcodeFormat.QRCode)


@dataclass(frozen=True)
class DecodedCode:
    """One code found in an image."""

    text: str
    raw: bytes
    symbology: str
    """AIM identifier without the ``]`` (``Q1``)."""


def _gray(img: np.ndarray) -> np.ndarray:
    if img.ndim == 2:
        return img
    if img.ndim == 3 and img.shape[2] == 3:
        return cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    if img.ndim == 3 and img.shape[2] == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2GRAY)
    if img.ndim == 3 and img.shape[2] == 1:
        return img[:, :, 0]
    raise CameraError(f"not an image: array of shape {img.shape}")


def _read(gray: np.ndarray, **options: object) -> list[DecodedCode]:
    found = zxingcpp.read_barcodes(
        np.ascontiguousarray(gray),
        formats=_QR_FORMAT,
        try_rotate=True,
        try_downscale=True,
        try_invert=True,
        **options,
    )
    out = []
    for code in found:
        if not code.valid:
            continue
        symbology = code.symbology_identifier.removeprefix("]") or "Q1"
        out.append(DecodedCode(code.text, bytes(code.bytes), symbology))
    return out


def _sharpen(gray: np.ndarray) -> np.ndarray:
    return cv2.addWeighted(gray, 1.8, cv2.GaussianBlur(gray, (0, 0), 2.0), -0.8, 0)


def _upscale(gray: np.ndarray) -> np.ndarray:
    return cv2.resize(gray, None, fx=1.5, fy=1.5, interpolation=cv2.INTER_CUBIC)


def _equalize(gray: np.ndarray) -> np.ndarray:
    return cv2.createCLAHE(clipLimit=2.0, tileGridSize=(8, 8)).apply(gray)


# Later passes for frames the first pass found nothing in, cheapest first. Each one rescues
# a kind of frame a phone screen produces: uneven light (other binarizers), motion and focus
# blur (unsharp mask), small or far codes (upscale), glare and low contrast (CLAHE).
_RESCUE_PASSES: tuple[tuple[Callable[[np.ndarray], np.ndarray] | None, dict[str, object]], ...] = (
    (None, {"binarizer": zxingcpp.Binarizer.GlobalHistogram}),
    (None, {"binarizer": zxingcpp.Binarizer.FixedThreshold}),
    (_sharpen, {}),
    (_upscale, {}),
    (_equalize, {}),
)


def decode_codes(img: np.ndarray, thorough: bool = True) -> list[DecodedCode]:
    """Every QR code zxing-cpp finds in ``img`` (greyscale, BGR or BGRA ``uint8`` array),
    in any orientation; inverted (light-on-dark) codes too. ``thorough`` tries the rescue
    passes (other binarizers, sharpening, upscaling, contrast equalisation) when the first
    pass finds nothing: several times the work on an empty frame, which the camera's decode
    rate bound keeps in check."""
    if img.dtype != np.uint8:
        raise CameraError(f"image must be uint8, not {img.dtype}")
    gray = _gray(img)
    found = _read(gray)
    if found or not thorough:
        return found
    for transform, options in _RESCUE_PASSES:
        found = _read(transform(gray) if transform else gray, **options)
        if found:
            return found
    return []


def decode_image(img: np.ndarray | str | os.PathLike[str]) -> list[str]:
    """The texts of every QR code in ``img``: an image array (see :func:`decode_codes`) or the
    path of an image file. :class:`CameraError` when the file cannot be read as an image."""
    if not isinstance(img, np.ndarray):
        path = Path(img)
        loaded = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        if loaded is None:
            reason = "no such file" if not path.exists() else "not an image OpenCV can read"
            raise CameraError(f"cannot read image {path}: {reason}")
        img = loaded
    return [code.text for code in decode_codes(img)]


@dataclass
class CameraStats:
    """Counters of one :class:`CameraScanner` run (read them after ``close`` or at any time)."""

    frames: int = 0
    """Frames grabbed from the source."""
    decodes: int = 0
    """Decoder calls (frames decoded)."""
    dropped: int = 0
    """Frames due for decoding that a newer frame replaced before the decoder got to them."""
    events: int = 0


_EOF = object()


def _is_file_source(source: int | str) -> bool:
    """A video file (played by frame index), as opposed to a device or a stream URL."""
    if isinstance(source, int) or "://" in source:
        return False
    path = Path(source)
    return not (path.exists() and path.is_char_device())  # /dev/video0 is a live camera


class CameraScanner:
    """A :class:`terminal.devices.scanner.Scanner` on a camera, video file or stream.

    ``decode_fps`` caps decoding (one zxing-cpp call is single-threaded, so the scanner never
    needs more than that share of one core); ``size`` asks a device for a capture resolution
    (files keep their own); the same code text seen again within ``dedupe_seconds`` of frame
    time - or on consecutive decoded frames - is one event. Raises :class:`CameraError` when
    the source cannot be opened.
    """

    def __init__(
        self,
        source: int | str | os.PathLike[str],
        decode_fps: float = 15.0,
        size: tuple[int, int] | None = None,
        dedupe_seconds: float = 2.0,
        clock: Clock | None = None,
        realtime: bool = True,
        decoder: Callable[[np.ndarray], list[DecodedCode]] = decode_codes,
        on_state: Callable[[str], None] | None = None,
    ) -> None:
        if decode_fps <= 0:
            raise ValueError("decode_fps must be > 0")
        if isinstance(source, os.PathLike):
            source = os.fspath(source)
        self.source = str(source)
        self.decode_fps = decode_fps
        self.dedupe_seconds = dedupe_seconds
        self.realtime = realtime
        self.stats = CameraStats()
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._decoder = decoder
        self._is_file = _is_file_source(source)
        self._source, self._size = source, size
        self._on_state = on_state
        self._capture = self._open(source, size)
        fps = self._capture.get(cv2.CAP_PROP_FPS)
        self.source_fps = fps if fps and math.isfinite(fps) and fps > 0 else 30.0
        self._exhausted = threading.Event()
        self._stop = threading.Event()
        self._events: queue.Queue[ScanEvent | object] = queue.Queue()
        # Hand-over of frames from capture to decode: one slot. A live source (or a file in
        # real time) overwrites it - the decoder wants the newest frame; a file read as fast
        # as possible waits for the decoder, so no due frame is lost.
        self._slot: tuple[np.ndarray, float, float, int] | object | None = None
        self._slot_cond = threading.Condition()
        self._seen: dict[str, float] = {}
        self._last_texts: set[str] = set()
        self._capture_thread = threading.Thread(
            target=self._capture_loop, name=f"camera-capture[{self.source}]", daemon=True
        )
        self._decode_thread = threading.Thread(
            target=self._decode_loop, name=f"camera-decode[{self.source}]", daemon=True
        )
        self._capture_thread.start()
        self._decode_thread.start()

    # --- opening ------------------------------------------------------------------------

    def _open(self, source: int | str, size: tuple[int, int] | None) -> cv2.VideoCapture:
        if self._is_file and not Path(source).exists():  # type: ignore[arg-type]
            raise CameraError(f"cannot open camera source {source!r}: no such file")
        try:
            capture = cv2.VideoCapture(source)
        except cv2.error as exc:
            raise CameraError(f"cannot open camera source {source!r}: {exc}") from exc
        if not capture.isOpened():
            capture.release()
            what = "video device" if isinstance(source, int) else "file or stream"
            raise CameraError(
                f"cannot open camera source {source!r}: no OpenCV back-end could open this "
                f"{what} (missing, busy, or an unsupported format)"
            )
        if size is not None and not self._is_file:
            capture.set(cv2.CAP_PROP_FRAME_WIDTH, size[0])
            capture.set(cv2.CAP_PROP_FRAME_HEIGHT, size[1])
        return capture

    # --- the Scanner interface ----------------------------------------------------------

    @property
    def exhausted(self) -> bool:
        """True once a file source has ended and its last frame is decoded: the events still
        queued are returned by :meth:`read`, then it returns None at once."""
        return self._exhausted.is_set()

    def read(self, timeout: float | None = None) -> ScanEvent | None:
        """The next event; None when ``timeout`` seconds pass without one, or at once when a
        file source has ended (then :attr:`exhausted` is True) or the scanner is closed."""
        if self._stop.is_set() and self._events.empty():
            return None
        try:
            item = self._events.get(timeout=timeout)
        except queue.Empty:
            return None
        if item is _EOF:
            self._events.put(_EOF)  # every later read sees the end, too
            return None
        return item  # type: ignore[return-value]

    def close(self) -> None:
        """Stop both threads and release the source. Returns within about one frame."""
        self._stop.set()
        with self._slot_cond:
            self._slot_cond.notify_all()
        for thread in (self._capture_thread, self._decode_thread):
            if thread is not threading.current_thread():
                thread.join(timeout=5)
        self._events.put(_EOF)

    def __enter__(self) -> CameraScanner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- capture ------------------------------------------------------------------------

    def _capture_loop(self) -> None:
        try:
            self._capture_frames()
        except Exception:  # a dying capture thread must still end the stream for readers
            log.exception("camera capture failed on %s", self.source)
        finally:
            self._capture.release()
            self._put_frame(_EOF, wait=True)

    def _capture_frames(self) -> None:
        interval = 1.0 / self.decode_fps
        next_due = -math.inf
        started = time.monotonic()
        index = 0
        failures = 0
        while not self._stop.is_set():
            if not self._capture.grab():
                if self._is_file:
                    return
                # A camera that stops delivering (unplugged, USB reset): keep trying, slowly,
                # so the kiosk recovers when it comes back without a restart - and reopen
                # the device now and then, since a replugged camera is a new device that
                # the old capture never sees again.
                failures += 1
                if failures in (1, 10) or failures % 100 == 0:
                    log.warning("camera %s delivers no frames (%d tries)", self.source, failures)
                if failures == 1:
                    self._report("gone")
                if failures % REOPEN_EVERY == 0:
                    self._reopen()
                self._stop.wait(min(1.0, GRAB_RETRY_STEP * failures))
                continue
            if failures:
                log.info("camera %s delivers frames again", self.source)
                self._report("connected")
            failures = 0
            self.stats.frames += 1
            captured = self._clock.monotonic()
            if self._is_file:
                frame_time = index / self.source_fps
                if self.realtime:
                    # Play the file at its own rate, like a camera would deliver it.
                    delay = started + frame_time - time.monotonic()
                    if delay > 0 and self._stop.wait(delay):
                        return
            else:
                frame_time = captured
            index += 1
            if self._is_file:
                # Sample the file at decode_fps of media time; half a frame of slack so a
                # 15 fps file decoded at 15 fps decodes every frame. Skipped frames are only
                # grabbed, never converted.
                if frame_time + 0.5 / self.source_fps < next_due:
                    continue
                next_due = max(next_due, frame_time) + interval
            ok, frame = self._capture.retrieve()
            if not ok:
                continue
            self._put_frame(
                (frame, frame_time, captured, index - 1), wait=self._is_file and not self.realtime
            )

    def _reopen(self) -> None:
        """Release the capture and open the device again (it may have come back under the
        same index or path); a failure is logged and the next round tries again."""
        self._capture.release()
        try:
            self._capture = self._open(self._source, self._size)
        except CameraError as exc:
            log.info("camera %s not back yet: %s", self.source, exc.reason)
            self._capture = cv2.VideoCapture()  # an empty capture: grab() fails, we retry

    def _report(self, state: str) -> None:
        if self._on_state is None:
            return
        try:
            self._on_state(state)
        except Exception:  # the status page must not stop the camera
            log.exception("camera %s: state listener failed", self.source)

    def _put_frame(self, item: object, wait: bool) -> None:
        with self._slot_cond:
            if wait:
                while self._slot is not None and not self._stop.is_set():
                    self._slot_cond.wait(0.5)
            elif self._slot is not None and self._slot is not _EOF:
                self.stats.dropped += 1
            if self._slot is _EOF:
                return
            self._slot = item
            self._slot_cond.notify_all()

    # --- decode -------------------------------------------------------------------------

    def _take_frame(self) -> object | None:
        with self._slot_cond:
            while self._slot is None and not self._stop.is_set():
                self._slot_cond.wait(0.5)
            item, self._slot = self._slot, None
            if item is _EOF:
                self._slot = _EOF  # stays the last word
            self._slot_cond.notify_all()
            return item

    def _decode_loop(self) -> None:
        min_interval = 1.0 / self.decode_fps
        last = -math.inf
        try:
            while not self._stop.is_set():
                if self.realtime or not self._is_file:
                    # The CPU budget, in wall time: never more than decode_fps calls a second.
                    wait = last + min_interval - time.monotonic()
                    if wait > 0 and self._stop.wait(wait):
                        return
                item = self._take_frame()
                if item is None:
                    continue
                if item is _EOF:
                    self._exhausted.set()
                    self._events.put(_EOF)
                    return
                frame, frame_time, captured, index = item  # type: ignore[misc]
                last = time.monotonic()
                self._decode_one(frame, frame_time, captured, index)
        except Exception:
            log.exception("camera decoding failed on %s", self.source)
            self._exhausted.set()
            self._events.put(_EOF)

    def _decode_one(
        self, frame: np.ndarray, frame_time: float, captured: float, index: int
    ) -> None:
        self.stats.decodes += 1
        try:
            codes = self._decoder(frame)
        except CameraError as exc:
            log.warning("frame %d of %s not decodable: %s", index, self.source, exc.reason)
            return
        texts = set()
        for code in codes:
            if code.text in texts:
                continue
            texts.add(code.text)
            seen = self._seen.get(code.text)
            repeat = code.text in self._last_texts or (
                seen is not None and frame_time - seen < self.dedupe_seconds
            )
            self._seen[code.text] = frame_time
            if repeat:
                continue
            self.stats.events += 1
            self._events.put(
                ScanEvent(
                    text=code.text,
                    raw=code.raw,
                    symbology=code.symbology,
                    source=self.source,
                    at=captured,
                    meta={"frame": index, "frame_time": frame_time},
                )
            )
        self._last_texts = texts
        # Forget codes older than the window, so a kiosk running for months stays small.
        if len(self._seen) > 64:
            self._seen = {
                t: s for t, s in self._seen.items() if frame_time - s < self.dedupe_seconds
            }

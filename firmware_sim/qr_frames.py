"""Realistic camera frames of an electronic-card QR code shown on a phone, and videos of them.

The camera path (:mod:`drivers.camera`) is tested and benchmarked on what a kiosk camera
really sees: a phone held up to the lens, its screen showing the code, tilted, shaken, out of
focus, with a lamp reflected on the glass and sensor noise on top. Everything here is
deterministic for a given ``numpy.random.Generator`` seed.

Geometry follows a pinhole camera: the phone is a plane rotated in 3-D (in-plane rotation,
then a tilt out of the image plane) and projected with a focal length about the frame width
(a ~60 degree webcam), so perspective is physical rather than random corner jitter.

Videos are written with OpenCV's ``VideoWriter`` as Motion-JPEG (fourcc ``MJPG``) in an AVI
container: every frame is an independent JPEG, as USB webcams deliver them, and the FFmpeg
back-end of opencv-python reads it back everywhere. When a build cannot write MJPG, the
next fourcc of :data:`VIDEO_FOURCCS` that writes *and* reads back is used.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import cv2
import numpy as np
import qrcode
import qrcode.constants
import qrcode.util

log = logging.getLogger(__name__)

QR_ALPHANUMERIC = frozenset("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:")
"""The 45 characters of QR alphanumeric mode (ISO/IEC 18004 7.4.4) - also Base45's alphabet."""

BASE45_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:"

LEVELS = ("clean", "rotation_perspective", "blur", "glare")
"""The distortion levels of :func:`make_distorted_set`."""

VIDEO_FOURCCS = ("MJPG", "XVID", "mp4v", "FFV1")
"""Codecs :func:`write_video` tries, in order; MJPG works in opencv-python's FFmpeg build."""

# Per-level distortion ranges (uniform), chosen to match what a kiosk camera meets. Distance:
# a ~60 degree webcam sees ~23 cm at 20 cm, so a 4-5 cm code on a phone is 28-55 % of the
# frame height (3-7 pixels per module for a version-5 code at 640x480). A hand tilts the
# phone 27-50 degrees; focus and motion blur of a few pixels; a lamp reflection that washes
# out part of the code.
_LEVEL_RANGES: dict[str, dict[str, tuple[float, float]]] = {
    "clean": {
        "rotation_deg": (-12.0, 12.0),
        "perspective": (0.0, 0.08),
        "noise": (1.0, 3.0),
        "scale": (0.28, 0.55),
    },
    "rotation_perspective": {
        "rotation_deg": (-180.0, 180.0),
        "perspective": (0.30, 0.55),
        "noise": (1.0, 3.0),
        "scale": (0.30, 0.50),
    },
    "blur": {
        "rotation_deg": (-15.0, 15.0),
        "perspective": (0.0, 0.12),
        "blur": (1.0, 2.0),
        "motion_blur": (0.0, 7.0),
        "noise": (2.0, 4.0),
        "scale": (0.30, 0.55),
    },
    "glare": {
        "rotation_deg": (-15.0, 15.0),
        "perspective": (0.0, 0.12),
        "glare": (0.55, 0.85),
        "noise": (1.0, 3.0),
        "scale": (0.30, 0.55),
    },
}


def is_alphanumeric(text: str) -> bool:
    """True when every character of ``text`` is in the QR alphanumeric set."""
    return bool(text) and all(ch in QR_ALPHANUMERIC for ch in text)


def _make_qr(text: str) -> qrcode.QRCode:
    qr = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M, border=0)
    if is_alphanumeric(text):
        # Alphanumeric mode packs 2 characters into 11 bits (bytes mode: 16): Base45 payloads
        # get a version or two smaller, so bigger modules at the same screen size.
        qr.add_data(qrcode.util.QRData(text, mode=qrcode.util.MODE_ALPHA_NUM))
    else:
        qr.add_data(text.encode("utf-8"))
    qr.make(fit=True)
    return qr


def qr_version(text: str) -> int:
    """The QR version (1-40) :func:`render_code` uses for ``text`` at error correction M."""
    return int(_make_qr(text).version)


def render_code(
    text: str, path: str | os.PathLike[str] | None = None, box_size: int = 8, border: int = 4
) -> np.ndarray:
    """Render ``text`` as a QR code (error correction M, alphanumeric mode when the text
    allows it, else bytes) and return it as a greyscale ``uint8`` image: black modules 0,
    white 255, ``box_size`` pixels per module, a quiet zone of ``border`` modules.

    When ``path`` is given the image is also written there (any format ``cv2.imwrite``
    knows by the suffix). The version chosen is logged; :func:`qr_version` returns it.
    """
    if box_size < 1 or border < 0:
        raise ValueError("box_size must be >= 1 and border >= 0")
    qr = _make_qr(text)
    modules = np.array(qr.get_matrix(), dtype=bool)
    modules = np.pad(modules, border, constant_values=False)
    img = np.where(modules, 0, 255).astype(np.uint8)
    img = np.repeat(np.repeat(img, box_size, axis=0), box_size, axis=1)
    log.debug(
        "rendered QR version %d-M, %d chars, %s mode",
        qr.version,
        len(text),
        "alphanumeric" if is_alphanumeric(text) else "bytes",
    )
    if path is not None and not cv2.imwrite(str(path), img):
        raise OSError(f"cannot write image {path}")
    return img


def sample_code_texts(count: int, seed: int = 0, length: int = 100) -> list[str]:
    """``count`` realistic electronic-card code texts: ``SC1:`` and Base45 characters, about
    ``length`` characters in all (+-8), as a signed, compressed credential would be. At 100
    characters that is QR version 5 at error correction M."""
    rng = np.random.default_rng(seed)
    alphabet = np.array(list(BASE45_ALPHABET))
    texts = []
    for _ in range(count):
        n = max(1, length - 4 + int(rng.integers(-8, 9)))
        texts.append("SC1:" + "".join(rng.choice(alphabet, size=n)))
    return texts


# --- the scene ----------------------------------------------------------------------------


def _background(width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """A desk / hand / room behind the phone: a colour gradient with low-frequency texture."""
    base = rng.uniform(50, 170, size=3).astype(np.float32)
    gx = np.linspace(-1.0, 1.0, width, dtype=np.float32)[None, :, None]
    gy = np.linspace(-1.0, 1.0, height, dtype=np.float32)[:, None, None]
    slope = rng.uniform(-30, 30, size=(2, 3)).astype(np.float32)
    img = base[None, None, :] + gx * slope[0] + gy * slope[1]
    # Texture is mostly brightness (wood grain, cloth, a sleeve) with a little colour.
    shape = (max(2, height // 24), max(2, width // 24))
    luma = rng.standard_normal(shape, dtype=np.float32) * 16
    chroma = rng.standard_normal((*shape, 3), dtype=np.float32) * 4
    coarse = luma[:, :, None] + chroma
    img += cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    return np.clip(img, 0, 255)


def _rounded_rect_mask(width: int, height: int, radius: int) -> np.ndarray:
    mask = np.zeros((height, width), np.uint8)
    r = max(1, min(radius, width // 2, height // 2))
    cv2.rectangle(mask, (r, 0), (width - 1 - r, height - 1), 255, -1)
    cv2.rectangle(mask, (0, r), (width - 1, height - 1 - r), 255, -1)
    for cx, cy in (
        (r, r),
        (width - 1 - r, r),
        (r, height - 1 - r),
        (width - 1 - r, height - 1 - r),
    ):
        cv2.circle(mask, (cx, cy), r, 255, -1, lineType=cv2.LINE_AA)
    return mask


def _phone(
    code: np.ndarray, side: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, tuple[float, float]]:
    """The phone at its size in the frame: BGR image, alpha mask, and the code's centre."""
    code_px = cv2.resize(code, (side, side), interpolation=cv2.INTER_AREA).astype(np.float32)
    # An LCD/OLED screen is neither paper white nor ink black, and slightly tinted.
    white = np.array([238, 236, 230], np.float32) * rng.uniform(0.9, 1.0)
    black = np.array([28, 26, 24], np.float32) * rng.uniform(0.8, 1.4)
    t = (code_px / 255.0)[:, :, None]
    code_bgr = black + (white - black) * t

    screen_w = round(side * 1.25)
    screen_h = round(screen_w * 2.1)
    screen = np.empty((screen_h, screen_w, 3), np.float32)
    screen[:] = white
    # The app: a coloured title bar and grey "text" lines under the code (real screens have
    # other high-contrast content next to the code, which a detector must ignore).
    bar_h = screen_h // 11
    screen[:bar_h] = np.array([180, 110, 40], np.float32) * rng.uniform(0.85, 1.1)
    code_y = int(screen_h * 0.42 - side / 2)
    code_x = (screen_w - side) // 2
    screen[code_y : code_y + side, code_x : code_x + side] = code_bgr
    line_y = code_y + side + side // 10
    for i in range(3):
        y = line_y + i * (side // 9)
        w = int(screen_w * rng.uniform(0.35, 0.7))
        if y + side // 24 < screen_h:
            x0 = (screen_w - w) // 2
            screen[y : y + max(2, side // 24), x0 : x0 + w] = 120

    bezel = max(3, screen_w // 22)
    phone_w, phone_h = screen_w + 2 * bezel, screen_h + 4 * bezel
    body = np.empty((phone_h, phone_w, 3), np.float32)
    body[:] = rng.uniform(15, 40)
    screen_mask = _rounded_rect_mask(screen_w, screen_h, bezel * 2) > 0
    region = body[2 * bezel : 2 * bezel + screen_h, bezel : bezel + screen_w]
    np.copyto(region, screen, where=screen_mask[:, :, None])
    mask = _rounded_rect_mask(phone_w, phone_h, bezel * 4)
    centre = (bezel + code_x + side / 2, 2 * bezel + code_y + side / 2)
    return body, mask, centre


def _projection(
    centre_src: tuple[float, float],
    centre_dst: tuple[float, float],
    rotation_deg: float,
    tilt: tuple[float, float],
    focal: float,
) -> np.ndarray:
    """Homography that rotates the phone plane about its code centre and projects it with a
    pinhole camera of focal length ``focal`` pixels (scale 1 at the code centre)."""
    rz = math.radians(rotation_deg)
    ax, ay = tilt
    rot_z = np.array([[math.cos(rz), -math.sin(rz), 0], [math.sin(rz), math.cos(rz), 0], [0, 0, 1]])
    rot_x = np.array([[1, 0, 0], [0, math.cos(ax), -math.sin(ax)], [0, math.sin(ax), math.cos(ax)]])
    rot_y = np.array([[math.cos(ay), 0, math.sin(ay)], [0, 1, 0], [-math.sin(ay), 0, math.cos(ay)]])
    rot = rot_y @ rot_x @ rot_z
    src = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], np.float64) * 100.0
    dst = []
    for x, y in src:
        px, py, pz = rot @ np.array([x, y, 0.0])
        depth = focal + pz
        dst.append((centre_dst[0] + focal * px / depth, centre_dst[1] + focal * py / depth))
    src_img = (src + np.array(centre_src)).astype(np.float32)
    return cv2.getPerspectiveTransform(src_img, np.array(dst, np.float32))


def _motion_kernel(length: int, angle_deg: float) -> np.ndarray:
    size = length | 1
    kernel = np.zeros((size, size), np.float32)
    c = size // 2
    dx = math.cos(math.radians(angle_deg)) * (length - 1) / 2
    dy = math.sin(math.radians(angle_deg)) * (length - 1) / 2
    p0 = (round(c - dx), round(c - dy))
    p1 = (round(c + dx), round(c + dy))
    cv2.line(kernel, p0, p1, 1.0, 1, lineType=cv2.LINE_AA)
    return kernel / kernel.sum()


def phone_frame(
    code_img: np.ndarray,
    size: tuple[int, int] = (640, 480),
    rotation_deg: float = 0.0,
    perspective: float = 0.0,
    blur: float = 0.0,
    glare: float = 0.0,
    noise: float = 0.0,
    scale: float = 0.45,
    rng: np.random.Generator | None = None,
    motion_blur: float = 0.0,
    offset: float = 0.06,
) -> np.ndarray:
    """A camera frame (BGR ``uint8``, ``size`` = (width, height)) of a phone showing
    ``code_img`` (a greyscale code from :func:`render_code`, quiet zone included).

    - ``scale``: side of the code (with quiet zone) as a fraction of the frame's shorter side;
    - ``rotation_deg``: rotation of the phone in the image plane;
    - ``perspective``: tilt of the phone out of the image plane, as a fraction of 90 degrees
      (0.4 = 36 degrees), in a direction drawn from ``rng``;
    - ``blur``: Gaussian (focus) blur sigma in pixels; ``motion_blur``: length in pixels of
      a straight motion-blur streak in a direction drawn from ``rng``;
    - ``glare``: peak opacity (0-1) of a soft bright ellipse - a lamp reflected on the screen
      glass - placed over the code by ``rng``;
    - ``noise``: standard deviation of Gaussian sensor noise, in grey levels;
    - ``offset``: how far (fraction of the frame) the code centre may stray from the centre.
    """
    rng = rng if rng is not None else np.random.default_rng(0)
    width, height = size
    frame = _background(width, height, rng)
    side = max(21, round(scale * min(width, height)))
    phone, mask, centre = _phone(code_img, side, rng)

    direction = rng.uniform(0, 2 * math.pi)
    tilt_total = perspective * math.pi / 2
    tilt = (tilt_total * math.sin(direction), tilt_total * math.cos(direction))
    dst_centre = (
        width / 2 + rng.uniform(-offset, offset) * width,
        height / 2 + rng.uniform(-offset, offset) * height,
    )
    homography = _projection(centre, dst_centre, rotation_deg, tilt, focal=float(width))
    warped = cv2.warpPerspective(
        phone, homography, (width, height), flags=cv2.INTER_LINEAR, borderValue=(0, 0, 0)
    )
    alpha = cv2.warpPerspective(
        mask.astype(np.float32) / 255.0, homography, (width, height), flags=cv2.INTER_LINEAR
    )[:, :, None]
    frame = frame * (1 - alpha) + warped * alpha

    if glare > 0:
        # The reflection is on the screen glass, so it sits over the code and fades softly.
        gx = dst_centre[0] + rng.uniform(-0.3, 0.3) * side
        gy = dst_centre[1] + rng.uniform(-0.3, 0.3) * side
        axes = (int(side * rng.uniform(0.22, 0.4)), int(side * rng.uniform(0.12, 0.25)))
        sigma = max(1.0, axes[1] * 0.35)
        # Draw and soften the spot only in its own box: a full-frame blur this wide is slow.
        pad = int(3 * sigma) + max(axes)
        x0, y0 = max(0, int(gx) - pad), max(0, int(gy) - pad)
        x1, y1 = min(width, int(gx) + pad + 1), min(height, int(gy) + pad + 1)
        if x1 > x0 and y1 > y0:
            spot = np.zeros((y1 - y0, x1 - x0), np.float32)
            cv2.ellipse(
                spot, (int(gx) - x0, int(gy) - y0), axes, rng.uniform(0, 180), 0, 360, 1.0, -1
            )
            spot = cv2.GaussianBlur(spot, (0, 0), sigma)
            spot = (np.clip(spot * 1.15, 0, 1) * glare * alpha[y0:y1, x0:x1, 0])[:, :, None]
            roi = frame[y0:y1, x0:x1]
            frame[y0:y1, x0:x1] = roi * (1 - spot) + 255.0 * spot

    if blur > 0:
        frame = cv2.GaussianBlur(frame, (0, 0), blur)
    if motion_blur >= 2:
        frame = cv2.filter2D(frame, -1, _motion_kernel(int(motion_blur), rng.uniform(0, 180)))
    if noise > 0:
        # Mostly luminance noise, drawn once per pixel (a third of the per-channel cost).
        grain = rng.standard_normal(frame.shape[:2], dtype=np.float32) * np.float32(noise)
        frame += grain[:, :, None]
    return np.clip(frame + 0.5, 0, 255).astype(np.uint8)


def make_distorted_set(
    texts: Sequence[str],
    levels: Sequence[str] = LEVELS,
    per_level: int = 50,
    seed: int = 0,
    size: tuple[int, int] = (640, 480),
) -> list[tuple[str, str, np.ndarray]]:
    """``per_level`` frames for each distortion level, as ``(level, text, image)``, cycling
    through ``texts``. The same arguments always give the same images."""
    if not texts:
        raise ValueError("texts is empty")
    unknown = [lv for lv in levels if lv not in _LEVEL_RANGES]
    if unknown:
        raise ValueError(f"unknown distortion levels {unknown}; known: {list(_LEVEL_RANGES)}")
    codes = {text: render_code(text) for text in dict.fromkeys(texts)}
    out: list[tuple[str, str, np.ndarray]] = []
    for level in levels:
        ranges = _LEVEL_RANGES[level]
        for i in range(per_level):
            # One generator per image, derived from (seed, level, index): a set with fewer
            # levels or images still holds exactly the same image for the same key.
            rng = np.random.default_rng([seed, LEVELS.index(level), i])
            params = {name: float(rng.uniform(lo, hi)) for name, (lo, hi) in ranges.items()}
            text = texts[i % len(texts)]
            out.append((level, text, phone_frame(codes[text], size=size, rng=rng, **params)))
    return out


# --- videos -------------------------------------------------------------------------------


def write_video(
    frames: Iterable[np.ndarray], path: str | os.PathLike[str], fps: float = 15.0
) -> Path:
    """Write ``frames`` (BGR or greyscale ``uint8``, all one size) to ``path`` as Motion-JPEG
    AVI (see :data:`VIDEO_FOURCCS` for the fall-back), check that ``cv2.VideoCapture``
    opens it again, and return the path."""
    path = Path(path)
    it = iter(frames)
    try:
        first = next(it)
    except StopIteration:
        raise ValueError("no frames to write") from None
    height, width = first.shape[:2]
    writer = None
    for fourcc in VIDEO_FOURCCS:
        candidate = cv2.VideoWriter(
            str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (width, height)
        )
        if candidate.isOpened():
            writer = candidate
            if fourcc != VIDEO_FOURCCS[0]:
                log.warning(
                    "fourcc %s unavailable, writing %s with %s", VIDEO_FOURCCS[0], path, fourcc
                )
            break
        candidate.release()
    if writer is None:
        raise OSError(f"no video codec of {VIDEO_FOURCCS} can write {path}")
    try:
        for frame in _chain(first, it):
            if frame.shape[:2] != (height, width):
                raise ValueError(f"frame size {frame.shape[1::-1]} differs from {(width, height)}")
            if frame.ndim == 2:
                frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
            writer.write(np.ascontiguousarray(frame))
    finally:
        writer.release()
    check = cv2.VideoCapture(str(path))
    try:
        if not check.isOpened() or not check.grab():
            raise OSError(f"{path} was written but cv2.VideoCapture cannot read it back")
    finally:
        check.release()
    return path


def _chain(first: np.ndarray, rest: Iterable[np.ndarray]) -> Iterable[np.ndarray]:
    yield first
    yield from rest


def make_scan_video(
    codes: Sequence[str | None],
    path: str | os.PathLike[str],
    frames_per_code: int = 8,
    gap_frames: int = 4,
    size: tuple[int, int] = (640, 480),
    fps: float = 15.0,
    seed: int = 0,
) -> Path:
    """A video of a scanning session: ``gap_frames`` frames without a code, then each code of
    ``codes`` held in front of the camera for ``frames_per_code`` consecutive frames (with
    hand shake: the phone moves and turns a little from frame to frame), each followed by
    ``gap_frames`` frames without a code (``gap_frames=0``: the code changes on the next
    frame). ``None`` in ``codes`` is a phone whose screen shows no code. Returns the path.

    Frame ``n`` is at ``n / fps`` seconds, which a test can use to reason about
    de-duplication windows.
    """
    rng = np.random.default_rng(seed)
    width, height = size

    def frames() -> Iterable[np.ndarray]:
        for _ in range(gap_frames):
            yield _empty_frame(size, rng)
        for text in codes:
            code = render_code(text) if text is not None else None
            rotation = rng.uniform(-10, 10)
            scale = rng.uniform(0.4, 0.5)
            for _ in range(frames_per_code):
                if code is None:
                    yield _empty_frame(size, rng)
                    continue
                rotation += rng.normal(0, 1.5)
                yield phone_frame(
                    code,
                    size=(width, height),
                    rotation_deg=rotation,
                    perspective=rng.uniform(0, 0.1),
                    noise=2.0,
                    scale=scale,
                    offset=0.03,
                    rng=rng,
                )
            for _ in range(gap_frames):
                yield _empty_frame(size, rng)

    return write_video(frames(), path, fps)


def _empty_frame(size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A frame without a code: the background the camera sees when nobody is there."""
    frame = _background(size[0], size[1], rng) + rng.normal(0, 2.0, size=(size[1], size[0], 3))
    return np.clip(frame, 0, 255).astype(np.uint8)

"""The frame maker: deterministic, the right sizes, a full distorted set, clean frames decode."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from drivers.camera import decode_image
from firmware_sim.qr_frames import (
    LEVELS,
    is_alphanumeric,
    make_distorted_set,
    phone_frame,
    qr_version,
    render_code,
    sample_code_texts,
    write_video,
)

TEXTS = sample_code_texts(10, seed=5)


@pytest.fixture(scope="module")
def distorted_set() -> list[tuple[str, str, np.ndarray]]:
    return make_distorted_set(TEXTS, per_level=50, seed=11)


def test_sample_texts_are_base45_and_version_5_to_7() -> None:
    for text in TEXTS:
        assert text.startswith("SC1:")
        assert is_alphanumeric(text)
        assert 5 <= qr_version(text) <= 7


def test_render_code_size_and_file(tmp_path) -> None:
    text = TEXTS[0]
    img = render_code(text, tmp_path / "code.png", box_size=3, border=4)
    modules = 17 + 4 * qr_version(text) + 2 * 4
    assert img.shape == (modules * 3, modules * 3)
    assert img.dtype == np.uint8
    assert set(np.unique(img)) == {0, 255}
    assert decode_image(tmp_path / "code.png") == [text]


def test_bytes_mode_for_non_alphanumeric_text() -> None:
    text = "sc1:lower case & unicode 社保"
    assert not is_alphanumeric(text)
    assert decode_image(render_code(text)) == [text]


def test_alphanumeric_mode_is_smaller() -> None:
    text = "SC1:" + "A" * 110
    assert qr_version(text) < qr_version(text.lower())


@pytest.mark.parametrize("size", [(640, 480), (1280, 720)])
def test_phone_frame_size_and_determinism(size) -> None:
    code = render_code(TEXTS[1])
    kwargs = dict(rotation_deg=20, perspective=0.2, blur=1.0, glare=0.5, noise=2.0)
    a = phone_frame(code, size=size, rng=np.random.default_rng(3), **kwargs)
    b = phone_frame(code, size=size, rng=np.random.default_rng(3), **kwargs)
    c = phone_frame(code, size=size, rng=np.random.default_rng(4), **kwargs)
    assert a.shape == (size[1], size[0], 3)
    assert a.dtype == np.uint8
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_set_has_200_images_in_four_levels(distorted_set) -> None:
    assert len(distorted_set) >= 200
    levels = [level for level, _, _ in distorted_set]
    assert set(levels) == set(LEVELS) and len(LEVELS) == 4
    for level in LEVELS:
        assert levels.count(level) == 50
    assert all(img.shape == (480, 640, 3) for _, _, img in distorted_set)


def test_set_is_deterministic(distorted_set) -> None:
    again = make_distorted_set(TEXTS, levels=("glare",), per_level=3, seed=11)
    glare = [entry for entry in distorted_set if entry[0] == "glare"][:3]
    for (la, ta, ia), (lb, tb, ib) in zip(again, glare, strict=True):
        assert (la, ta) == (lb, tb)
        assert np.array_equal(ia, ib)


def test_every_clean_image_decodes(distorted_set) -> None:
    clean = [(text, img) for level, text, img in distorted_set if level == "clean"]
    failed = [i for i, (text, img) in enumerate(clean) if decode_image(img) != [text]]
    assert failed == []


def test_unknown_level_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown distortion"):
        make_distorted_set(TEXTS, levels=("fog",))


def test_write_video_reads_back(tmp_path) -> None:
    frames = [np.full((120, 160, 3), 40 * i, np.uint8) for i in range(5)]
    path = write_video(frames, tmp_path / "v.avi", fps=10)
    capture = cv2.VideoCapture(str(path))
    try:
        count = 0
        while capture.grab():
            count += 1
        assert count == 5
        assert capture.get(cv2.CAP_PROP_FPS) == pytest.approx(10)
    finally:
        capture.release()

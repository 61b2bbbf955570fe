"""A camera device that stops delivering frames is reopened (a replugged camera is a new
device the old capture never sees again), and its state is told: ``gone``, ``connected``.
OpenCV's capture is replaced by a scripted fake."""

from __future__ import annotations

import threading
from typing import ClassVar

import numpy as np
import pytest

from drivers import camera
from drivers.camera import REOPEN_EVERY, CameraScanner

WAIT = 30.0


class FakeCapture:
    """The first capture delivers one frame, then nothing; later ones deliver frames."""

    opened: ClassVar[list[FakeCapture]] = []

    def __init__(self, source: object = None) -> None:
        self.index = len(FakeCapture.opened)
        FakeCapture.opened.append(self)
        self.frames = 0

    def isOpened(self) -> bool:  # OpenCV's name
        return True

    def get(self, prop: int) -> float:
        return 30.0

    def set(self, prop: int, value: float) -> bool:
        return True

    def grab(self) -> bool:
        self.frames += 1
        return self.index > 0 or self.frames == 1

    def retrieve(self) -> tuple[bool, np.ndarray]:
        return True, np.zeros((8, 8, 3), np.uint8)

    def release(self) -> None:
        pass


def test_a_camera_that_stops_delivering_is_reopened(monkeypatch: pytest.MonkeyPatch) -> None:
    FakeCapture.opened = []
    monkeypatch.setattr(camera.cv2, "VideoCapture", FakeCapture)
    monkeypatch.setattr(camera, "GRAB_RETRY_STEP", 0.0005)
    states: list[str] = []
    changed = threading.Condition()

    def on_state(state: str) -> None:
        with changed:
            states.append(state)
            changed.notify_all()

    scanner = CameraScanner(0, decoder=lambda frame: [], on_state=on_state)
    try:
        with changed:
            assert changed.wait_for(lambda: states == ["gone", "connected"], WAIT), states
    finally:
        scanner.close()
    assert len(FakeCapture.opened) == 2
    assert FakeCapture.opened[0].frames == 1 + REOPEN_EVERY

"""Suite-wide rules: tests write under their temporary paths, never into the repository.

Hypothesis keeps its example database under pytest's temporary directory, and the session
fails if the run left a new file or directory in the repository root (a stray SQLite file
from a test that forgot its ``tmp_path`` was once committed that way).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings
from hypothesis.database import DirectoryBasedExampleDatabase

from drivers import inprocess

REPO_ROOT = Path(__file__).resolve().parents[1]
# What tools other than the tests make in the root: the virtualenv, caches and the build
# metadata of the editable install, and what `make demo` writes; all of them .gitignored.
ROOT_ALLOWED = frozenset(
    {".venv", ".pytest_cache", ".ruff_cache", ".hypothesis", "onecard.egg-info", "build"}
)

_before: frozenset[str] = frozenset()


@pytest.fixture(autouse=True)
def _empty_inprocess_readers() -> Iterator[None]:
    """The in-process reader back-end's readers are process-wide: each test starts and
    ends with them empty."""
    inprocess.clear()
    yield
    inprocess.clear()


@pytest.hookimpl(trylast=True)  # after the tmp_path plugin made its factory
def pytest_configure(config: pytest.Config) -> None:
    global _before
    _before = frozenset(os.listdir(REPO_ROOT))
    base = config._tmp_path_factory.getbasetemp()  # type: ignore[attr-defined]
    settings.register_profile(
        "onecard", database=DirectoryBasedExampleDatabase(str(base / "hypothesis"))
    )
    settings.load_profile("onecard")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    left = sorted(frozenset(os.listdir(REPO_ROOT)) - _before - ROOT_ALLOWED)
    if left:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        message = f"tests left files in the repository root: {', '.join(left)}"
        if reporter is not None:
            reporter.write_line(message, red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED

"""Where things are in the repository, for tests that read its files."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
TESTS = REPO_ROOT / "tests"
HELPERS = TESTS / "helpers"
TRACES = TESTS / "traces"
EXAMPLES = REPO_ROOT / "examples"

"""Reaching the real services the server cores are tested against."""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest


def require_service(name: str, probe: Callable[[], object], how_to_fix: str) -> None:
    """Run ``probe``; if the service does not answer, skip locally and fail under CI.

    A skipped server test must never pass for coverage in CI, where the services are
    started for the run.
    """
    try:
        probe()
    except Exception as exc:
        message = f"{name} is not reachable ({exc!r}); {how_to_fix}"
        if os.environ.get("CI"):
            pytest.fail(f"{message} [CI is set, so this fails instead of skipping]")
        pytest.skip(message)

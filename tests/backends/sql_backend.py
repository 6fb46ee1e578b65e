"""The sql core(s) of the behaviour suite (filled in with the sql core)."""

from __future__ import annotations

from typing import Any

PARAMS: list[Any] = []

"""The mongo core(s) of the behaviour suite (filled in with the mongo core)."""

from __future__ import annotations

from typing import Any

PARAMS: list[Any] = []

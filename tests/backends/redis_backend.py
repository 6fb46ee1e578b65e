"""The redis core(s) of the behaviour suite (filled in with the redis core)."""

from __future__ import annotations

from typing import Any

PARAMS: list[Any] = []

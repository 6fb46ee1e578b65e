"""Per-backend test fixtures, loaded as pytest plugins by tests/conftest.py.

Each module exposes ``PARAMS`` (the ``pytest.param`` entries it adds to the shared
behaviour suite) and one ``<param>_core_options`` fixture per entry.
"""

"""The modules behind ``scripts/bench.py``; see ``sections.py`` for how to add a section.

- ``measure``: settings (full and quick) and the calibrated ``timeit`` measurement;
- ``report``: rows, plain-text tables, targets and the JSON output;
- ``peers``: optional peer imports, versions, and the ``Impl`` helpers sections share;
- ``memory_core``, ``pickle_core``, ``key_cost``: one module per section;
- ``sections``: the sections in run order, and the protocol a section module follows;
- ``runner``: one run from header to JSON file.
"""

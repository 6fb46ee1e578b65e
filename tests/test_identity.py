"""Function identity: functions defined in scripts, run as files, as modules, in children.

Every test runs real interpreters on real scripts written to ``tmp_path``; they share
one cache directory, so entries written by one run are what the next run reads.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from cachier_like.identity import function_namespace, script_namespace

pytestmark = pytest.mark.pickle

#: A script whose cached ``featurize`` returns a tag naming the script that computed it.
SCRIPT = """
import json, sys
from cachier_like import cached

@cached
def featurize(x):
    return "{tag}:" + str(x)

if __name__ == "__main__":
    value = featurize(1)
    print(json.dumps({{"value": value, "namespace": featurize.namespace}}))
"""

#: A script that stores in the parent, then asks a child started by ``method``.
SPAWNING = """
import json, multiprocessing, os, sys
from cachier_like import cached

@cached
def featurize(x):
    with open(os.environ["CALLS_LOG"], "a") as log:
        log.write(multiprocessing.current_process().name + "\\n")
    return x * 10

def child(queue):
    queue.put((featurize(2), featurize.namespace))

if __name__ == "__main__":
    parent = featurize(2)
    context = multiprocessing.get_context(sys.argv[1])
    queue = context.Queue()
    process = context.Process(target=child, args=(queue,), name="child")
    process.start()
    value, namespace = queue.get(timeout=60)
    process.join(60)
    print(json.dumps({"parent": parent, "child": value, "namespace": namespace,
                      "parent_namespace": featurize.namespace}))
"""


def _env(cache_dir: Path, **extra: str) -> dict[str, str]:
    root = str(Path(__file__).resolve().parents[1])
    path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "CACHIER_LIKE_CACHE_DIR": str(cache_dir), "PYTHONPATH": path, **extra}


def _run(args: list[str], cache_dir: Path, cwd: Path, **extra: str) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env=_env(cache_dir, **extra),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def test_two_scripts_with_the_same_function_name_do_not_share_entries(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    train = _write(tmp_path / "train" / "run.py", SCRIPT.format(tag="train"))
    evaluate = _write(tmp_path / "eval" / "run.py", SCRIPT.format(tag="eval"))
    first = _run([str(train)], cache, tmp_path)
    second = _run([str(evaluate)], cache, tmp_path)
    assert first["value"] == "train:1"
    assert second["value"] == "eval:1"  # not the first script's entry
    assert first["namespace"] == script_namespace(train, "featurize")
    assert second["namespace"] == script_namespace(evaluate, "featurize")


def test_a_script_reads_its_own_entries_in_every_run_however_it_is_named(
    tmp_path: Path,
) -> None:
    cache = tmp_path / "cache"
    script = _write(tmp_path / "jobs" / "run.py", SCRIPT.format(tag="first"))
    assert _run([str(script)], cache, tmp_path)["value"] == "first:1"
    # A changed body proves the next runs read the stored entry instead of computing.
    script.write_text(textwrap.dedent(SCRIPT.format(tag="second")))
    by_relative_path = _run(["run.py"], cache, tmp_path / "jobs")
    through_symlink = tmp_path / "link.py"
    through_symlink.symlink_to(script)
    by_link = _run([str(through_symlink)], cache, tmp_path)
    assert by_relative_path["value"] == by_link["value"] == "first:1"


def test_a_module_run_with_dash_m_is_named_as_if_imported(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    package = tmp_path / "proj" / "pipeline"
    _write(package / "__init__.py", "")
    _write(package / "features.py", SCRIPT.format(tag="module"))
    result = _run(["-m", "pipeline.features"], cache, tmp_path / "proj")
    assert result["namespace"] == "pipeline.features.featurize"
    assert result["value"] == "module:1"


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_a_spawned_child_reads_the_parent_scripts_entries(tmp_path: Path, method: str) -> None:
    cache, calls = tmp_path / "cache", tmp_path / "calls.log"
    script = _write(tmp_path / "job" / "main.py", SPAWNING)
    result = _run([str(script), method], cache, tmp_path, CALLS_LOG=str(calls))
    assert result["parent"] == result["child"] == 20
    assert (
        result["namespace"] == result["parent_namespace"] == script_namespace(script, "featurize")
    )
    assert calls.read_text().splitlines() == ["MainProcess"]  # the child computed nothing


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_a_spawned_child_of_a_dash_m_module_reads_the_parents_entries(
    tmp_path: Path, method: str
) -> None:
    cache, calls = tmp_path / "cache", tmp_path / "calls.log"
    _write(tmp_path / "proj" / "jobs" / "__init__.py", "")
    _write(tmp_path / "proj" / "jobs" / "main.py", SPAWNING)
    result = _run(["-m", "jobs.main", method], cache, tmp_path / "proj", CALLS_LOG=str(calls))
    assert result["namespace"] == result["parent_namespace"] == "jobs.main.featurize"
    assert calls.read_text().splitlines() == ["MainProcess"]


def test_code_with_no_file_keeps_the_main_module_name(tmp_path: Path) -> None:
    code = textwrap.dedent(SCRIPT.format(tag="interactive"))
    result = _run(["-c", code], tmp_path / "cache", tmp_path)
    assert result["namespace"] == "__main__.featurize"


def test_functions_of_imported_modules_keep_module_and_qualname() -> None:
    assert function_namespace(json.loads) == "json.loads"
    assert function_namespace(Path.resolve) == "pathlib.Path.resolve"

"""``segdial simulate``: the results table, transcripts, and one-line errors with exit code 2.

The cases run in-process through ``segdial.cli.main`` with a patched ``sys.argv``; one error also goes
through the installed console script, as a user would call it (a good run costs seconds of imports).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

SEGDIAL = Path(sys.executable).parent / "segdial"
COLUMNS = ("segment", "dialogues", "success rate", "mean return", "mean turns", "hang-up rate")


def assert_one_line_error(code: int, out: str, err: str, *fragments: str) -> None:
    assert code == 2
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    for fragment in fragments:
        assert fragment in lines[0]


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["--policy", "greedy"], ["unknown policy 'greedy'", "oracle"]),
        (["--segment", "expert"], ["unknown segment", "expert", "casual"]),
        (["--segment", "power,nobody"], ["unknown segment", "nobody"]),
        (["-n", "0"], ["-n", "0"]),
        (["-n", "-4"], ["-n"]),
        (["-n", "abc"], ["-n", "integer"]),
        (["--domain", "mars"], ["unknown domain 'mars'", "restaurant"]),
        (["--max-turns", "1"], ["--max-turns"]),
        (["--show", "-1"], ["--show"]),
        (["--no-such-option"], ["--no-such-option"]),
    ],
)
def test_bad_arguments_give_one_line_errors(
    segdial: Callable[..., tuple[int, str, str]], args: list[str], fragments: list[str]
) -> None:
    code, out, err = segdial("simulate", "-n", "10", *args)
    assert_one_line_error(code, out, err, *fragments)


def test_unknown_command(segdial: Callable[..., tuple[int, str, str]]) -> None:
    code, out, err = segdial("fly")
    assert_one_line_error(code, out, err, "fly")


def test_simulate_prints_the_table(segdial: Callable[..., tuple[int, str, str]]) -> None:
    code, out, err = segdial("simulate", "--policy", "oracle", "-n", "60", "--seed", "1")
    assert code == 0, err
    for column in COLUMNS:
        assert column in out, column
    for row in ("power", "core", "casual", "all"):
        assert any(line.strip("│┃ ").startswith(row) for line in out.splitlines()), row
    assert "policy oracle on mix users (restaurant, 60 dialogues)" in out
    assert "USER:" not in out


def test_simulate_one_segment_and_domain(segdial: Callable[..., tuple[int, str, str]]) -> None:
    code, out, _ = segdial("simulate", "--policy", "casual", "--segment", "casual", "--domain", "hotel", "-n", "20")
    assert code == 0
    assert "hotel" in out and "casual" in out
    assert not any(line.strip("│┃ ").startswith("all") for line in out.splitlines())


def test_simulate_show_prints_transcripts(segdial: Callable[..., tuple[int, str, str]]) -> None:
    code, out, _ = segdial("simulate", "--policy", "core", "-n", "20", "--show", "2")
    assert code == 0
    lines = out.splitlines()
    assert sum(line.startswith("--- dialogue ") for line in lines) == 2
    assert any(line.startswith("USER: ") for line in lines)
    assert any(line.startswith("SYSTEM: ") for line in lines)
    assert sum(line.startswith("=> ") for line in lines) == 2


def test_console_script_reports_errors_in_one_line(tmp_path: Path) -> None:
    """The installed ``segdial`` script itself: exit status 2 and one ``error:`` line on stderr."""
    assert SEGDIAL.exists(), f"the console script is not installed at {SEGDIAL}"
    bad = subprocess.run(
        [str(SEGDIAL), "simulate", "-n", "abc"],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
        timeout=120,
        cwd=tmp_path,
    )
    assert_one_line_error(bad.returncode, bad.stdout, bad.stderr, "-n")


@pytest.mark.parametrize(("command", "words"), [("train", "[train] holds"), ("compare", "config's [quick] table")])
def test_help_keeps_bracketed_words(segdial: Callable[..., tuple[int, str, str]], command: str, words: str) -> None:
    """Rich reads "[quick]" as markup and drops it unless escaped; the help must still name the table."""
    code, out, _ = segdial(command, "--help")
    assert code == 0
    assert words in " ".join(line.strip("│ ") for line in out.splitlines())


def test_version_prints_the_package_version(segdial: Any) -> None:
    from importlib.metadata import version

    code, out, _ = segdial("--version")
    assert code == 0 and out.strip() == f"segdial {version('segdial')}"

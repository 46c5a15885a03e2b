"""``segdial report``: from simulated users and from a database, and one-line errors for bad input."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa
from rich.console import Console

from dialogue.service import db
from dialogue.service.settings import DEFAULT_MODEL
from segdial import cli


@pytest.fixture
def run(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Callable[..., tuple[int, str, str]]:
    """``run(*args)``: ``segdial report ARGS`` in-process; returns (exit code, stdout, stderr)."""

    def call(*args: str) -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "argv", ["segdial", "report", *args])
        monkeypatch.setattr(cli, "console", Console(width=200))
        with pytest.raises(SystemExit) as exit_info:
            cli.main()
        out, err = capsys.readouterr()
        return (0 if exit_info.value.code is None else int(exit_info.value.code)), out, err

    return call


def assert_one_line_error(result: tuple[int, str, str], *fragments: str, status: int = 2) -> None:
    code, _, err = result
    lines = err.strip().splitlines()
    assert code == status and len(lines) == 1 and lines[0].startswith("error: "), err
    for fragment in fragments:
        assert fragment in lines[0]


def test_a_simulated_report_with_its_rendering(run: Callable[..., tuple[int, str, str]], tmp_path: Path) -> None:
    import shutil

    args = ["--simulate", str(DEFAULT_MODEL), "-n", "20", "--out", str(tmp_path / "r")]
    if shutil.which("chromium"):
        args += ["--png", str(tmp_path / "r" / "page.png")]
    code, out, err = run(*args)
    assert code == 0, err
    figures = json.loads((tmp_path / "r" / "figures.json").read_text())
    assert figures["overview"]["conversations"] == 60
    assert f"ECE {figures['calibration']['ece']:.4f}" in out
    assert (tmp_path / "r" / "report.html").is_file() and (tmp_path / "r" / "simulation.db").is_file()
    assert "20 simulated users per segment" in figures["source"]["description"]
    if shutil.which("chromium"):
        assert (tmp_path / "r" / "page.png").is_file() and "plots segment_mix" in out


def test_a_report_from_a_database_in_a_window(
    run: Callable[..., tuple[int, str, str]], simulated_url: str, tmp_path: Path
) -> None:
    engine = db.make_engine(simulated_url)
    with engine.connect() as conn:
        times = sorted(r[0] for r in conn.execute(sa.select(db.Conversation.created_at)))
    engine.dispose()
    middle = str(times[len(times) // 2])[:19]  # naive ISO, read as UTC
    code, _, err = run("--db", simulated_url, "--since", middle, "--out", str(tmp_path / "w"))
    assert code == 0, err
    figures = json.loads((tmp_path / "w" / "figures.json").read_text())
    assert 0 < figures["overview"]["conversations"] < len(times)
    assert figures["window"]["since"].startswith(middle.replace(" ", "T"))


def test_an_empty_database_gives_a_friendly_report(
    run: Callable[..., tuple[int, str, str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    db.upgrade(url)
    monkeypatch.setenv("SEGDIAL_DATABASE_URL", url)  # --db defaults to the service's database
    code, out, err = run("--out", str(tmp_path / "e"))
    assert code == 0, err
    assert "0 conversations" in out
    assert "No data yet" in (tmp_path / "e" / "report.html").read_text()


def test_bad_input_gives_one_line_errors(run: Callable[..., tuple[int, str, str]], tmp_path: Path) -> None:
    out = str(tmp_path / "out")
    empty = f"sqlite:///{tmp_path / 'blank.db'}"
    sa.create_engine(empty).connect().close()  # a database file without any table
    old = f"sqlite:///{tmp_path / 'old.db'}"
    db.upgrade(old)
    with sa.create_engine(old).begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = '0001'"))
    agnostic = str(DEFAULT_MODEL / "comparators" / "agnostic")
    cases: list[tuple[list[str], list[str]]] = [
        (["--db", f"sqlite:///{tmp_path / 'nope.db'}"], ["no database file at"]),
        (["--db", "nonsense://x"], ["nonsense://x"]),
        (["--db", empty, "--simulate", str(DEFAULT_MODEL)], ["not both"]),
        (["--simulate", str(DEFAULT_MODEL), "-n", "0"], ["-n"]),
        (["--simulate", str(tmp_path / "missing")], ["missing"]),
        (["--simulate", agnostic, "-n", "5"], ["not a contextual policy"]),
        (["--db", old, "--since", "yesterday"], ["--since", "ISO 8601"]),
        (["--db", old, "--since", "2025-02-01", "--until", "2025-01-01"], ["window is empty"]),
        (["--simulate", str(DEFAULT_MODEL), "-n", "5", "--threshold", "1.5"], ["--threshold"]),
    ]
    for args, fragments in cases:
        assert_one_line_error(run(*args, "--out", out), *fragments)
    # A database that is not migrated is a failure outside the command: exit 1.
    assert_one_line_error(run("--db", empty, "--out", out), "has no segdial tables", "segdial db upgrade", status=1)
    assert_one_line_error(run("--db", old, "--out", out), "revision 0001", "segdial db upgrade", status=1)

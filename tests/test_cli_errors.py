"""Every command's failure is one line on stderr and an exit code (2 for bad input, 1 for a failure
outside), with the database password masked: start-up of ``serve`` and ``actions`` (a bad model or
NLU path, a database that cannot be reached or used), ``train`` (a bad config, an unknown segment),
``keys``, ``db`` and ``report``; flags are their SEGDIAL_* variables, read from a ``.env`` file too.

The commands run in-process through ``segdial.cli.main`` (the ``segdial`` fixture); one runs as the
console script in a fresh process, as a user would call it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from dialogue.service import db
from dialogue.service.settings import Settings

Runner = Callable[..., tuple[int, str, str]]
SECRET = "s3cret"
UNREACHABLE = f"postgresql://u:{SECRET}@127.0.0.1:1/x"
NOT_A_URL = f"postgresql//u:{SECRET}@127.0.0.1:1/x"
ROOT = Path(__file__).resolve().parents[1]


def one_line(result: tuple[int, str, str], status: int, *fragments: str) -> str:
    code, out, err = result
    assert code == status, (code, err)
    assert err.endswith("\n") and err.count("\n") == 1 and err.startswith("error: "), err
    assert SECRET not in out + err, err
    for fragment in fragments:
        assert fragment in err, err
    return err.strip()


@pytest.fixture
def sqlite(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'segdial.db'}"


@pytest.mark.parametrize(
    ("args", "status", "fragments"),
    [
        (["--model", "/nowhere"], 2, ["error: cannot start segdial: no checkpoint at /nowhere"]),
        (["--nlu", "/nowhere"], 2, ["error: cannot start segdial: no NLU model at /nowhere"]),
        (["--db", UNREACHABLE], 1, ["cannot reach the database postgresql://u:***@127.0.0.1:1/x: connection"]),
        (["--db", NOT_A_URL], 2, ["SEGDIAL_DATABASE_URL (not a URL) cannot be used"]),
        (["--db", "nosuchdb://x"], 2, ["SEGDIAL_DATABASE_URL nosuchdb://x cannot be used"]),
        (["--workers", "0"], 2, ["bad setting SEGDIAL_WORKERS (--workers) = 0: Input should be greater than"]),
        (["--port", "70000"], 2, ["bad setting SEGDIAL_PORT (--port) = 70000: Input should be less than"]),
        (["--log-level", "loud"], 2, ["SEGDIAL_LOG_LEVEL (--log-level) = 'loud': Input should be 'critical'"]),
        (["--prot", "1"], 2, ["No such option: --prot"]),
    ],
)
def test_serve_start_up(segdial: Runner, sqlite: str, args: list[str], status: int, fragments: list[str]) -> None:
    one_line(segdial("serve", "--db", sqlite, *args), status, *fragments)


def test_serve_with_two_workers_says_it_once(tmp_path: Path) -> None:
    """Each worker opens its own runtime; the first one that fails says why, the exit code is its."""
    env = {**os.environ, "SEGDIAL_WORKERS": "2", "SEGDIAL_PORT": "0", "OMP_NUM_THREADS": "1"}
    migrated = f"sqlite:///{tmp_path / 's.db'}"
    db.upgrade(migrated)  # first: two workers would race to migrate a new file
    for args, status, fragment in (
        (["--model", str(tmp_path / "nowhere"), "--db", migrated], 2, "no checkpoint at"),
        (["--db", UNREACHABLE], 1, "cannot reach the database postgresql://u:***@127.0.0.1:1/x"),
    ):
        done = subprocess.run(
            [sys.executable, "-m", "segdial.cli", "serve", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )
        one_line((done.returncode, done.stdout, done.stderr), status, "error: cannot start segdial: ", fragment)


@pytest.mark.parametrize(
    ("args", "status", "fragments"),
    [
        (["--model", "/nowhere"], 2, ["error: cannot open segdial for the actions: no checkpoint at /nowhere"]),
        (["--nlu", "/nowhere"], 2, ["error: cannot open segdial for the actions: no NLU model at /nowhere"]),
        (["--db", UNREACHABLE], 1, ["for the actions: cannot reach the database postgresql://u:***@127.0.0.1"]),
        (["--domain", "mars"], 2, ["SEGDIAL_RASA_DOMAIN: unknown domain 'mars'"]),
        (["--api-url", "http://127.0.0.1:9"], 2, ["SEGDIAL_API_URL is set but SEGDIAL_API_KEY is not"]),
        (["--port", "0"], 2, ["bad setting SEGDIAL_ACTIONS_PORT (--port) = 0"]),
    ],
)
def test_actions_start_up(segdial: Runner, sqlite: str, args: list[str], status: int, fragments: list[str]) -> None:
    one_line(segdial("actions", "--db", sqlite, *args), status, *fragments)


@pytest.mark.parametrize(
    "args",
    [["db", "upgrade"], ["db", "current"], ["keys", "list"], ["keys", "create", "team"], ["keys", "revoke", "1"]],
)
def test_database_commands(segdial: Runner, args: list[str]) -> None:
    one_line(segdial(*args, "--db", UNREACHABLE), 1, "cannot reach the database postgresql://u:***@127.0.0.1:1/x")
    one_line(segdial(*args, "--db", NOT_A_URL), 2, "SEGDIAL_DATABASE_URL (not a URL) cannot be used")
    # The variable is the flag.
    one_line(segdial(*args, env={"SEGDIAL_DATABASE_URL": UNREACHABLE}), 1, "cannot reach the database")


def test_keys_and_report_bad_input(segdial: Runner, sqlite: str, tmp_path: Path) -> None:
    one_line(segdial("keys", "revoke", "7", "--db", sqlite), 2, "no API key with id 7")
    one_line(segdial("keys", "create", " ", "--db", sqlite), 2, "the key needs a non-empty name")
    one_line(
        segdial("keys", "revoke", "seven", "--db", sqlite), 2, "Invalid value for 'ID': Input should be a valid integer"
    )
    out = str(tmp_path / "report")
    one_line(segdial("report", "--out", out, "--db", UNREACHABLE), 1, "cannot reach the database")
    one_line(segdial("report", "--out", out, "--db", sqlite, "--since", "soon"), 2, "--since")


def test_train(segdial: Runner, tmp_path: Path) -> None:
    tiny = (ROOT / "configs" / "tiny.toml").read_text()
    cases = [
        (
            tiny.replace("num_envs = 128", 'num_envs = "512"'),
            '[train] num_envs = "512": Input should be a valid integer',
        ),
        (tiny.replace("learning_rate = 0.003", 'learning_rate = "fast"'), '[train] learning_rate = "fast"'),
        (tiny.replace("total_steps = 40_960", "total_steps = -1"), "[train] total_steps = -1: Input should be"),
        (
            tiny.replace("[train]", "[train]\nlearning_rat = 1"),
            "unknown key learning_rat (did you mean learning_rate?)",
        ),
        (tiny.replace('"casual"]', '"casual", "expert"]'), "[train] env_kwargs = "),
    ]
    for text, fragment in cases:
        config = tmp_path / "bad.toml"
        config.write_text(text)
        line = one_line(segdial("train", "--config", str(config), "--out", str(tmp_path / "m")), 2, fragment)
        assert line.startswith(f"error: {config}: "), line
    one_line(segdial("train", "--config", str(tmp_path / "none.toml")), 2, "no config file at")
    assert not (tmp_path / "m").exists()


def test_a_dotenv_file_is_read_and_a_flag_wins(
    segdial: Runner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text(f"SEGDIAL_DATABASE_URL={UNREACHABLE}\nPOSTGRES_PASSWORD=other-tools-keys\n")
    assert Settings().database_url == UNREACHABLE
    one_line(segdial("db", "current"), 1, "cannot reach the database postgresql://u:***@127.0.0.1:1/x")
    code, out, err = segdial("db", "current", "--db", f"sqlite:///{tmp_path / 'here.db'}")
    assert code == 1 and "none (empty database)" in out and err == ""  # the flag's database, not .env's


def test_help_names_the_variable_of_each_flag(segdial: Runner) -> None:
    for command, variables in (
        ("serve", ["SEGDIAL_HOST", "SEGDIAL_PORT", "SEGDIAL_WORKERS", "SEGDIAL_MODEL_PATH", "SEGDIAL_NLU_PATH"]),
        ("actions", ["SEGDIAL_ACTIONS_HOST", "SEGDIAL_ACTIONS_PORT", "SEGDIAL_RASA_DOMAIN", "SEGDIAL_API_URL"]),
    ):
        code, out, _ = segdial(command, "--help")
        assert code == 0
        for variable in [*variables, "SEGDIAL_DATABASE_URL", "SEGDIAL_LOG_LEVEL"]:
            assert variable in out, (command, variable)
        for flag in ("--host", "--port", "--model", "--nlu", "--db", "--log-level"):
            assert flag in out, (command, flag)


def test_settings_survive_their_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """What ``serve --workers`` hands uvicorn's own workers elsewhere than Linux: the flags as SEGDIAL_* variables."""
    given = Settings(port=9000, workers=2, metrics_public=False, api_key="sdk_x", model_path=tmp_path)
    for name, value in given.environment().items():
        monkeypatch.setenv(name, value)
    assert Settings() == given

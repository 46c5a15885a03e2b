"""Shared fixtures for the whole suite: the shipped domains and scripted randomness for users.

Test modules are not packages (no ``__init__.py``), so helpers that several modules need are
served as fixtures from here rather than imported.
"""

from __future__ import annotations

import sys
from collections import deque
from collections.abc import Callable, Iterable

import numpy as np
import pytest
from rich.console import Console

import simulators  # noqa: F401  (registers the environments)
from dialogue.domain import Domain, load_domain
from segdial import cli
from simulators.profiles import PARAMETERS

DOMAINS: tuple[str, ...] = ("restaurant", "hotel")


class Draws:
    """A scripted ``uniform`` callable: returns queued values first, then ``default`` forever."""

    def __init__(self, default: float = 0.5, values: Iterable[float] = ()) -> None:
        self.default = default
        self.queue: deque[float] = deque(values)
        self.calls = 0

    def push(self, *values: float) -> None:
        """Queue values for the next draws."""
        self.queue.extend(values)

    def __call__(self) -> float:
        self.calls += 1
        return self.queue.popleft() if self.queue else self.default


def user_params(**overrides: float) -> np.ndarray:
    """A parameter vector in ``PARAMETERS`` order: a neutral user, with ``overrides`` applied.

    The neutral user never hangs up, is never confused or misheard, knows every value and
    volunteers nothing, so each test switches on exactly the behaviour it looks at.
    """
    base = {
        "initiative": 0.0,
        "p_know": 1.0,
        "confusion": 0.0,
        "error_rate": 0.0,
        "confirm_cost": 0.0,
        "explain_cost": 0.0,
        "suggest_cost": 0.0,
        "patience": 1000.0,
        "turn_cost": 0.0,
        "hazard": 0.0,
        "relax": 0.0,
        "vigilance": 0.0,
        "verbosity": 0.5,
    }
    unknown = set(overrides) - set(base)
    assert not unknown, f"unknown parameters {unknown}"
    assert set(base) == set(PARAMETERS), "PARAMETERS changed: update user_params()"
    base.update(overrides)
    return np.array([base[p] for p in PARAMETERS])


@pytest.fixture(params=DOMAINS)
def domain(request: pytest.FixtureRequest) -> Domain:
    """Each shipped domain in turn."""
    return load_domain(request.param)


@pytest.fixture
def restaurant() -> Domain:
    return load_domain("restaurant")


@pytest.fixture
def make_params() -> Callable[..., np.ndarray]:
    """``make_params(**overrides)``: see ``user_params``."""
    return user_params


@pytest.fixture
def draws() -> Callable[..., Draws]:
    """``draws(default, values)``: a fresh scripted uniform source."""
    return Draws


SegdialRunner = Callable[..., tuple[int, str, str]]


@pytest.fixture
def segdial(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> SegdialRunner:
    """``segdial(*args, env={...})``: ``segdial ARGS`` in-process; returns (exit code, stdout, stderr).

    ``env`` sets environment variables (``SEGDIAL_*`` settings) for the call. The console is wide
    so that tables are not wrapped. An exception that ``segdial.cli.main`` does not turn into an
    exit (a traceback for the user) propagates to the test.
    """

    def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
        for name, value in (env or {}).items():
            monkeypatch.setenv(name, value)
        monkeypatch.setattr(sys, "argv", ["segdial", *args])
        monkeypatch.setattr(cli, "console", Console(width=200))
        with pytest.raises(SystemExit) as exit_info:
            cli.main()
        out, err = capsys.readouterr()
        code = exit_info.value.code
        return (0 if code is None else int(code)), out, err

    return run

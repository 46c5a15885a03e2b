"""schemathesis against the real app (ASGI, in-process): the OpenAPI document tells the truth.

Every operation of the document gets schema-valid (positive) and schema-invalid (negative)
requests generated from it, with a valid API key, and every check schemathesis registers runs on
each response: no server error; the status, content type, headers and body conform to what the
document says; schema-valid data is accepted and schema-invalid data refused; authentication is
enforced where it is declared. Hypothesis runs derandomized (fixed seeds), so a run is the same
run every time. SQLite gets more than 1,000 cases, PostgreSQL a smaller run; the figures of both
runs are written to ``bench/results/openapi_fuzz_<database>.json`` for the README when
``SEGDIAL_FUZZ_RESULTS=1`` is set (the test command leaves the checkout as it was).
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import CHECKS, load_all_checks

# Cases per operation and generation mode (about 14 operations: x2 modes).
CASES = {"sqlite": 70, "postgresql": 20}
RESULTS = Path(__file__).resolve().parents[2] / "bench" / "results"


def all_checks() -> list[Any]:
    """Every check schemathesis registers (its ``--checks all``), but the response-time limit (not set)."""
    load_all_checks()
    return [c for c in CHECKS.get_all() if getattr(c, "__name__", "") != "max_response_time"]


def run_operation(operation: Any, mode: Any, examples: int, headers: dict[str, str], tally: Counter[str]) -> None:
    checks = all_checks()

    @settings(
        max_examples=examples,
        derandomize=True,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode, headers=headers))
    def run(case: Any) -> None:
        response = case.call_and_validate(checks=checks)
        tally["cases"] += 1
        tally["server_errors"] += response.status_code >= 500
        tally[f"status {response.status_code}"] += 1

    try:
        run()
    except Unsatisfiable:  # no schema-invalid request exists for an operation without inputs
        tally["operations without negative cases"] += 1


@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
def test_schemathesis_finds_no_failure(
    database_url: str, make_app: Callable[[str], FastAPI], make_key: Callable[[str], str]
) -> None:
    database = "sqlite" if database_url.startswith("sqlite") else "postgresql"
    app = make_app(database_url)
    key = make_key("schemathesis")
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    tally: Counter[str] = Counter()
    operations = [result.ok() for result in schema.get_all_operations()]
    for operation in operations:
        for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):
            run_operation(operation, mode, CASES[database], {"X-API-Key": key}, tally)
    figures = {
        "database": database,
        "operations": len(operations),
        "cases": tally["cases"],
        "checks": sorted(getattr(c, "__name__", type(c).__name__) for c in all_checks()),
        "failures": 0,  # any failing check fails this test before it gets here
        "server_errors": tally["server_errors"],
        "statuses": {k.removeprefix("status "): v for k, v in sorted(tally.items()) if k.startswith("status ")},
    }
    if os.environ.get("SEGDIAL_FUZZ_RESULTS") == "1":
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / f"openapi_fuzz_{database}.json").write_text(json.dumps(figures, indent=2) + "\n")
    assert tally["server_errors"] == 0
    assert tally["cases"] >= (1000 if database == "sqlite" else 250)

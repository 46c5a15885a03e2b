"""The report page: self-contained, every plot present, friendly when empty; rendered in headless Chromium.

The Chromium tests load the page from disk in Debian's ``chromium`` (``scripts/setup.sh`` installs
it), check through the DevTools protocol that every ``<img>`` has loaded (natural width > 0) and
that the console has no error, and save a screenshot. A broken page shows that the check can fail.
Without chromium these tests skip on a developer's machine and fail in CI (``CI=true``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from dialogue import analytics
from dialogue.report import write_report
from dialogue.service import db
from dialogue.service.settings import DEFAULT_MODEL
from metarl_core.inference import Agent
from segdial.render import render_page

PLOTS = ["segment_mix", "turns_to_identification", "outcomes", "confusion", "reliability", "trajectories"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def figures_from(url: str, agent: Agent | None) -> dict[str, Any]:
    engine = db.make_engine(url)
    try:
        with db.session_factory(engine)() as session:
            card = agent.card if agent else None
            return analytics.all_figures(
                session,
                analytics.Window(),
                segments=card.segments if card else [],
                prototypes=card.prototypes if card else [],
                model_path=DEFAULT_MODEL if agent else None,
            )
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def simulated_page(simulated_url: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    figures = figures_from(simulated_url, Agent.load(DEFAULT_MODEL))
    page, _ = write_report(figures, tmp_path_factory.mktemp("report"))
    return page, figures


@pytest.fixture
def empty_page(tmp_path: Path) -> Path:
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    db.upgrade(url)
    page, _ = write_report(figures_from(url, None), tmp_path / "report")
    return page


def needs_chromium() -> None:
    if shutil.which("chromium") is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed: scripts/setup.sh should have installed it")
        pytest.skip("chromium is not installed (apt-get install chromium)")


def test_the_page_is_self_contained_with_every_plot(simulated_page: tuple[Path, dict[str, Any]]) -> None:
    page, figures = simulated_page
    html = page.read_text()
    assert re.findall(r"data-plot='(\w+)'", html) == PLOTS
    sources = re.findall(r"""\b(?:src|href)\s*=\s*['"]([^'"]*)""", html)
    assert sources and all(s.startswith("data:image/png;base64,") for s in sources)
    assert "<script" not in html
    assert json.loads((page.parent / "figures.json").read_text()) == json.loads(json.dumps(figures))
    ece = figures["calibration"]["ece"]
    assert f"Expected calibration error: {ece:.4f}" in html
    assert "Method comparison" in html and "Turns to identification" in html  # the comparison and the definitions


def test_an_empty_database_gives_a_friendly_page(empty_page: Path) -> None:
    html = empty_page.read_text()
    assert "No data yet" in html
    assert "data-plot" not in html


def test_the_page_renders_in_headless_chromium(simulated_page: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    needs_chromium()
    page, figures = simulated_page
    result = render_page(page, tmp_path / "report.png")
    assert result.plots == PLOTS
    assert result.broken_images == [] and all(i["width"] > 0 for i in result.images)
    assert result.console_errors == []
    assert f"{figures['calibration']['ece']:.4f}" in result.text
    shot = (tmp_path / "report.png").read_bytes()
    assert shot.startswith(PNG_MAGIC) and len(shot) > 50_000


def test_the_empty_page_renders_without_errors(empty_page: Path, tmp_path: Path) -> None:
    needs_chromium()
    result = render_page(empty_page, tmp_path / "empty.png")
    assert result.images == [] and result.console_errors == []
    assert "No data yet" in result.text


def test_the_render_check_sees_a_broken_plot_and_a_console_error(tmp_path: Path) -> None:
    needs_chromium()
    page = tmp_path / "broken.html"
    page.write_text(
        "<html><body><img class='plot' data-plot='good' src='data:image/png;base64,"
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=='>"
        "<img class='plot' data-plot='missing' src='no-such-plot.png'>"
        "<script>console.error('boom'); undefinedFunction();</script></body></html>"
    )
    result = render_page(page)
    assert result.plots == ["good", "missing"]
    assert [i["plot"] for i in result.broken_images] == ["missing"]
    assert any("boom" in e for e in result.console_errors)
    assert any("undefinedFunction" in e for e in result.console_errors)

"""The direction of imports between the packages (DESIGN.md, "Packages and the direction of imports").

- ``metarl_core`` knows nothing of dialogue: it imports neither ``dialogue`` nor ``simulators``;
- ``simulators`` builds on ``dialogue`` and never imports ``metarl_core``;
- ``dialogue`` imports neither ``simulators`` nor ``metarl_core``'s training code (only
  ``metarl_core.inference`` and what it needs).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TRAINING_MODULES = {
    "metarl_core.trainer",
    "metarl_core.learners",
    "metarl_core.ppo",
    "metarl_core.sac",
    "metarl_core.rl2",
    "metarl_core.maml",
    "metarl_core.compare",
    "metarl_core.adaptation",
}


def imported_modules(package: str, root: Path = ROOT) -> dict[str, set[str]]:
    """Module file -> the absolute module names it imports."""
    out: dict[str, set[str]] = {}
    for path in sorted((root / package).rglob("*.py")):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module)
                names.update(f"{node.module}.{alias.name}" for alias in node.names)
        out[str(path.relative_to(root))] = names
    return out


def offending(package: str, forbidden: set[str], root: Path = ROOT) -> list[str]:
    bad = []
    for file, names in imported_modules(package, root).items():
        for name in names:
            if any(name == f or name.startswith(f + ".") for f in forbidden):
                bad.append(f"{file} imports {name}")
    return bad


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        ("metarl_core", {"dialogue", "simulators", "segdial"}),
        ("simulators", {"metarl_core", "segdial"}),
        ("dialogue", {"simulators", "segdial", *TRAINING_MODULES}),
    ],
)
def test_imports_flow_one_way(package: str, forbidden: set[str]) -> None:
    assert imported_modules(package), f"no modules found in {package}"
    assert offending(package, forbidden) == []


def test_the_service_uses_only_the_inference_module_of_metarl_core() -> None:
    used = {n for names in imported_modules("dialogue").values() for n in names if n.startswith("metarl_core")}
    assert used, "the service should load the policy through metarl_core.inference"
    assert {n.split(".")[1] for n in used} == {"inference"}, used


def test_the_checker_sees_a_forbidden_import(tmp_path: Path) -> None:
    pkg = tmp_path / "metarl_core"
    pkg.mkdir()
    (pkg / "ok.py").write_text("import numpy\nfrom metarl_core import belief\n")
    (pkg / "bad.py").write_text("from simulators.env import SegmentDialogueEnv\nimport dialogue.acts\n")
    found = offending("metarl_core", {"dialogue", "simulators"}, root=tmp_path)
    assert sorted(found) == sorted(
        [
            "metarl_core/bad.py imports dialogue.acts",
            "metarl_core/bad.py imports simulators.env",
            "metarl_core/bad.py imports simulators.env.SegmentDialogueEnv",
        ]
    )

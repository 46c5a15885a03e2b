"""docker-compose.yml and the Dockerfile refer only to things that exist (no Docker engine runs here).

``compose_problems`` reads the compose file as Compose would (anchors, merge keys, ``${VAR:-default}``)
and checks every service against the repository: the build context and Dockerfile, each command
against the ``segdial`` CLI's own parser, each ``SEGDIAL_*`` variable against the settings classes,
paths against the files the image copies, ports and health checks against what the commands listen
on and the routes the apps serve, and the start-up order. The last tests feed it broken copies to
show that it notices.
"""

from __future__ import annotations

import copy
import re
import shlex
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import typer
import yaml

from dialogue.service.app import create_app
from dialogue.service.settings import Settings
from segdial import cli

ROOT = Path(__file__).resolve().parents[2]
SERVICES = {"db", "migrate", "api", "actions", "trainer"}
POSTGRES_VARIABLES = {"POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB", "PGDATA"}
ACTION_SERVER_ROUTES = {
    "/health",
    "/webhook",
    "/actions",
}  # rasa-sdk's app, as tests/rasa/test_action_server.py uses it
_DEFAULTED = re.compile(r"\$\{(\w+):?-([^}]*)\}")


def interpolated(value: Any) -> Any:
    """``${VAR:-default}`` -> default, as Compose reads it when VAR is not set."""
    if isinstance(value, str):
        return _DEFAULTED.sub(lambda m: m.group(2), value)
    if isinstance(value, dict):
        return {k: interpolated(v) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolated(v) for v in value]
    return value


def load_compose(path: Path = ROOT / "docker-compose.yml") -> dict[str, Any]:
    return dict(interpolated(yaml.safe_load(path.read_text())))


def dockerfile_problems(path: Path, root: Path) -> tuple[list[str], str]:
    """Problems of the Dockerfile, and its WORKDIR."""
    if not path.is_file():
        return [f"Dockerfile {path} does not exist"], "/"
    lines = [ln.strip() for ln in path.read_text().replace("\\\n", " ").splitlines() if ln.strip()]
    lines = [ln for ln in lines if not ln.startswith("#")]
    problems = []
    if lines[0] != "FROM python:3.11-slim":
        problems.append(f"the image must be based on python:3.11-slim, not {lines[0]!r}")
    runs = [ln for ln in lines if ln.startswith("RUN ")]
    torch_at = next((i for i, ln in enumerate(runs) if "torch==2.13.0" in ln), None)
    package_at = next((i for i, ln in enumerate(runs) if re.search(r"pip install (-e )?\.(\s|$)", ln)), None)
    if torch_at is None or "--index-url https://download.pytorch.org/whl/cpu" not in runs[torch_at]:
        problems.append("torch==2.13.0 must be installed from the CPU index (--index-url .../whl/cpu)")
    if package_at is None:
        problems.append("the package is never installed (pip install .)")
    elif torch_at is not None and torch_at > package_at:
        problems.append("torch must be installed before the package, or pip fetches another build")
    workdir = next((ln.split()[1] for ln in lines if ln.startswith("WORKDIR ")), "/")
    for ln in lines:
        if ln.startswith("COPY "):
            for source in shlex.split(ln)[1:-1]:
                if not (root / source).exists():
                    problems.append(f"COPY {source}: no such file in the repository")
    return problems, workdir


def repo_path(container_path: str, workdir: str, root: Path) -> Path | None:
    """The repository file an absolute container path under WORKDIR stands for (None when outside it)."""
    if not container_path.startswith(workdir.rstrip("/") + "/"):
        return None
    return root / container_path[len(workdir.rstrip("/")) + 1 :]


def command_problems(name: str, command: list[str], root: Path) -> list[str]:
    """The command must be the segdial console script with arguments its own parser accepts."""
    scripts = tomllib.loads((root / "pyproject.toml").read_text())["project"]["scripts"]
    if not command or command[0] not in scripts:
        return [f"{name}: command {command!r} does not start with a console script of the package"]
    node: Any = typer.main.get_command(cli.app)  # typer's own click: duck-typed below
    args = command[1:]
    while getattr(node, "commands", None) and args and args[0] in node.commands:
        node, args = node.commands[args[0]], args[1:]
    if getattr(node, "commands", None) is not None:
        return [f"{name}: {' '.join(command)} does not name a segdial command"]
    try:
        ctx = node.make_context(" ".join(command), list(args))
    except Exception as e:  # a usage error of the command's parser
        message = getattr(e, "format_message", None)
        if not callable(message):
            raise
        return [f"{name}: {' '.join(command)}: {message()}"]
    problems = []
    for option in ("config",):
        value = ctx.params.get(option)
        if value is not None and not (root / str(value)).exists():
            problems.append(f"{name}: --{option} {value} does not exist in the repository")
    return problems


def option_value(command: list[str], option: str) -> str | None:
    return command[command.index(option) + 1] if option in command else None


def health_url(service: dict[str, Any]) -> tuple[int, str] | None:
    test = " ".join(service.get("healthcheck", {}).get("test", []))
    m = re.search(r"http://127\.0\.0\.1:(\d+)(/[\w/]*)", test)
    return (int(m.group(1)), m.group(2)) if m else None


def compose_problems(compose: dict[str, Any], root: Path = ROOT) -> list[str]:
    """Everything in ``compose`` that refers to something that does not exist or does not fit."""
    problems: list[str] = []
    services = compose.get("services", {})
    if set(services) != SERVICES:
        problems.append(f"services are {sorted(services)}, expected {sorted(SERVICES)}")
    settings_fields = set(Settings.model_fields)
    api_routes = set(create_app(Settings()).openapi()["paths"])
    db = services.get("db", {})
    db_env = db.get("environment", {})
    if not str(db.get("image", "")).startswith("postgres:"):
        problems.append("db: must run a postgres image")
    if "pg_isready" not in " ".join(db.get("healthcheck", {}).get("test", [])):
        problems.append("db: needs a pg_isready health check")
    problems += [f"db: unknown variable {k}" for k in db_env if k not in POSTGRES_VARIABLES]
    for name, service in services.items():
        if name == "db":
            continue
        build = service.get("build", {})
        context = root / build.get("context", "<none>")
        if not context.is_dir():
            problems.append(f"{name}: build context {build.get('context')!r} is not a folder of the repository")
            continue
        docker_problems, workdir = dockerfile_problems(context / build.get("dockerfile", "Dockerfile"), root)
        problems += [f"{name}: {p}" for p in docker_problems]
        command = [str(c) for c in service.get("command", [])]
        problems += command_problems(name, command, root)
        env = {k: str(v) for k, v in service.get("environment", {}).items()}
        for key, value in env.items():
            field = key.removeprefix("SEGDIAL_").lower()
            if not key.startswith("SEGDIAL_") or field not in settings_fields:
                problems.append(f"{name}: {key} is not a SEGDIAL_* setting")
            elif field.endswith("_path"):
                local = repo_path(value, workdir, root)
                if local is None or not local.exists():
                    problems.append(f"{name}: {key}={value} is not a path the image copies from the repository")
        values = {k.removeprefix("SEGDIAL_").lower(): v for k, v in env.items() if k.startswith("SEGDIAL_")}
        try:
            Settings(**values)
        except ValueError as e:
            problems.append(f"{name}: its SEGDIAL_* values are not valid settings: {e}")
        url = urlparse(env.get("SEGDIAL_DATABASE_URL", ""))
        if (
            url.hostname != "db"
            or url.username != db_env.get("POSTGRES_USER")
            or url.path != f"/{db_env.get('POSTGRES_DB')}"
        ):
            problems.append(f"{name}: SEGDIAL_DATABASE_URL must name the db service's user and database")
        if url.password != db_env.get("POSTGRES_PASSWORD"):
            problems.append(f"{name}: SEGDIAL_DATABASE_URL's password is not the db service's")
        if name in ("api", "actions"):
            listens = (
                option_value(command, "--port") or "5055"
                if name == "actions"
                else env.get("SEGDIAL_PORT", str(Settings.model_fields["port"].default))
            )
            routes = ACTION_SERVER_ROUTES if name == "actions" else api_routes
            published = [str(p).split(":") for p in service.get("ports", [])]
            if [p[-1] for p in published] != [listens]:
                problems.append(f"{name}: publishes {service.get('ports')} but listens on {listens}")
            if name == "api" and env.get("SEGDIAL_HOST") != "0.0.0.0":
                problems.append("api: must listen on 0.0.0.0 (SEGDIAL_HOST) to be reachable from outside its container")
            if name == "actions" and option_value(command, "--host") != "0.0.0.0":
                problems.append("actions: must listen on 0.0.0.0 (--host) to be reachable from outside its container")
            check = health_url(service)
            if check is None or str(check[0]) != listens or check[1] not in routes:
                problems.append(f"{name}: its health check {check} is not a route it serves on port {listens}")
        waits = {k: v.get("condition") for k, v in service.get("depends_on", {}).items()}
        needed = {"db": "service_healthy"}
        if name in ("api", "actions"):
            needed["migrate"] = "service_completed_successfully"
        if name != "trainer" and any(waits.get(k) != v for k, v in needed.items()):
            problems.append(f"{name}: must wait for {needed}, waits for {waits}")
        if name == "trainer":
            if service.get("profiles") != ["train"]:
                problems.append("trainer: must sit behind the 'train' profile")
            mounted = {str(v).split(":")[1] for v in service.get("volumes", [])}
            for option in ("--out", "--run-dir"):
                target = option_value(command, option)
                inside = f"{workdir.rstrip('/')}/{target}"
                if target is None or not any(inside == m or inside.startswith(m + "/") for m in mounted):
                    problems.append(f"trainer: {option} {target} is not on a mounted volume (the result would be lost)")
    return problems


def test_the_compose_file_refers_only_to_what_exists() -> None:
    assert compose_problems(load_compose()) == []


def test_the_example_assistant_calls_the_published_action_server() -> None:
    endpoints = yaml.safe_load((ROOT / "examples" / "rasa" / "endpoints.yml").read_text())
    url = urlparse(endpoints["action_endpoint"]["url"])
    published = [str(p).split(":")[0] for p in load_compose()["services"]["actions"]["ports"]]
    assert (url.path, [str(url.port)]) == ("/webhook", published)


def _broken(edit: Any) -> list[str]:
    compose = copy.deepcopy(load_compose())
    edit(compose["services"])
    return compose_problems(compose)


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda s: s["api"]["environment"].update(SEGDIAL_MODLE_PATH="/app/models/default"), "not a SEGDIAL_* setting"),
        (lambda s: s["api"]["environment"].update(SEGDIAL_MODEL_PATH="/app/models/missing"), "not a path the image"),
        (lambda s: s["api"]["environment"].update(SEGDIAL_PORT="not-a-port"), "not valid settings"),
        (lambda s: s["actions"].update(command=["segdial", "actions", "--prot", "5055"]), "No such option"),
        (lambda s: s["migrate"].update(command=["segdial", "db", "downgrade"]), "does not name a segdial command"),
        (
            lambda s: s["trainer"].update(command=["segdial", "train", "--config", "configs/nope.toml"]),
            "does not exist",
        ),
        (lambda s: s["actions"].update(ports=["5055:5056"]), "listens on 5055"),
        (
            lambda s: s["api"]["healthcheck"].update(test=["CMD", "curl", "http://127.0.0.1:8000/health"]),
            "health check",
        ),
        (lambda s: s["api"]["depends_on"].pop("migrate"), "must wait for"),
        (lambda s: s["trainer"].pop("profiles"), "'train' profile"),
        (lambda s: s["api"].update(build={"context": "nowhere"}), "build context"),
        (lambda s: s["db"]["environment"].update(POSTGRES_DB="other"), "user and database"),
    ],
)
def test_the_checker_notices_a_broken_compose_file(edit: Any, expected: str) -> None:
    assert any(expected in p for p in _broken(edit)), _broken(edit)


def test_the_checker_notices_a_dockerfile_that_installs_the_package_before_torch(tmp_path: Path) -> None:
    text = (ROOT / "Dockerfile").read_text()
    torch_line = next(ln for ln in text.splitlines() if ln.startswith("RUN") and "torch==2.13.0" in ln)
    reordered = text.replace(torch_line + "\n", "").replace("RUN pip install .\n", f"RUN pip install .\n{torch_line}\n")
    (tmp_path / "Dockerfile").write_text(reordered)
    problems, _ = dockerfile_problems(tmp_path / "Dockerfile", ROOT)
    assert problems == ["torch must be installed before the package, or pip fetches another build"]
    assert dockerfile_problems(ROOT / "Dockerfile", ROOT)[0] == []

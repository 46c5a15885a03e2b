"""The one-line failures of ``segdial`` and the flags that are SEGDIAL_* settings.

``fail`` prints ``error: <one line>`` on stderr and exits: 2 for bad input, 1 for a failure outside
(a database that cannot be reached, a port that is taken). A command's flag for a setting of
``dialogue.service.settings.Settings`` is that setting's variable (``setting_option``: ``--port`` is
``SEGDIAL_PORT``, and ``--help`` shows it); ``settings_from`` builds the settings from the flags
given, then the environment, a ``.env`` file and the defaults, and turns settings that do not
validate into one line that names the variable, its flag and the value (never a secret).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any, NoReturn

import pydantic
import typer

from dialogue.service.settings import Settings


def fail(message: str, status: int = 2) -> NoReturn:
    """Print a one-line error and exit with ``status``: 2 for bad input, 1 for a failure outside
    (``dialogue.service.startup.BAD_INPUT`` and ``OUTSIDE``)."""
    print(f"error: {message}", file=sys.stderr)
    raise typer.Exit(status)


# The flag of each setting that a command takes as a flag (the flag is the SEGDIAL_* variable).
FLAGS = {
    "host": "--host",
    "port": "--port",
    "workers": "--workers",
    "model_path": "--model",
    "nlu_path": "--nlu",
    "database_url": "--db",
    "log_level": "--log-level",
    "actions_host": "--host",
    "actions_port": "--port",
    "rasa_domain": "--domain",
    "api_url": "--api-url",
}


def setting_option(field: str, help: str, shown: str | None = None) -> Any:
    """The flag of ``Settings.<field>``, which is also its SEGDIAL_* variable (``--help`` shows both)."""
    default = Settings.model_fields[field].default
    return typer.Option(FLAGS[field], envvar=f"SEGDIAL_{field.upper()}", help=help, show_default=shown or str(default))


def settings_from(**flags: Any) -> Settings:
    """The settings: the flags given (None: not given), then SEGDIAL_* variables, a .env file and the defaults."""
    try:
        return Settings(**{k: v for k, v in flags.items() if v is not None})
    except pydantic.ValidationError as e:
        fail(bad_settings(e))


def bad_settings(error: pydantic.ValidationError) -> str:
    """One line for settings that do not validate: the variable and its flag, the value (never a secret), what
    is allowed."""
    from dialogue.service import db

    problems = []
    for err in error.errors(include_url=False):
        field = str(err["loc"][0]) if err["loc"] else ""
        name = f"SEGDIAL_{field.upper()}" + (f" ({FLAGS[field]})" if field in FLAGS else "")
        value = err.get("input")
        shown = db.safe_url(str(value)) if field == "database_url" else "***" if field == "api_key" else value
        problems.append(f"{name} = {shown!r}: {err['msg']}")
    return "bad setting " + "; ".join(problems)


DatabaseOption = Annotated[
    str | None, setting_option("database_url", "Database URL: a SQLite file or PostgreSQL.", "sqlite:///./segdial.db")
]
ModelOption = Annotated[Path | None, setting_option("model_path", "Checkpoint folder of the policy.", "models/default")]
NluOption = Annotated[Path | None, setting_option("nlu_path", "Folder of the text NLU.", "models/nlu")]
LogLevelOption = Annotated[
    str | None, setting_option("log_level", "Log level: critical, error, warning, info, debug or trace.")
]

"""Why ``segdial serve`` or ``segdial actions`` cannot start: one line without secrets, and an exit status.

``open_runtime`` opens the service layer (``Runtime.open``: the database, the policy, the NLU) and
turns what can go wrong at start-up, as opposed to a bug, into a ``StartupError`` with a one-line
reason and a status: ``BAD_INPUT`` (2) when a setting is wrong (a checkpoint, NLU artifact or
domain that cannot be used, a database URL that cannot be parsed or has no driver), ``OUTSIDE``
(1) when something outside failed (the database cannot be reached or is not migrated, the system
refused a file or a socket). The database URL's password never appears in a reason.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from dialogue.domain import DomainError
from dialogue.nlu import NLUError
from dialogue.service import db
from dialogue.service.conversations import Runtime
from dialogue.service.settings import Settings
from metarl_core.inference import CheckpointError

BAD_INPUT = 2
OUTSIDE = 1


class StartupError(RuntimeError):
    """A server that cannot start: ``str(error)`` is one line, ``status`` the exit status."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def first_line(error: BaseException) -> str:
    """The first line of an error's message (its type's name when it has none)."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def database_failure(error: Exception, url: str) -> StartupError:
    """What a database error means, in one line without the URL's password."""
    shown, reason = db.safe_url(url), db.safe_error(error, url)
    if isinstance(error, ArgumentError | ImportError):  # before any connection: the URL or its driver
        return StartupError(f"SEGDIAL_DATABASE_URL {shown} cannot be used: {reason}", BAD_INPUT)
    if isinstance(error, db.SchemaError):
        return StartupError(f"{shown}: {reason}", OUTSIDE)
    return StartupError(f"cannot reach the database {shown}: {reason}", OUTSIDE)


def open_runtime(settings: Settings, **kwargs: Any) -> Runtime:
    """``Runtime.open(settings, **kwargs)``, or a StartupError that says why not."""
    try:
        return Runtime.open(settings, **kwargs)
    except (CheckpointError, DomainError, NLUError) as e:
        raise StartupError(first_line(e), BAD_INPUT) from e
    except (SQLAlchemyError, ImportError, db.SchemaError) as e:
        raise database_failure(e, settings.database_url) from e
    except OSError as e:
        raise StartupError(first_line(e), OUTSIDE) from e

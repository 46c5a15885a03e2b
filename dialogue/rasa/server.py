"""The action server that ``segdial actions`` runs: rasa-sdk's webhook app, in one process.

It is rasa-sdk's own Sanic app (``POST /webhook``, ``GET /health``, ``GET /actions``) with the
segdial actions registered, plus what the stock server lacks: a malformed body (not JSON, not an
object, no action name, no tracker with a sender id, a string that is not valid Unicode) gets a
JSON 400 instead of a 500, an unreachable segdial API (HTTP mode) a JSON 502, and an unexpected
error a 500 that says only that (rasa-sdk's own handler returns the exception's text and the whole
request body). The backend (policy, NLU, database) is opened
before the port is bound, so ``/health`` answers only when the server can take turns.
"""

from __future__ import annotations

import json
import logging
import zlib
from collections.abc import Collection
from typing import Any

from rasa_sdk.endpoint import create_app
from rasa_sdk.executor import ActionExecutor
from sanic import Sanic, response
from sanic.exceptions import BadRequest
from sanic.request import Request

from dialogue.rasa.backends import BackendUnavailableError, install_backend
from dialogue.service.settings import Settings
from dialogue.service.startup import OUTSIDE, StartupError

ACTIONS_MODULE = "dialogue.rasa_actions"
logger = logging.getLogger(__name__)


def webhook_problem(call: Any, known_actions: Collection[str]) -> str | None:
    """What is wrong with a webhook body (None when rasa-sdk can run it; an unknown action is its 404)."""
    if not isinstance(call, dict):
        return "the body must be a JSON object (Rasa's action call)"
    try:
        json.dumps(call, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:  # a JSON "\ud800": it cannot be stored or sent back
        return "the body holds a string with an unpaired UTF-16 surrogate (not valid Unicode text)"
    except ValueError:  # NaN or Infinity
        return "the body holds a number that is not finite"
    name = call.get("next_action")
    if not isinstance(name, str) or not name:
        return "next_action must name the action to run"
    if name not in known_actions:
        return None
    tracker = call.get("tracker")
    if not isinstance(tracker, dict):
        return "tracker must be an object (Rasa's tracker state)"
    if not isinstance(tracker.get("sender_id"), str):
        return "tracker.sender_id must be a string"
    if not isinstance(call.get("domain", {}), dict | None):
        return "domain must be an object"
    return None


def create_server(executor: ActionExecutor) -> Sanic:
    """rasa-sdk's webhook app for ``executor``, with 400s for malformed bodies and 502s for an unreachable API."""
    app = create_app(executor, cors_origins=None)

    @app.on_request
    async def check_webhook_body(request: Request) -> response.HTTPResponse | None:
        if request.method != "POST" or request.path != "/webhook":
            return None
        try:
            if request.headers.get("Content-Encoding") == "deflate":
                call = json.loads(zlib.decompress(request.body))
            else:
                call = request.json
        except (BadRequest, zlib.error, ValueError):
            return response.json({"error": "the body is not valid JSON"}, status=400)
        problem = webhook_problem(call, executor.actions)
        if problem is None:
            return None
        name = call.get("next_action") if isinstance(call, dict) else None
        return response.json({"error": problem, "action_name": name if isinstance(name, str) else None}, status=400)

    @app.exception(BackendUnavailableError)
    async def unavailable(request: Request, exception: BackendUnavailableError) -> response.HTTPResponse:
        return response.json({"error": str(exception)}, status=502)

    async def unexpected(request: Request, exception: Exception) -> response.HTTPResponse:
        logger.error("unexpected error in the action server", exc_info=exception)
        return response.json({"error": "internal error of the action server (see its log)"}, status=500)

    # In place of rasa-sdk's handler, which answers the exception's text and the request body (Sanic
    # refuses a second handler for the same exception, so the registered one is replaced).
    app.error_handler.cached_handlers[(Exception, None)] = unexpected

    return app


def prepare(settings: Settings, actions_module: str = ACTIONS_MODULE) -> ActionExecutor:
    """Open the backend (policy, NLU, database or API settings) and register the actions.

    Raises StartupError with a one-line reason and an exit status when the settings do not work.
    """
    try:
        install_backend(settings)
    except StartupError as e:
        raise StartupError(f"cannot open segdial for the actions: {e}", e.status) from e
    executor = ActionExecutor()
    executor.register_package(actions_module)
    return executor


def serve(settings: Settings) -> None:
    """Run the action server on ``settings.actions_host:actions_port`` until it is stopped (SIGINT/SIGTERM)."""
    executor = prepare(settings)  # before logging is set up: a start-up failure is its one line only
    level = "DEBUG" if settings.log_level == "trace" else settings.log_level.upper()  # uvicorn's trace: Python's debug
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = create_server(executor)
    host, port = settings.actions_host, settings.actions_port
    try:
        app.run(host=host, port=port, single_process=True, access_log=False, motd=False)
    except OSError as e:  # the port is taken, or the address is not this machine's
        raise StartupError(f"cannot listen on {host}:{port}: {e.strerror or e}", OUTSIDE) from e

"""One settings model for the HTTP service and the Rasa action server: ``SEGDIAL_*`` variables.

Each setting is read, in this order of precedence, from a command-line flag where the command has
one (``segdial serve --port``: the flag is the variable), the environment (``SEGDIAL_PORT``), a
``.env`` file in the working folder (other keys in it, such as docker compose's
``POSTGRES_PASSWORD``, are left alone), and the default.

Where the service runs: ``SEGDIAL_DATABASE_URL`` (default: a SQLite file ``segdial.db`` in the
working folder), ``SEGDIAL_MODEL_PATH`` (default: the shipped ``models/default``),
``SEGDIAL_NLU_PATH`` (default: the shipped ``models/nlu``), ``SEGDIAL_HOST``, ``SEGDIAL_PORT``,
``SEGDIAL_WORKERS``, ``SEGDIAL_LOG_LEVEL``, ``SEGDIAL_TORCH_THREADS``, ``SEGDIAL_WORKER_THREADS``;
``SEGDIAL_HANDOVER_AFTER`` (user turns in a row not understood before a reply asks for a person;
0: never).

The limits, each enforced on every request and written into the OpenAPI document:

- ``SEGDIAL_MAX_TURNS`` (20): user turns a conversation may have. The turn at the limit ends the
  conversation with ``handover: true`` (and its reason); a later turn gets 409. It also scales
  the policy's turn feature, as in training.
- ``SEGDIAL_MAX_ACTS`` (32): structured acts in one turn; more get 422.
- ``SEGDIAL_MAX_TEXT_CHARS`` (2000): characters of a turn's text; more get 422.
- ``SEGDIAL_MAX_BODY_BYTES`` (65536): bytes of a request body; more get 413 before it is parsed.
- ``SEGDIAL_METRICS_PUBLIC`` (true): ``/metrics`` answers anyone; false: only with an API key
  (for deployments that expose the port).

The action server (``segdial actions``): ``SEGDIAL_ACTIONS_HOST`` and ``SEGDIAL_ACTIONS_PORT`` (its
own, so that one ``.env`` serves both commands), ``SEGDIAL_RASA_DOMAIN``, ``SEGDIAL_RASA_CLIENT``,
``SEGDIAL_RASA_SEND_TEXT``; in HTTP mode ``SEGDIAL_API_URL``, ``SEGDIAL_API_KEY`` and
``SEGDIAL_API_TIMEOUT`` (otherwise it opens the service layer in-process with the settings above).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_MODEL = Path(__file__).resolve().parents[2] / "models" / "default"
DEFAULT_NLU = Path(__file__).resolve().parents[2] / "models" / "nlu"

LogLevel = Literal["critical", "error", "warning", "info", "debug", "trace"]


class Settings(BaseSettings):
    """Everything the service and the action server need to start."""

    model_config = SettingsConfigDict(env_prefix="SEGDIAL_", env_file=".env", extra="ignore")

    database_url: str = "sqlite:///./segdial.db"
    model_path: Path = DEFAULT_MODEL
    nlu_path: Path = DEFAULT_NLU
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)  # 0: a free port of the system's choosing
    workers: int = Field(default=1, ge=1)  # uvicorn worker processes; each loads the policy and the NLU
    log_level: LogLevel = "info"
    max_text_chars: int = Field(default=2000, ge=1)
    max_turns: int = Field(default=20, ge=1)
    max_acts: int = Field(default=32, ge=1)
    max_body_bytes: int = Field(default=65536, ge=1024)
    metrics_public: bool = True
    handover_after: int = Field(default=3, ge=0)
    torch_threads: int = Field(default=1, ge=1)  # one per worker: more oversubscribes small models under load
    worker_threads: int = Field(default=8, ge=1)  # threads serving sync routes (database and model work)

    actions_host: str = "127.0.0.1"
    actions_port: int = Field(default=5055, ge=1, le=65535)  # Rasa's endpoints.yml action_endpoint
    api_url: str | None = None  # HTTP mode: the segdial API's base URL, e.g. http://api:8000
    api_key: SecretStr | None = None  # HTTP mode: an API key from `segdial keys create`
    api_timeout: float = Field(default=10.0, gt=0)  # HTTP mode: seconds per request
    rasa_domain: str = "restaurant"  # the segdial domain of the assistant's conversations
    rasa_client: str = "rasa"  # in-process mode: the client name the conversations are stored under
    # Send the user's words with the acts Rasa's intent and entities map to, so segdial reads the
    # register (terse, plain, chatty) from them: one sentence-encoder pass per turn (about 7 ms on
    # 2 CPU cores). False: acts only, the register taken as plain (unmapped messages still send text).
    rasa_send_text: bool = True

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    def environment(self) -> dict[str, str]:
        """These settings as ``SEGDIAL_*`` variables (for processes that read them from their environment)."""
        out = {}
        for name, value in self.model_dump(exclude_none=True).items():
            shown = value.get_secret_value() if isinstance(value, SecretStr) else value
            out[f"SEGDIAL_{name.upper()}"] = str(shown).lower() if isinstance(shown, bool) else str(shown)
        return out

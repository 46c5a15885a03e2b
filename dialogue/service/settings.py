"""Service settings, read from the environment with the prefix ``SEGDIAL_``.

``SEGDIAL_DATABASE_URL`` (default: a SQLite file ``segdial.db`` in the working folder),
``SEGDIAL_MODEL_PATH`` (default: the shipped ``models/default``), ``SEGDIAL_NLU_PATH`` (default:
the shipped ``models/nlu``), ``SEGDIAL_HOST``, ``SEGDIAL_PORT``, ``SEGDIAL_LOG_LEVEL``,
``SEGDIAL_HANDOVER_AFTER`` (user turns in a row not understood before a reply asks for a person;
0: never), ``SEGDIAL_TORCH_THREADS``, ``SEGDIAL_WORKER_THREADS``, ``SEGDIAL_WORKERS``.

The limits, each enforced on every request and written into the OpenAPI document:

- ``SEGDIAL_MAX_TURNS`` (20): user turns a conversation may have. The turn at the limit ends the
  conversation with ``handover: true`` (and its reason); a later turn gets 409. It also scales
  the policy's turn feature, as in training.
- ``SEGDIAL_MAX_ACTS`` (32): structured acts in one turn; more get 422.
- ``SEGDIAL_MAX_TEXT_CHARS`` (2000): characters of a turn's text; more get 422.
- ``SEGDIAL_MAX_BODY_BYTES`` (65536): bytes of a request body; more get 413 before it is parsed.
- ``SEGDIAL_METRICS_PUBLIC`` (true): ``/metrics`` answers anyone; false: only with an API key
  (for deployments that expose the port).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_MODEL = Path(__file__).resolve().parents[2] / "models" / "default"
DEFAULT_NLU = Path(__file__).resolve().parents[2] / "models" / "nlu"


class Settings(BaseSettings):
    """Everything the service needs to start."""

    model_config = SettingsConfigDict(env_prefix="SEGDIAL_")

    database_url: str = "sqlite:///./segdial.db"
    model_path: Path = DEFAULT_MODEL
    nlu_path: Path = DEFAULT_NLU
    host: str = "127.0.0.1"
    port: int = 8000
    log_level: str = "info"
    max_text_chars: int = 2000
    max_turns: int = Field(default=20, ge=1)
    max_acts: int = Field(default=32, ge=1)
    max_body_bytes: int = Field(default=65536, ge=1024)
    metrics_public: bool = True
    handover_after: int = 3
    torch_threads: int = 1  # one per worker: more oversubscribes small models under load
    worker_threads: int = 8  # threads serving sync routes (database and model work)
    workers: int = 1  # uvicorn worker processes (`segdial serve`); each loads the policy and the NLU

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

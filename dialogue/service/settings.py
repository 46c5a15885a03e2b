"""Service settings, read from the environment with the prefix ``SEGDIAL_``.

``SEGDIAL_DATABASE_URL`` (default: a SQLite file ``segdial.db`` in the working folder),
``SEGDIAL_MODEL_PATH`` (default: the shipped ``models/default``), ``SEGDIAL_NLU_PATH`` (default:
the shipped ``models/nlu``), ``SEGDIAL_HOST``,
``SEGDIAL_PORT``, ``SEGDIAL_LOG_LEVEL``, ``SEGDIAL_MAX_TEXT_CHARS``, ``SEGDIAL_MAX_TURNS``,
``SEGDIAL_HANDOVER_AFTER`` (user turns in a row not understood before a reply
asks for a person; 0: never), ``SEGDIAL_TORCH_THREADS``, ``SEGDIAL_WORKER_THREADS``, ``SEGDIAL_WORKERS``.
"""

from __future__ import annotations

from pathlib import Path

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
    max_turns: int = 20
    handover_after: int = 3
    torch_threads: int = 1  # one per worker: more oversubscribes small models under load
    worker_threads: int = 8  # threads serving sync routes (database and model work)
    workers: int = 1  # uvicorn worker processes (`segdial serve`); each loads the policy and the NLU

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

"""``segdial keys list`` / ``keys revoke``, ``db current`` and messages that never show the password,
on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any


def test_a_revoked_key_is_listed_as_revoked_and_refused(run_cli: Any, database_url: str, client: Any) -> None:
    code, key, _ = run_cli(database_url, "keys", "create", "team-a")
    assert code == 0
    assert client.post("/v1/conversations", json={}, headers={"X-API-Key": key.strip()}).status_code == 201
    code, listing, _ = run_cli(database_url, "keys", "list")
    assert code == 0 and "team-a" in listing and key.strip() not in listing
    key_id = next(line.split()[1] for line in listing.splitlines() if "team-a" in line)
    code, out, _ = run_cli(database_url, "keys", "revoke", key_id)
    assert code == 0 and "revoked" in out
    assert client.post("/v1/conversations", json={}, headers={"X-API-Key": key.strip()}).status_code == 401
    code, listing, _ = run_cli(database_url, "keys", "list")
    assert next(line for line in listing.splitlines() if "team-a" in line).split()[-2] == "yes"
    code, _, err = run_cli(database_url, "keys", "revoke", key_id)
    assert code == 2 and "already revoked" in err and len(err.strip().splitlines()) == 1
    code, _, err = run_cli(database_url, "keys", "revoke", "999999")
    assert code == 2 and "no API key with id 999999" in err


def test_db_current_says_whether_the_schema_is_the_newest(run_cli: Any, database_url: str, tmp_path: Any) -> None:
    code, out, _ = run_cli(database_url, "db", "current")
    assert code == 0 and "the newest" in out
    code, out, _ = run_cli(f"sqlite:///{tmp_path / 'empty.db'}", "db", "current")
    assert code == 1 and "none" in out and "segdial db upgrade" in out


def test_database_errors_are_one_line_without_the_password(run_cli: Any) -> None:
    """An unreachable database is a failure outside (exit 1); the messages never show the password."""
    url = "postgresql+psycopg://segdial:hunter2secret@127.0.0.1:1/nothing"
    for args in (("db", "upgrade"), ("db", "current"), ("keys", "list"), ("keys", "create", "x")):
        code, out, err = run_cli(url, *args)
        assert code == 1, args
        assert "hunter2secret" not in out + err, args
        assert len(err.strip().splitlines()) == 1, err
    code, out, err = run_cli(url, "report", "--out", "/tmp/segdial-report-never")
    assert code == 1 and "hunter2secret" not in out + err

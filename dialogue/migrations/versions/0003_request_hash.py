"""The request hash of a turn sent with an idempotency key.

A retry with the same key must send the same request; the hash of the first one (without its key)
is stored with the turn, and a retry whose body hashes otherwise gets 422. NULL for turns without
a key, and for turns stored before this revision (their retries are replayed unchecked).

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("turns") as batch:
        batch.add_column(sa.Column("request_hash", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("turns") as batch:
        batch.drop_column("request_hash")

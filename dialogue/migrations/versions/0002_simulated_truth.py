"""What only simulated users know: the user's true segment and the episode's return.

``segdial report --simulate`` writes simulated conversations into the same tables as the service,
so one analytics path serves production logs and simulations; these two nullable columns carry
what a real conversation never knows (NULL for every conversation the service stores).

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("conversations") as batch:
        batch.add_column(sa.Column("true_segment", sa.String(50), nullable=True))
        batch.add_column(sa.Column("episode_return", sa.Float, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("conversations") as batch:
        batch.drop_column("episode_return")
        batch.drop_column("true_segment")

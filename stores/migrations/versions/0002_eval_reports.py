"""eval_reports: the `keye eval` report of a model version on a labelled set (keyed by the labels' hash).

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
    op.create_table(
        "eval_reports",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("model_version", sa.String(128), nullable=False),
        sa.Column("dataset_id", sa.String(32), nullable=False),
        sa.Column("dataset_name", sa.String(256), nullable=False),
        sa.Column("report", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_eval_reports_model_version", "eval_reports", ["model_version"])
    op.create_index("ix_eval_reports_dataset_id", "eval_reports", ["dataset_id"])


def downgrade() -> None:
    op.drop_table("eval_reports")

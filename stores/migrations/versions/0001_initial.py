"""Initial schema: videos, analyses, tags, moderation flags, reviews, feedback, model versions,
training runs, and the stream aggregates.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def S(n: int | None = None) -> sa.String:
    return sa.String(n)


def upgrade() -> None:
    op.create_table(
        "videos",
        sa.Column("video_id", S(128), primary_key=True),
        sa.Column("uri", S(), nullable=False),
        sa.Column("title", S(), nullable=True),
        sa.Column("description", S(), nullable=True),
        sa.Column("hashtags", sa.JSON(), nullable=False),
        sa.Column("creator_id", S(128), nullable=True),
        sa.Column("language", S(35), nullable=True),
        sa.Column("status", S(16), nullable=False),
        sa.Column("error", S(), nullable=True),
        sa.Column("submitted_at", TS, nullable=True),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.create_index("ix_videos_creator_id", "videos", ["creator_id"])
    op.create_index("ix_videos_status", "videos", ["status"])

    op.create_table(
        "analyses",
        sa.Column("analysis_id", S(36), primary_key=True),
        sa.Column("video_id", S(128), nullable=False),
        sa.Column("model_version", S(128), nullable=False),
        sa.Column("prompt_version", S(64), nullable=False),
        sa.Column("moderation_status", S(16), nullable=False),
        sa.Column("max_severity", sa.Integer(), nullable=False),
        sa.Column("summary_short", S(), nullable=False),
        sa.Column("duration_s", sa.Float(), nullable=False),
        sa.Column("record", sa.JSON(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.UniqueConstraint("video_id", "model_version", name="uq_analyses_video_model"),
    )
    op.create_index("ix_analyses_video_id", "analyses", ["video_id"])
    op.create_index("ix_analyses_moderation_status", "analyses", ["moderation_status"])

    op.create_table(
        "tags",
        sa.Column("analysis_id", S(36), primary_key=True),
        sa.Column("label", S(200), primary_key=True),
        sa.Column("video_id", S(128), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("start_s", sa.Float(), nullable=True),
        sa.Column("end_s", sa.Float(), nullable=True),
    )
    op.create_index("ix_tags_video_id", "tags", ["video_id"])

    op.create_table(
        "moderation_flags",
        sa.Column("analysis_id", S(36), primary_key=True),
        sa.Column("category", S(64), primary_key=True),
        sa.Column("video_id", S(128), nullable=False),
        sa.Column("severity", sa.Integer(), nullable=False),
        sa.Column("confidence", sa.Float(), nullable=False),
        sa.Column("evidence", sa.JSON(), nullable=False),
        sa.Column("review_status", S(16), nullable=False),
    )
    op.create_index("ix_moderation_flags_video_id", "moderation_flags", ["video_id"])
    op.create_index("ix_moderation_flags_severity", "moderation_flags", ["severity"])
    op.create_index("ix_moderation_flags_review_status", "moderation_flags", ["review_status"])

    op.create_table(
        "reviews",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("analysis_id", S(36), nullable=False),
        sa.Column("video_id", S(128), nullable=False),
        sa.Column("category", S(64), nullable=True),
        sa.Column("decision", S(16), nullable=False),
        sa.Column("reviewer", S(128), nullable=False),
        sa.Column("note", S(), nullable=True),
        sa.Column("at", TS, nullable=False),
    )
    op.create_index("ix_reviews_analysis_id", "reviews", ["analysis_id"])
    op.create_index("ix_reviews_video_id", "reviews", ["video_id"])

    op.create_table(
        "feedback_events",
        sa.Column("event_id", S(128), primary_key=True),
        sa.Column("video_id", S(128), nullable=False),
        sa.Column("kind", S(32), nullable=False),
        sa.Column("actor", S(128), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.Column("stored_at", TS, nullable=False),
        sa.Column("used_in_run", S(64), nullable=True),
    )
    op.create_index("ix_feedback_events_video_id", "feedback_events", ["video_id"])
    op.create_index("ix_feedback_events_kind", "feedback_events", ["kind"])
    op.create_index("ix_feedback_events_used_in_run", "feedback_events", ["used_in_run"])

    op.create_table(
        "model_versions",
        sa.Column("version", S(128), primary_key=True),
        sa.Column("path", S(), nullable=False),
        sa.Column("base_version", S(128), nullable=True),
        sa.Column("status", S(16), nullable=False),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("promoted_at", TS, nullable=True),
    )

    op.create_table(
        "training_runs",
        sa.Column("run_id", S(64), primary_key=True),
        sa.Column("base_version", S(128), nullable=False),
        sa.Column("output_version", S(128), nullable=True),
        sa.Column("status", S(16), nullable=False),
        sa.Column("examples", sa.Integer(), nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.Column("error", S(), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("finished_at", TS, nullable=True),
    )
    op.create_index("ix_training_runs_status", "training_runs", ["status"])

    op.create_table(
        "tag_trends",
        sa.Column("window", S(8), primary_key=True),
        sa.Column("window_start", TS, primary_key=True),
        sa.Column("label", S(200), primary_key=True),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("updated_at", TS, nullable=False),
    )

    op.create_table(
        "creator_flag_rates",
        sa.Column("creator_id", S(128), primary_key=True),
        sa.Column("analyzed", sa.Integer(), nullable=False),
        sa.Column("flagged", sa.Integer(), nullable=False),
        sa.Column("rate", sa.Float(), nullable=False),
        sa.Column("updated_at", TS, nullable=False),
    )


def downgrade() -> None:
    for table in ("creator_flag_rates", "tag_trends", "training_runs", "model_versions", "feedback_events",
                  "reviews", "moderation_flags", "tags", "analyses", "videos"):
        op.drop_table(table)

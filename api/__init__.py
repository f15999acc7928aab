"""The HTTP API (`keye api`): ingest, product reads and clip summaries, similarity search, the
moderation queue and review page, trends, webhooks and administration.

Entry points: `api.app.create_app(settings)`, `api.app.serve(settings, host, port)` and, to
bootstrap a first admin key, `api.keys.bootstrap_admin(settings)` (or `api.keys.create_key`).
"""

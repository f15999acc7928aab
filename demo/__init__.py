"""Demonstrations of keye-demo: showcase.py (`keye demo`: records, evaluation against keye-tiny and
text search over the stored videos) and loop.py (`keye train demo-loop`: the feedback loop)."""

"""`keye demo`: keye-demo trained once, then its records, its evaluation against keye-tiny and a
text search over the stored videos (see showcase.py)."""

"""`keye eval`: how right the analyzer is, measured on a labelled set (see report.py for the keys)."""

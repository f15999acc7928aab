"""A generated, labelled short-video corpus for measuring the analyzer (issue 11)."""

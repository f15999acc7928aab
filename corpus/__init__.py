"""A generated, labelled short-video corpus for measuring the analyzer (issue 11).

`make(out, seed, clips, split)` writes one (the library call behind `keye corpus make`);
`load_labels(folder)` reads its labels back.
"""

from .labels import LabelledClip, load_labels, write_labels
from .make import CorpusError, make

__all__ = ["CorpusError", "LabelledClip", "load_labels", "make", "write_labels"]

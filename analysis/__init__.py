"""Content intelligence: tags, summaries, moderation, products and embeddings of videos.

`VideoAnalyzer.analyze(path, submission)` returns the service's AnalysisRecord; see analyzer.py.
"""

from analysis.config import AnalysisConfig, TaskConfig, load_config
from analysis.embedding import embed_text
from analysis.errors import AnalysisConfigError, AnalysisError, GrammarError, SegmentationError
from analysis.output import ParsedOutput, parse_output
from analysis.segments import Segment, segment_video

__all__ = [
    "AnalysisConfig",
    "AnalysisConfigError",
    "AnalysisError",
    "GrammarError",
    "ParsedOutput",
    "Segment",
    "SegmentationError",
    "TaskConfig",
    "VideoAnalyzer",
    "embed_text",
    "load_config",
    "parse_output",
    "segment_video",
]


def __getattr__(name: str):
    # Lazy: the analyzer pulls in torch and the model; config and parsing do not need them.
    if name == "VideoAnalyzer":
        from analysis.analyzer import VideoAnalyzer

        return VideoAnalyzer
    raise AttributeError(name)

"""Which model to evaluate: the served one, a registered version, or any preset / checkpoint folder."""

from __future__ import annotations

from pathlib import Path

from service.settings import Settings


def resolve(settings: Settings, model: str | None = None) -> tuple[str, str]:
    """(checkpoint, version): the active version as workers serve it when `model` is None, a
    registered version's checkpoint, else `model` itself as a preset or folder."""
    from sqlmodel import Session

    from stores.db import ModelVersion, engine_from, migrate, model_version_name, serving_model

    engine = engine_from(settings)
    try:
        migrate(engine)
        with Session(engine) as session:
            if model is None:
                version, path = serving_model(session, settings)
                return path, version
            row = session.get(ModelVersion, model)
            return (row.path, row.version) if row is not None else (model, model_version_name(model))
    finally:
        engine.dispose()


def analyzer_for(settings: Settings, model: str | None = None, analysis_config: Path | None = None):
    """The analyzer workers build (analysis.VideoAnalyzer, see analysis.serving.load_analyzer);
    `analysis_config` runs `model` under that configuration instead of its own."""
    from analysis import VideoAnalyzer
    from analysis.serving import load_analyzer

    if model is None:
        return load_analyzer(settings)
    path, version = resolve(settings, model)
    return VideoAnalyzer.from_settings(settings.for_model(path, analysis_config), model_version=version)


def load_model(settings: Settings, model: str | None = None):
    """(model, processor, version) for answering questions directly (KC-MMBench)."""
    import keye_model
    from keye_model.processor import KeyeProcessor

    path, version = resolve(settings, model)
    net = keye_model.load(path, dtype=settings.dtype, device=settings.device).eval()
    return net, KeyeProcessor.from_pretrained(path) if Path(path).is_dir() else KeyeProcessor(), version

"""Switching the served model also switches the analysis configuration its folder carries."""

from pathlib import Path

from service.settings import MODEL_ANALYSIS_CONFIG, Settings


def _folder(root: Path, name: str) -> Path:
    folder = root / name
    folder.mkdir()
    (folder / MODEL_ANALYSIS_CONFIG).write_text("{}")
    return folder


def test_for_model_takes_the_new_folders_configuration(tmp_path):
    a, b = _folder(tmp_path, "a"), _folder(tmp_path, "b")
    served = Settings(model=str(a)).for_model(str(b))
    assert served.model == str(b) and served.analysis_config == b / MODEL_ANALYSIS_CONFIG


def test_for_model_drops_an_inherited_configuration_when_the_new_model_has_none(tmp_path):
    a = _folder(tmp_path, "a")
    assert Settings(model=str(a)).for_model("keye-tiny").analysis_config is None


def test_for_model_keeps_an_explicit_configuration(tmp_path):
    a, b = _folder(tmp_path, "a"), _folder(tmp_path, "b")
    chosen = tmp_path / "mine.json"
    served = Settings(model=str(a), analysis_config=chosen).for_model(str(b))
    assert served.analysis_config == chosen


def test_for_model_resolves_keye_demo_under_the_data_dir(tmp_path):
    served = Settings(model="keye-tiny", data_dir=tmp_path).for_model("keye-demo")
    assert served.model == str(tmp_path / "models" / "keye-demo")


def test_for_model_runs_another_model_under_a_given_configuration(tmp_path):
    a = _folder(tmp_path, "a")
    served = Settings(model=str(a)).for_model("keye-tiny", analysis_config=a / MODEL_ANALYSIS_CONFIG)
    assert served.model == "keye-tiny" and served.analysis_config == a / MODEL_ANALYSIS_CONFIG

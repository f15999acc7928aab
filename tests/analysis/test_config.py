import json

import pytest

from analysis import config as C
from analysis.errors import AnalysisConfigError
from analysis.schemas import max_output_tokens
from service.schemas import MODERATION_CATEGORIES


def test_default_config_has_the_spec_taxonomy_and_thinking_defaults():
    cfg = C.load_config()
    assert cfg.categories == MODERATION_CATEGORIES
    assert cfg.version
    assert cfg.task("tags").thinking == "no_think" and cfg.task("summary").thinking == "no_think"
    assert cfg.task("moderation").thinking in ("think", "auto")
    for name in cfg.tasks:  # every budget covers its grammar's longest answer
        assert cfg.task(name).max_new_tokens >= max_output_tokens(cfg, name)


def test_override_by_json_and_yaml_path(tmp_path):
    import yaml

    raw = json.loads(C.DEFAULT_PATH.read_text())
    raw["version"] = "custom-7"
    raw["moderation_categories"] = {"violence": "fights", "spoilers": "plot reveals"}
    raw["tasks"]["moderation"]["thinking"] = "auto"
    (tmp_path / "a.json").write_text(json.dumps(raw))
    (tmp_path / "a.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    for name in ("a.json", "a.yaml"):
        cfg = C.load_config(tmp_path / name)
        assert cfg.version == "custom-7"
        assert cfg.categories == ("violence", "spoilers")
        assert cfg.task("moderation").thinking == "auto"


def _raw():
    return json.loads(C.DEFAULT_PATH.read_text())


@pytest.mark.parametrize(
    "edit, reason",
    [
        (lambda r: r["tasks"]["tags"].update(max_new_tokens=50), "below the"),
        (lambda r: r["tasks"]["tags"].update(thinking="sometimes"), "thinking must be one of"),
        (lambda r: r["tasks"].update(colours={"prompt": "x"}), "unknown task"),
        (lambda r: r["moderation_categories"].update({"Bad Name": "x"}), "lower_snake_case"),
        (lambda r: r["thresholds"].update(flag_severity=5), "flag_severity"),
        (lambda r: r["thresholds"].update(flag_sevrity=2), "unknown key"),
        (lambda r: r["tasks"]["moderation"]["limits"].pop("think_chars"), "think_chars"),
        (lambda r: r.update(version=""), "version"),
    ],
)
def test_bad_configs_are_refused_with_a_reason(edit, reason):
    raw = _raw()
    edit(raw)
    with pytest.raises(AnalysisConfigError, match=reason):
        C.parse_config(raw)


def test_missing_or_broken_file(tmp_path):
    with pytest.raises(AnalysisConfigError, match="not found"):
        C.load_config(tmp_path / "nope.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(AnalysisConfigError, match="not valid JSON"):
        C.load_config(tmp_path / "bad.json")

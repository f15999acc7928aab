"""The README's Layout section is drawn from the code: its layer diagram is the import-linter layers
contract, its table has a row for every package in the tree, and every file it names exists."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _layout() -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index("\n## Layout\n")
    return text[start : text.index("\n## ", start + 1)]


def _importlinter() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]


def _rows() -> dict[str, str]:
    """Layout table rows: folder -> the row's text."""
    return {m[1]: m[2] for m in re.finditer(r"^\| `([a-z_]+)/` \| (.*) \|$", _layout(), re.M)}


def test_the_diagram_is_the_layers_contract() -> None:
    diagram = _layout().split("```")[1].strip().splitlines()
    drawn = [re.split(r"\s{2,}", line.strip())[0] for line in diagram if line.strip()]
    contract = next(c for c in _importlinter()["contracts"] if c["type"] == "layers")
    assert drawn == contract["layers"], "README Layout's diagram differs from pyproject's layers contract"


def test_every_package_has_a_row() -> None:
    packages = {p.parent.name for p in ROOT.glob("*/__init__.py")} | {"bench", "tests"}
    assert set(_importlinter()["root_packages"]) <= packages
    assert set(_rows()) == packages, "README Layout's table must list exactly the top-level packages"


def test_every_file_the_layout_names_exists() -> None:
    missing = []
    for folder, text in _rows().items():
        for name in re.findall(r"`([\w/.-]+\.(?:py|json|xml|properties|md))`", text):
            if not ((ROOT / folder / name).exists() or (ROOT / name).exists()):
                missing.append(f"{folder}/{name}")
    assert not missing, f"README Layout names files that do not exist: {missing}"

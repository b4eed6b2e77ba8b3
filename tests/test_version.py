"""One version in three places: pyproject.toml, cnntrain.__version__ and the top entry of CHANGELOG.md."""

from __future__ import annotations

import re
from pathlib import Path

import cnntrain

REPO = Path(__file__).resolve().parents[1]
SEMVER = r"\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?"


def test_pyproject_package_and_changelog_name_one_version():
    declared = re.search(r'^version = "([^"]+)"', (REPO / "pyproject.toml").read_text(), re.MULTILINE)
    entries = re.findall(
        rf"^## \[({SEMVER})\] - (\d{{4}}-\d{{2}}-\d{{2}})$", (REPO / "CHANGELOG.md").read_text(), re.MULTILINE
    )
    assert declared is not None and re.fullmatch(SEMVER, declared.group(1))
    assert entries, "CHANGELOG.md has dated entries: ## [X.Y.Z] - YYYY-MM-DD"
    assert declared.group(1) == cnntrain.__version__ == entries[0][0]


def test_changelog_entries_go_down_in_version_and_date():
    text = (REPO / "CHANGELOG.md").read_text()
    entries = re.findall(rf"^## \[({SEMVER})\] - (\d{{4}}-\d{{2}}-\d{{2}})$", text, re.MULTILINE)
    versions = [tuple(int(n) for n in v.split("-")[0].split(".")) for v, _ in entries]
    assert versions == sorted(versions, reverse=True) and len(set(versions)) == len(versions)
    assert [d for _, d in entries] == sorted((d for _, d in entries), reverse=True)
    for section in re.findall(r"^### (.+)$", text, re.MULTILINE):
        assert section in {"Added", "Changed", "Deprecated", "Removed", "Fixed", "Security"}, section

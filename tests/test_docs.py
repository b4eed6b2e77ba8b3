"""README.md and docs/*.md: every relative link reaches a file (and its #anchor, a heading there), every
`cnntrain ...` command README shows composes and validates as the preflight would (nothing is trained or read),
and the front page's first screen holds install, the main command and the test command."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from helpers import REPO

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
FIRST_SCREEN = 40  # lines
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
FENCE = re.compile(r"^\s*(```|~~~)")


def prose(text: str, spans: bool = True) -> str:
    """The text outside code blocks, `code spans` blanked too unless spans=False (a link in code is an example)."""
    kept, fenced = [], False
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
            kept.append("")
        elif fenced or line.startswith("    ") or line.startswith("\t"):
            kept.append("")
        else:
            kept.append(re.sub(r"`[^`]*`", "", line) if spans else line)
    return "\n".join(kept)


def code_lines(text: str) -> list[str]:
    """The lines of fenced and indented code blocks, a trailing backslash joining a line to the next."""
    lines: list[str] = []
    fenced = indented = False
    previous_blank = True
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
        elif fenced:
            lines.append(line.strip())
        elif line.startswith("    ") and (indented or previous_blank):
            indented = True
            lines.append(line.strip())
        elif line.strip():
            indented = False
        previous_blank = not line.strip()
    joined: list[str] = []
    for line in lines:
        if joined and joined[-1].endswith("\\"):
            joined[-1] = joined[-1][:-1] + " " + line
        else:
            joined.append(line)
    return [line for line in joined if line]


def anchors(page: Path) -> set[str]:
    """GitHub's heading ids: lower case, punctuation but '-' and '_' dropped, spaces as '-', repeats numbered."""
    seen: dict[str, int] = {}
    found = set()
    for line in prose(page.read_text(encoding="utf-8"), spans=False).splitlines():
        heading = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not heading:
            continue
        slug = re.sub(r"[^\w\- ]", "", heading.group(1).lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        found.add(slug if count == 0 else f"{slug}-{count}")
    return found


def broken_links(page: Path) -> list[str]:
    """Each relative link of a page that names no file, or a heading its file does not have."""
    broken = []
    for target in LINK.findall(prose(page.read_text(encoding="utf-8"))):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto:: not ours to check offline
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(f"{target}: no such file")
        elif anchor and file.suffix == ".md" and anchor not in anchors(file):
            broken.append(f"{target}: no heading #{anchor} in {file.name}")
    return broken


def shown_commands(page: Path) -> list[str]:
    """The `cnntrain ...` commands in a page's code blocks (not cnntrain-eval & co.), comments dropped."""
    return [line for line in code_lines(page.read_text(encoding="utf-8")) if re.match(r"^(\$\s+)?cnntrain\s", line)]


def check_command(line: str) -> None:
    """Split and check a shown command as `cnntrain` does before Hydra writes anything: the flags, the overrides,
    the group choices, and every job composed and validated (the data and the machine are not looked at)."""
    from cnntrain.commands.argv import CONFIG_DIR_FLAGS, flag_value, split_argv
    from cnntrain.commands.preflight import check_configs
    from cnntrain.config.compose import hydra_session, legacy_augment_overrides

    argv = shlex.split(line.removeprefix("$").strip(), comments=True)[1:]
    flags, overrides, multirun = split_argv(legacy_augment_overrides(argv))
    extra_dir = flag_value(flags, CONFIG_DIR_FLAGS)
    with hydra_session(extra_dir) as hydra:
        check_configs(overrides, multirun, hydra=hydra, extra_dir=extra_dir)


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(REPO)) for p in PAGES])
def test_every_relative_link_resolves(page):
    assert broken_links(page) == []


def test_the_docs_pages_are_all_reachable_from_readme():
    linked = {
        (REPO / target.partition("#")[0]).resolve()
        for target in LINK.findall(prose((REPO / "README.md").read_text(encoding="utf-8")))
    }
    assert [p.name for p in PAGES[1:] if p.resolve() not in linked] == []


README_COMMANDS = shown_commands(REPO / "README.md")
DOCS_COMMANDS = list(
    {
        line: (page.name, line)
        for page in PAGES[1:]
        for line in shown_commands(page)
        if "..." not in shlex.split(line, comments=True)
    }.values()
)  # `...`: the rest left out


@pytest.mark.parametrize("line", README_COMMANDS, ids=[line.split("#")[0].strip() for line in README_COMMANDS])
def test_every_command_readme_shows_passes_the_preflight(line, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # a command composes relative paths (data_root=data) against the folder it runs in
    monkeypatch.delenv("CNNTRAIN_DATA_ROOT", raising=False)
    check_command(line)


def test_every_complete_command_the_docs_pages_show_passes_the_preflight(monkeypatch, tmp_path):
    """The pages' commands in one test (there are dozens); one that Hydra cannot parse, such as
    `dataset.root=~/photos` (no shell expands a tilde there), is named with its page."""
    from cnntrain.errors import UserError

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CNNTRAIN_DATA_ROOT", raising=False)
    own_model = re.search(
        r"```yaml\n(# configs/model/mine.yaml\n.*?)```", (REPO / "docs" / "models.md").read_text(), re.DOTALL
    )
    (tmp_path / "my_configs" / "model").mkdir(parents=True)  # configs.md's --config-dir example, with models.md's file
    (tmp_path / "my_configs" / "model" / "mine.yaml").write_text(own_model.group(1))
    failed = []
    for page, line in DOCS_COMMANDS:
        try:
            check_command(line)
        except UserError as err:
            failed.append(f"{page}: {line}: {err}")
    assert len(DOCS_COMMANDS) > 20 and failed == []


def test_readme_shows_the_main_commands():
    assert len(README_COMMANDS) >= 5
    assert any(line.startswith("cnntrain -m ") for line in README_COMMANDS), "a sweep is among them"


def test_the_first_screen_shows_install_the_main_command_and_the_test_command():
    first = "\n".join((REPO / "README.md").read_text(encoding="utf-8").splitlines()[:FIRST_SCREEN])
    assert "python -m venv" in first and 'pip install -e ".[dev]"' in first
    assert "--index-url https://download.pytorch.org/whl/cpu" in first
    assert "\n    cnntrain model=lenet dataset=fashion" in first
    assert "\n    ruff check . && ruff format --check . && pytest" in first


def test_ci_runs_the_test_command_the_readme_gives():
    """CI must run what README tells a contributor to run: the same checks, the same pytest options."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    shown = next(line.strip() for line in readme.splitlines() if line.startswith("    ruff check . && "))
    ci = [line.strip() for line in (REPO / ".ci" / "run").read_text(encoding="utf-8").splitlines()]
    ran = [line.removeprefix("python -m ") for line in ci if line.startswith(("ruff ", "python -m pytest"))]
    assert " && ".join(ran) == shown


def test_the_checks_catch_a_broken_link_a_missing_heading_and_a_bad_command(tmp_path):
    from cnntrain.errors import ConfigError

    (tmp_path / "other.md").write_text("# Other page\n\n## A `code` heading (with punctuation)\n")
    page = tmp_path / "page.md"
    page.write_text(
        "[ok](other.md#a-code-heading-with-punctuation) [ok](#top) [gone](missing.md) "
        "[no](other.md#nowhere) `[in code](missing-too.md)`\n\n# Top\n\n    [indented](missing-3.md)\n"
    )
    assert broken_links(page) == ["missing.md: no such file", "other.md#nowhere: no heading #nowhere in other.md"]
    page.write_text(
        "Run:\n\n    cnntrain model=lenet   # a comment\n    cnntrain-eval RUN_DIR\n    cnntrain \\\n"
        "        model=lenett\n"
    )
    assert shown_commands(page) == ["cnntrain model=lenet   # a comment", "cnntrain  model=lenett"]
    check_command(shown_commands(page)[0])
    with pytest.raises(ConfigError, match="unknown model 'lenett'"):
        check_command(shown_commands(page)[1])

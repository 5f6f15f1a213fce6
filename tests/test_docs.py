"""The manual holds together: every relative link and image in README.md and docs/ resolves, anchors
included, and the README stays a front page (at most 200 lines)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
README_MAX_LINES = 200

# [text](target) and ![alt](target), with an optional "title"; the text may hold inline code.
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
FENCE = re.compile(r"^\s*(```|~~~)")
HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
CODE_SPAN = re.compile(r"(`+)(.+?)\1")
EXTERNAL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")  # http:, https:, mailto:, file: ...


def prose_lines(text: str) -> list[str]:
    """The page's lines outside fenced code blocks (links and headings there are not Markdown)."""
    lines, fenced = [], False
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            lines.append(line)
    return lines


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: the rendered text, lowercased, punctuation except - and _
    dropped, each space a hyphen."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link's text, not its target
    text = CODE_SPAN.sub(lambda m: m.group(2), text)
    text = re.sub(r"(\*+|(?<!\w)_+|_+(?!\w))", "", text)  # emphasis markers, not snake_case
    text = re.sub(r"[^\w\- ]", "", text.strip().lower())
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """Every heading's anchor; a repeated heading gets -1, -2, ... as on GitHub."""
    seen: dict[str, int] = {}
    found = set()
    for line in prose_lines(page.read_text(encoding="utf-8")):
        match = HEADING.match(line)
        if not match:
            continue
        base = slug(match.group(2))
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def links(page: Path) -> list[str]:
    """Relative link and image targets of the page (external URLs left out)."""
    targets = []
    for line in prose_lines(page.read_text(encoding="utf-8")):
        line = CODE_SPAN.sub("", line)
        targets += [t for t in LINK.findall(line) if not EXTERNAL.match(t)]
    return targets


def broken(page: Path, target: str) -> str | None:
    """Why `target` on `page` does not resolve, or None when it does."""
    path_part, _, anchor = target.partition("#")
    if path_part:
        base = ROOT if path_part.startswith("/") else page.parent
        dest = (base / path_part.lstrip("/")).resolve()
        if not dest.exists():
            return f"{target}: no such file {dest}"
    else:
        dest = page
    if anchor and dest.suffix == ".md" and dest.is_file() and anchor not in anchors(dest):
        return f"{target}: no heading #{anchor} in {dest.name}"
    return None


def test_the_pages_are_found() -> None:
    names = {page.name for page in PAGES}
    assert {"README.md", "results.md", "reliability.md"} <= names


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_and_image_resolves(page: Path) -> None:
    problems = [why for target in links(page) if (why := broken(page, target))]
    assert not problems, f"{page.relative_to(ROOT)}:\n" + "\n".join(problems)


def test_readme_is_a_front_page() -> None:
    lines = len((ROOT / "README.md").read_text(encoding="utf-8").splitlines())
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines; move detail to docs/"


@pytest.mark.parametrize(
    ("heading", "anchor"),
    [
        (
            "Headline: the report's recipe, the default and PCA",
            "headline-the-reports-recipe-the-default-and-pca",
        ),
        ("The default pipeline (`dvc repro`)", "the-default-pipeline-dvc-repro"),
        ("Tuning with `train.max_epochs` and **bold**", "tuning-with-trainmax_epochs-and-bold"),
        ("Results -- a [link](x.md)", "results----a-link"),
    ],
)
def test_slugs_follow_githubs_rules(heading: str, anchor: str) -> None:
    assert slug(heading) == anchor


def test_a_missing_file_and_a_missing_anchor_are_caught() -> None:
    page = ROOT / "docs" / "results.md"
    assert broken(page, "no-such-page.md") is not None
    assert broken(page, "../README.md#no-such-heading") is not None
    assert broken(page, "../README.md") is None
    assert broken(page, "#benchmark-tools") is None

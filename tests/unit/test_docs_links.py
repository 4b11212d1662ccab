"""The README and ``docs/`` hold together: every relative link and ``#anchor`` resolves, the README stays short.

Anchors are matched the way GitHub renders headings (lower case, punctuation dropped, spaces to
hyphens, ``-1``, ``-2`` … for repeated headings), so a link that works here works on the hosted page.
Text inside code (fenced blocks and inline spans) is not a link and is skipped.
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

import pytest

from common.settings import REPO_ROOT

README = REPO_ROOT / "README.md"
README_MAX_LINES = 220
DOCUMENTS = [README, *sorted((REPO_ROOT / "docs").glob("*.md"))]

_FENCE = re.compile(r"^\s*(```|~~~)")
_INLINE_CODE = re.compile(r"`+[^`]*`+")
_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
_EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)  # http:, https:, mailto: …


def _prose_lines(text: str) -> list[tuple[int, str]]:
    """(line number, line) of every line outside fenced code blocks."""
    lines, fenced = [], False
    for number, line in enumerate(text.splitlines(), start=1):
        if _FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            lines.append((number, line))
    return lines


def slug(heading: str) -> str:
    """GitHub's anchor for a heading's text: markup and punctuation dropped, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading keeps its text
    text = text.lower()
    kept = []
    for char in text:
        category = unicodedata.category(char)
        if char in " -" or category[0] in "LNM" or category == "Pc":
            kept.append(char)
    return "".join(kept).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every anchor a reader can link to in ``path``: its headings' slugs, repeated ones numbered."""
    seen: dict[str, int] = {}
    for _, line in _prose_lines(path.read_text()):
        match = _HEADING.match(line)
        if not match:
            continue
        base = slug(match.group(2))
        count = seen.get(base, 0)
        seen[base] = count + 1
    numbered = set()
    for base, count in seen.items():
        numbered.add(base)
        numbered.update(f"{base}-{n}" for n in range(1, count))
    return numbered


def links(path: Path) -> list[tuple[int, str]]:
    """(line number, target) of every relative link in the prose of ``path``."""
    found = []
    for number, line in _prose_lines(path.read_text()):
        for match in _LINK.finditer(_INLINE_CODE.sub("", line)):
            target = match.group(1)
            if not _EXTERNAL.match(target):
                found.append((number, target))
    return found


def broken_links(path: Path, root: Path = REPO_ROOT) -> list[str]:
    """One line per link of ``path`` whose file is missing or whose target has no such heading."""
    problems = []
    for number, target in links(path):
        file_part, _, anchor = target.partition("#")
        resolved = (path.parent / file_part).resolve() if file_part else path
        where = f"{path.relative_to(root)}:{number}: ({target})"
        if not resolved.exists() and not resolved.is_relative_to(root / "build"):  # build/: written by test runs
            problems.append(f"{where} points at {file_part}, which does not exist")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            problems.append(f"{where}: {resolved.relative_to(root)} has no heading with anchor #{anchor}")
    return problems


def test_the_docs_folder_exists_and_is_linked_from_the_readme() -> None:
    assert len(DOCUMENTS) > 1, "docs/*.md is missing"
    linked = {(README.parent / target.partition("#")[0]).resolve() for _, target in links(README)}
    unlinked = [doc.name for doc in DOCUMENTS[1:] if doc.resolve() not in linked]
    assert not unlinked, f"README.md links to no page of docs/ named {unlinked}: a newcomer would not find them"


@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_every_relative_link_and_anchor_resolves(path: Path) -> None:
    problems = broken_links(path)
    assert not problems, "broken links:\n" + "\n".join(problems)


def test_readme_stays_a_page_a_newcomer_reads() -> None:
    count = len(README.read_text().splitlines())
    assert count <= README_MAX_LINES, (
        f"README.md has {count} lines (at most {README_MAX_LINES}): move reference material to docs/ and link it"
    )


def test_slugs_follow_githubs_rules() -> None:
    assert slug("Ingestion: `POST /events`") == "ingestion-post-events"
    assert slug("Dashboard queries: `/v1/…`") == "dashboard-queries-v1"
    assert slug("Routing by tier") == "routing-by-tier"
    assert slug("`rollups_hourly` and [the lake](x.md)") == "rollups_hourly-and-the-lake"
    assert slug("Tiers, retention and legal holds") == "tiers-retention-and-legal-holds"


def test_a_broken_link_and_a_missing_anchor_are_reported(tmp_path: Path) -> None:
    (tmp_path / "b.md").write_text("# Title\n\n## Part one\n\n## Part one\n")
    page = tmp_path / "a.md"
    page.write_text(
        "[ok](b.md#part-one) [ok](b.md#part-one-1) [ok](#here) [web](https://example.com/x#y)\n"
        "# Here\n"
        "[gone](missing.md) [no anchor](b.md#part-two) `[in code](nowhere.md)`\n"
        "```\n[in a block](nowhere.md)\n```\n"
    )
    problems = broken_links(page, tmp_path)
    assert len(problems) == 2, problems
    assert "missing.md" in problems[0] and "#part-two" in problems[1]


_PACKAGES = ("common", "ingest", "stream", "serving", "batch", "orchestration", "storage_tiers", "stack", "sql",
             "demo", "cli", "bench", "tests", "docs")
_REPO_PATH = re.compile(rf"^(?:{'|'.join(_PACKAGES)})/[\w./-]*$")
_MODULE = re.compile(rf"^(?:{'|'.join(_PACKAGES)})(?:\.\w+)+$")
_FROM_IMPORT = re.compile(r"^\s*from\s+([\w.]+)\s+import\s+([\w, ]+)")
_CODE_SPAN = re.compile(r"`([^`]+)`")
_FILE_NAME = re.compile(r"\.(?:py|sql|yaml|yml|lua|md|json|js|html|css|toml)$")  # `sql.py` is a file, not a module


def named_code(path: Path) -> list[tuple[int, str]]:
    """(line number, token) of every repository path or dotted module name the page names in code."""
    found, fenced = [], False
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if _FENCE.match(line):
            fenced = not fenced
            continue
        if fenced:
            match = _FROM_IMPORT.match(line)
            if match:
                found.extend((number, f"{match.group(1)}.{name.strip()}") for name in match.group(2).split(","))
            continue
        for span in _CODE_SPAN.findall(line):
            for token in span.split():
                token = re.sub(r"\(.*$", "", token).rstrip(",;:)")
                if _REPO_PATH.match(token) or (_MODULE.match(token) and not _FILE_NAME.search(token)):
                    found.append((number, token))
    return [(n, t) for n, t in found if _REPO_PATH.match(t) or (_MODULE.match(t) and not _FILE_NAME.search(t))]


def _defines(module: Path, name: str) -> bool:
    pattern = rf"^(?:async\s+def|def|class)\s+{name}\b|^{name}\s*[:=]|^\s*(?:from\s+\S+\s+)?import\s.*\b{name}\b"
    return bool(re.search(pattern, module.read_text(), flags=re.MULTILINE))


def missing_code_names(path: Path, root: Path = REPO_ROOT) -> list[str]:
    """One line per path or ``package.module.name`` the page names that the repository does not have."""
    problems = []
    for number, token in named_code(path):
        where = f"{path.relative_to(root)}:{number}: `{token}`"
        if "/" in token:
            if not (root / token).exists():
                problems.append(f"{where}: no such file or folder")
            continue
        current, parts = root, token.split(".")
        while parts and ((current / parts[0]).is_dir() or (current / f"{parts[0]}.py").is_file()):
            current = current / parts.pop(0)
        module = current.with_suffix(".py") if current.with_suffix(".py").is_file() else current / "__init__.py"
        if parts and not (module.is_file() and _defines(module, parts[0])):
            problems.append(f"{where}: {module.relative_to(root)} defines no {parts[0]}")
    return problems


@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_every_repository_path_and_module_named_in_code_exists(path: Path) -> None:
    problems = missing_code_names(path)
    assert not problems, "the page names code that is not there (moved or renamed?):\n" + "\n".join(problems)


def test_a_moved_file_or_module_is_reported(tmp_path: Path) -> None:
    (tmp_path / "serving").mkdir()
    (tmp_path / "serving" / "cache.py").write_text("def invalidate(x):\n    return x\n")
    page = tmp_path / "a.md"
    page.write_text(
        "`serving/cache.py` `serving.cache.invalidate` `serving/gone.py` `serving.cache.other` `.lakehouse/x.py`\n"
        "```python\nfrom serving.cache import invalidate, missing\n```\n"
    )
    problems = missing_code_names(page, tmp_path)
    assert [p.split("`")[1] for p in problems] == ["serving/gone.py", "serving.cache.other", "serving.cache.missing"]

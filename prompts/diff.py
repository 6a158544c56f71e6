"""The difference between two versions of a prompt, section by section, computed with `difflib`.

Pure: it reads the versions' fields and nothing else (no request, no query), so the admin's
"Compare versions" page and anything else can render it. Each section (the content, the variables,
the model, the params) is turned into lines first: the template as it is; chat messages one block
per message, `role: content`, blocks apart by a blank line; variables and params as indented,
key-sorted JSON (so a reordered dict is no change); the model as one line.
"""

import difflib
import json
from dataclasses import dataclass
from typing import Any, Literal

from prompts.models import PromptVersion

RowKind = Literal["equal", "changed", "added", "removed"]
UnifiedKind = Literal["header", "hunk", "context", "added", "removed"]

# Lines of context around each change in the unified diff (difflib's and git's default).
CONTEXT_LINES = 3


@dataclass(frozen=True)
class Segment:
    """A run of characters of one side-by-side line; `changed` marks what differs from the other side."""

    text: str
    changed: bool


@dataclass(frozen=True)
class SideBySideRow:
    """One row of the side-by-side view: a line of the older version (left) against one of the newer.

    `equal`: the same line on both sides; `changed`: a line replaced by another (with the differing
    characters marked in the segments); `removed`: only on the left; `added`: only on the right.
    Line numbers count from 1; a missing side has None for its line and its number."""

    kind: RowKind
    left: str | None
    right: str | None
    left_number: int | None
    right_number: int | None
    left_segments: tuple[Segment, ...]
    right_segments: tuple[Segment, ...]


@dataclass(frozen=True)
class UnifiedLine:
    """One line of `difflib.unified_diff`'s output, with what it is for highlighting."""

    text: str
    kind: UnifiedKind


@dataclass(frozen=True)
class SectionDiff:
    """The diff of one section: `unified` is empty and every row `equal` when it did not change."""

    name: str
    title: str
    changed: bool
    unified: tuple[UnifiedLine, ...]
    rows: tuple[SideBySideRow, ...]

    @property
    def unified_text(self) -> str:
        """The unified diff as a patch would show it."""
        return "\n".join(line.text for line in self.unified)


@dataclass(frozen=True)
class VersionDiff:
    """The diff of version `a_number` (left, older side) against version `b_number` (right)."""

    a_number: int
    b_number: int
    sections: tuple[SectionDiff, ...]

    @property
    def changed(self) -> bool:
        return any(section.changed for section in self.sections)

    def section(self, name: str) -> SectionDiff:
        """The section named `name` (content, variables, model, params); KeyError if there is none."""
        for section in self.sections:
            if section.name == name:
                return section
        raise KeyError(name)


def content_lines(version: PromptVersion) -> list[str]:
    """The version's template, or its chat messages one `role: content` block each."""
    if version.kind != PromptVersion.Kind.CHAT:
        return version.template.splitlines()
    lines: list[str] = []
    for index, message in enumerate(version.messages or []):
        if index:
            lines.append("")
        if isinstance(message, dict):
            role, content = message.get("role", ""), message.get("content", "")
            text = f"{role}: {content if isinstance(content, str) else _json(content)}"
        else:  # not a message the service would have stored; shown as it is rather than hidden
            text = _json(message)
        lines.extend(text.splitlines() or [""])
    return lines


def version_diff(a: PromptVersion, b: PromptVersion) -> VersionDiff:
    """Compares version `a` (shown left, as the old side) with `b` (right, the new side)."""
    content_title = "Template" if a.kind == b.kind == PromptVersion.Kind.TEXT else "Messages"
    if a.kind != b.kind:
        content_title = f"Content ({a.get_kind_display()} → {b.get_kind_display()})"
    labels = (f"v{a.number}", f"v{b.number}")
    sections = (
        section_diff("content", content_title, content_lines(a), content_lines(b), labels=labels),
        section_diff("variables", "Variables", _json_lines(a.variables), _json_lines(b.variables), labels=labels),
        section_diff("model", "Model", [a.model], [b.model], labels=labels),
        section_diff("params", "Params", _json_lines(a.params), _json_lines(b.params), labels=labels),
    )
    return VersionDiff(a_number=a.number, b_number=b.number, sections=sections)


def section_diff(
    name: str, title: str, old: list[str], new: list[str], *, labels: tuple[str, str] = ("v1", "v2")
) -> SectionDiff:
    """The unified and side-by-side diff of two lists of lines; `labels` name the two sides."""
    changed = old != new
    unified = tuple(
        UnifiedLine(text=text, kind=_unified_kind(index, text))
        for index, text in enumerate(
            difflib.unified_diff(old, new, fromfile=labels[0], tofile=labels[1], lineterm="", n=CONTEXT_LINES)
        )
    )
    return SectionDiff(name=name, title=title, changed=changed, unified=unified, rows=tuple(side_by_side(old, new)))


def side_by_side(old: list[str], new: list[str]) -> list[SideBySideRow]:
    """Rows pairing the lines of `old` with those of `new`, from `difflib.SequenceMatcher`'s opcodes.

    A replaced block pairs its lines one to one as `changed`; the longer side's surplus is
    `removed` (left only) or `added` (right only)."""
    rows: list[SideBySideRow] = []
    matcher = difflib.SequenceMatcher(None, old, new, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            rows.extend(_row("equal", i, old[i], j, new[j]) for i, j in zip(range(i1, i2), range(j1, j2), strict=True))
            continue
        paired = min(i2 - i1, j2 - j1) if tag == "replace" else 0
        for k in range(paired):
            rows.append(_row("changed", i1 + k, old[i1 + k], j1 + k, new[j1 + k]))
        rows.extend(_row("removed", i, old[i], None, None) for i in range(i1 + paired, i2))
        rows.extend(_row("added", None, None, j, new[j]) for j in range(j1 + paired, j2))
    return rows


def _row(kind: RowKind, i: int | None, left: str | None, j: int | None, right: str | None) -> SideBySideRow:
    left_segments: tuple[Segment, ...] = ()
    right_segments: tuple[Segment, ...] = ()
    if kind == "changed" and left is not None and right is not None:
        left_segments, right_segments = _inline_segments(left, right)
    else:
        whole = kind != "equal"
        left_segments = (Segment(left, whole),) if left else ()
        right_segments = (Segment(right, whole),) if right else ()
    return SideBySideRow(
        kind=kind,
        left=left,
        right=right,
        left_number=None if i is None else i + 1,
        right_number=None if j is None else j + 1,
        left_segments=left_segments,
        right_segments=right_segments,
    )


def _inline_segments(left: str, right: str) -> tuple[tuple[Segment, ...], tuple[Segment, ...]]:
    """The two lines of a changed row cut into runs, the characters that differ marked `changed`."""
    left_runs: list[Segment] = []
    right_runs: list[Segment] = []
    matcher = difflib.SequenceMatcher(None, left, right, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if i2 > i1:
            left_runs.append(Segment(left[i1:i2], tag != "equal"))
        if j2 > j1:
            right_runs.append(Segment(right[j1:j2], tag != "equal"))
    return tuple(left_runs), tuple(right_runs)


def _unified_kind(index: int, text: str) -> UnifiedKind:
    if index < 2:  # difflib's `--- v1` and `+++ v2`
        return "header"
    if text.startswith("@@"):
        return "hunk"
    if text.startswith("+"):
        return "added"
    if text.startswith("-"):
        return "removed"
    return "context"


def _json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)


def _json_lines(value: Any) -> list[str]:
    return _json(value if value is not None else {}).splitlines()

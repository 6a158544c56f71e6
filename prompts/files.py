"""Prompts as files: one YAML file per prompt, so teams can keep their prompts in Git.

`prompts_export` writes what the database holds. `prompts_import` makes one project's prompts match a
directory of such files, every change going through `prompts.services`, one transaction per file.

Version numbers in a file are informational: the database numbers versions. An import walks a file's
versions in order, skips each one whose content (kind, template or messages, variables, model, params)
already is a version of the prompt, and appends the others; a label moves to the version whose content
matches the file's labelled version. Running an import twice therefore changes nothing the second time.
A history that repeats content (a revert written as a new version) imports as the existing version.
"""

import math
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum
from pathlib import Path
from typing import Any

import yaml
from django.db import transaction

from accounts.models import Project, User
from llmops.errors import DomainError, FieldErrors, ValidationFailed
from prompts import rendering, selectors, services
from prompts.models import LATEST_LABEL, Prompt, PromptLabel, PromptVersion

FILE_SUFFIXES = (".yaml", ".yml")
# Key order of the exported files; a fixed order keeps diffs of two exports small.
FILE_KEYS = ("name", "description", "archived", "versions", "labels")
VERSION_KEYS = (
    "number",
    "kind",
    "template",
    "messages",
    "variables",
    "model",
    "params",
    "commit_message",
    "created_at",
)
_MESSAGE_KEYS = ("role", "content")
_VARIABLE_SPEC_KEYS = ("type", "required", "default", "description")
_SLUG = re.compile(r"^[-a-zA-Z0-9_]+$")
_NAME_MAX = Prompt._meta.get_field("name").max_length or 100
_LABEL_MAX = PromptLabel._meta.get_field("name").max_length or 50
_MODEL_MAX = PromptVersion._meta.get_field("model").max_length or 200
_COMMIT_MESSAGE_MAX = PromptVersion._meta.get_field("commit_message").max_length or 500

# What a version is, for matching a file's versions with the database's: (kind, template, messages,
# variables, model, params), as prompt_version_create stores them.
Content = tuple[str, str, list[dict[str, Any]], dict[str, Any], str, dict[str, Any]]


class PromptFileInvalid(ValidationFailed):
    code = "invalid_prompt_file"


class ChangeKind(StrEnum):
    PROMPT_CREATED = "prompt created"
    VERSION_ADDED = "version added"
    LABEL_MOVED = "label moved"
    DESCRIPTION_CHANGED = "description changed"
    ARCHIVED = "archived"


@dataclass(frozen=True)
class Change:
    kind: ChangeKind
    prompt: str
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.prompt}: {self.kind}" + (f" ({self.detail})" if self.detail else "")


@dataclass(frozen=True)
class FileVersion:
    number: int
    model: str
    template: str | None = None
    messages: list[dict[str, Any]] | None = None
    variables: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    commit_message: str = ""


@dataclass(frozen=True)
class PromptFile:
    name: str
    versions: list[FileVersion]
    description: str = ""
    archived: bool = False
    labels: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class FileResult:
    path: Path
    changes: list[Change] = field(default_factory=list)
    error: DomainError | None = None


@dataclass(frozen=True)
class ImportReport:
    files: list[FileResult]
    dry_run: bool

    @property
    def failed(self) -> list[FileResult]:
        return [result for result in self.files if result.error is not None]

    def count(self, kind: ChangeKind) -> int:
        return sum(1 for result in self.files for change in result.changes if change.kind == kind)

    def summary(self) -> str:
        counts = ", ".join(
            _plural(self.count(kind), noun)
            for kind, noun in (
                (ChangeKind.PROMPT_CREATED, "prompt created"),
                (ChangeKind.VERSION_ADDED, "version added"),
                (ChangeKind.LABEL_MOVED, "label moved"),
                (ChangeKind.DESCRIPTION_CHANGED, "description changed"),
                (ChangeKind.ARCHIVED, "prompt archived"),
            )
        )
        prefix = "Dry run (nothing written): " if self.dry_run else ""
        return f"{prefix}{_plural(len(self.files), 'file')} read, {len(self.failed)} failed: {counts}."


def _plural(count: int, noun: str) -> str:
    """`1 label moved`, `2 labels moved`: the first word of the noun takes the plural."""
    first, _, rest = noun.partition(" ")
    if count != 1:
        first = f"{first}s"
    return f"{count} {first}" + (f" {rest}" if rest else "")


# Export


class _Dumper(yaml.SafeDumper):
    """safe_dump's dumper (no Python tags) with block scalars for multi-line text and indented lists.

    yaml.safe_dump cannot take a dumper subclass, so exports call yaml.dump(Dumper=_Dumper), which is
    safe_dump plus the representer below; the global SafeDumper is left untouched.
    """

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        return super().increase_indent(flow, False)


# YAML treats these as line breaks too: a block scalar would turn them into "\n", so such strings are
# double-quoted, where they are escaped. A BOM is escaped for the same reason.
_UNSAFE_IN_BLOCK = ("\r", "\x85", "\u2028", "\u2029", "\ufeff")


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    # Whitespace-only text with a line break (a stop sequence "\n\n") is unreadable as a block.
    if any(char in value for char in _UNSAFE_IN_BLOCK) or ("\n" in value and not value.strip()):
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style='"')
    if "\n" in value:
        # PyYAML falls back to a quoted style by itself when a block scalar cannot hold the text exactly
        # (trailing spaces on a line, tabs): the output is then less pretty but still round-trips.
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|")
    return dumper.represent_str(value)


_Dumper.add_representer(str, _represent_str)


def _sorted_json(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _sorted_json(value[key]) for key in sorted(value)}
    if isinstance(value, list):
        return [_sorted_json(item) for item in value]
    return value


def _variable_document(spec: dict[str, Any]) -> dict[str, Any]:
    ordered = [key for key in _VARIABLE_SPEC_KEYS if key in spec] + sorted(set(spec) - set(_VARIABLE_SPEC_KEYS))
    return {key: _sorted_json(spec[key]) for key in ordered}


def _version_document(version: PromptVersion) -> dict[str, Any]:
    document: dict[str, Any] = {"number": version.number, "kind": version.kind}
    if version.kind == PromptVersion.Kind.TEXT:
        document["template"] = version.template
    else:
        document["messages"] = [{"role": m["role"], "content": m["content"]} for m in version.messages]
    document["variables"] = {name: _variable_document(version.variables[name]) for name in sorted(version.variables)}
    document["model"] = version.model
    document["params"] = _sorted_json(version.params)
    document["commit_message"] = version.commit_message
    document["created_at"] = version.created_at.isoformat()
    return document


def prompt_document(*, prompt: Prompt) -> dict[str, Any]:
    """The file content of one prompt, keys in FILE_KEYS / VERSION_KEYS order, versions oldest first."""
    versions = selectors.version_list(prompt=prompt).order_by("number")
    return {
        "name": prompt.name,
        "description": prompt.description,
        "archived": prompt.archived_at is not None,
        "versions": [_version_document(version) for version in versions],
        "labels": {label.name: label.version.number for label in selectors.label_list(prompt=prompt)},
    }


def prompt_file_dump(*, prompt: Prompt) -> str:
    return yaml.dump(
        prompt_document(prompt=prompt),
        Dumper=_Dumper,
        sort_keys=False,
        allow_unicode=True,
        default_flow_style=False,
        width=10_000,  # no folding of long lines: a changed word must not re-wrap a paragraph in the diff
    )


def prompts_export(*, project: Project, directory: Path, include_archived: bool = False) -> list[Path]:
    """Writes `<directory>/<name>.yaml` for each of project's prompts; returns the paths written.

    Overwrites those files and never deletes others: an export into a directory with files of prompts
    that no longer exist leaves them there.
    """
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for prompt in selectors.prompt_list(project=project, include_archived=include_archived):
        # Names are slugs, so they are safe file names.
        path = directory / f"{prompt.name}.yaml"
        path.write_text(prompt_file_dump(prompt=prompt), encoding="utf-8", newline="\n")
        written.append(path)
    return written


# Reading files


class _Loader(yaml.SafeLoader):
    """safe_load's loader (no tags beyond plain data) that also refuses what hides mistakes in a
    hand-edited file: a key given twice (a bad merge; PyYAML would keep the last one silently) and
    anchors/aliases (never written by an export; they let a tiny file expand into a huge structure)."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(None, None, "aliases (*name) are not allowed", event.start_mark)
        return super().compose_node(parent, index)

    def construct_mapping(self, node: Any, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, (str, int, float)):
                continue  # unhashable keys are refused by SafeLoader itself
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "boolean", int: "integer", float: "number", str: "string", list: "list", dict: "mapping"}.get(
        type(value), type(value).__name__
    )


def _json_problem(value: Any) -> str | None:
    """Why a YAML value cannot be stored as JSON unchanged, or None (dates, sets, non-string keys, NaN...)."""
    if value is None or isinstance(value, (str, bool, int)):
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else "Numbers must be finite."
    if isinstance(value, list):
        return next((problem for item in value if (problem := _json_problem(item))), None)
    if isinstance(value, dict):
        if not all(isinstance(key, str) for key in value):
            return "Keys must be strings."
        return next((problem for item in value.values() if (problem := _json_problem(item))), None)
    return f"A {_type_name(value)} is not allowed here; quote it to make it a string."


class _Checker:
    """Collects every structural problem of one file, keyed like the API's fields (`versions.0.model`)."""

    def __init__(self) -> None:
        self.errors: FieldErrors = {}

    def add(self, key: str, problem: str) -> None:
        self.errors.setdefault(key, []).append(problem)

    def unknown_keys(self, mapping: dict[Any, Any], known: tuple[str, ...], prefix: str = "") -> None:
        for key in mapping:
            if key not in known:
                self.add(f"{prefix}{key}", f"Unknown key. Known keys: {', '.join(known)}.")

    def string(self, mapping: dict[str, Any], key: str, where: str, *, max_length: int | None = None) -> str | None:
        value = mapping.get(key)
        if not isinstance(value, str):
            self.add(where, f"Must be a string, not {_type_name(value)}.")
            return None
        if max_length is not None and len(value) > max_length:
            self.add(where, f"At most {max_length} characters.")
            return None
        return value

    def json_mapping(self, mapping: dict[str, Any], key: str, where: str) -> dict[str, Any]:
        value = mapping.get(key, {})
        if not isinstance(value, dict):
            self.add(where, f"Must be a mapping, not {_type_name(value)}.")
            return {}
        if problem := _json_problem(value):
            self.add(where, problem)
            return {}
        return value


def _parse_version(check: _Checker, raw: Any, where: str) -> FileVersion | None:
    if not isinstance(raw, dict):
        check.add(where, f"Must be a mapping, not {_type_name(raw)}.")
        return None
    errors_before = sum(len(problems) for problems in check.errors.values())
    check.unknown_keys(raw, VERSION_KEYS, prefix=f"{where}.")
    number = raw.get("number")
    if "number" not in raw:
        check.add(f"{where}.number", "Required.")
    elif isinstance(number, bool) or not isinstance(number, int) or number < 1:
        check.add(f"{where}.number", "Must be a positive integer.")
    model = check.string(raw, "model", f"{where}.model", max_length=_MODEL_MAX) if "model" in raw else None
    if "model" not in raw:
        check.add(f"{where}.model", "Required.")

    template: str | None = None
    messages: list[dict[str, Any]] | None = None
    if ("template" in raw) == ("messages" in raw):
        check.add(where, "Give either `template` (kind text) or `messages` (kind chat).")
    elif "template" in raw:
        template = check.string(raw, "template", f"{where}.template")
    else:
        messages = _parse_messages(check, raw["messages"], f"{where}.messages")
    if "kind" in raw:
        kind = raw["kind"]
        has = PromptVersion.Kind.TEXT if "template" in raw else PromptVersion.Kind.CHAT
        if kind not in PromptVersion.Kind.values:
            check.add(f"{where}.kind", f"Must be one of: {', '.join(PromptVersion.Kind.values)}.")
        elif kind != has and ("template" in raw) != ("messages" in raw):
            check.add(
                f"{where}.kind", f"Is {kind}, but the version has {'a template' if has == 'text' else 'messages'}."
            )

    variables = check.json_mapping(raw, "variables", f"{where}.variables")
    params = check.json_mapping(raw, "params", f"{where}.params")
    commit_message = ""
    if "commit_message" in raw:
        commit_message = (
            check.string(raw, "commit_message", f"{where}.commit_message", max_length=_COMMIT_MESSAGE_MAX) or ""
        )
    # created_at is informational; an unquoted timestamp loads as a datetime, which is fine too.
    if "created_at" in raw and not isinstance(raw["created_at"], (str, date)):
        check.add(f"{where}.created_at", "Must be a timestamp string.")

    if sum(len(problems) for problems in check.errors.values()) > errors_before:
        return None
    assert isinstance(number, int) and model is not None
    return FileVersion(
        number=number,
        model=model,
        template=template,
        messages=messages,
        variables=variables,
        params=params,
        commit_message=commit_message,
    )


def _parse_messages(check: _Checker, raw: Any, where: str) -> list[dict[str, Any]] | None:
    if not isinstance(raw, list):
        check.add(where, f"Must be a list, not {_type_name(raw)}.")
        return None
    messages = []
    for index, message in enumerate(raw):
        at = f"{where}.{index}"
        if not isinstance(message, dict):
            check.add(at, f"Must be a mapping with role and content, not {_type_name(message)}.")
            continue
        check.unknown_keys(message, _MESSAGE_KEYS, prefix=f"{at}.")
        role = check.string(message, "role", f"{at}.role")
        content = check.string(message, "content", f"{at}.content")
        if role is not None and content is not None:
            messages.append({"role": role, "content": content})
    return messages


def _parse_labels(check: _Checker, raw: Any, numbers: set[int]) -> dict[str, int]:
    if not isinstance(raw, dict):
        check.add("labels", f"Must be a mapping of label -> version number, not {_type_name(raw)}.")
        return {}
    labels = {}
    for name, number in raw.items():
        where = f"labels.{name}"
        if not isinstance(name, str) or not _SLUG.match(name) or len(name) > _LABEL_MAX:
            check.add(where, f"Label names are slugs (letters, digits, - and _) of at most {_LABEL_MAX} characters.")
        elif name == LATEST_LABEL:
            check.add(where, "'latest' always means the highest version; it is not a stored label.")
        elif isinstance(number, bool) or not isinstance(number, int):
            check.add(where, f"Must be a version number, not {_type_name(number)}.")
        elif number not in numbers:
            check.add(where, f"This file has no version {number}.")
        else:
            labels[name] = number
    return labels


def prompt_file_parse(*, path: Path) -> PromptFile:
    """Reads and checks one prompt file; raises PromptFileInvalid listing every structural problem.

    Only checks the file's shape and types; the content (templates, variables, model, params) is
    validated by prompts.services when it is imported.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise PromptFileInvalid("The file is not UTF-8 text.", fields={"file": [str(exc)]}) from None
    except OSError as exc:
        raise PromptFileInvalid("The file cannot be read.", fields={"file": [exc.strerror or str(exc)]}) from None
    try:
        # A SafeLoader: YAML tags never construct Python objects.
        raw = yaml.load(text, Loader=_Loader)  # noqa: S506
    except yaml.YAMLError as exc:
        raise PromptFileInvalid("The file is not valid YAML.", fields={"file": [str(exc)]}) from None
    if not isinstance(raw, dict):
        raise PromptFileInvalid(
            "The file must be a mapping with the keys name, versions, ...",
            fields={"file": [f"Is {_type_name(raw)}, not a mapping."]},
        )

    check = _Checker()
    check.unknown_keys(raw, FILE_KEYS)
    name: str | None = None
    if "name" not in raw:
        check.add("name", "Required.")
    else:
        name = check.string(raw, "name", "name", max_length=_NAME_MAX)
        if name is not None and not _SLUG.match(name):
            check.add("name", "Must be a slug: letters, digits, - and _.")
    description = check.string(raw, "description", "description") if "description" in raw else ""
    archived = raw.get("archived", False)
    if not isinstance(archived, bool):
        check.add("archived", f"Must be true or false, not {_type_name(archived)}.")

    versions: list[FileVersion] = []
    raw_versions = raw.get("versions")
    if "versions" not in raw:
        check.add("versions", "Required.")
    elif not isinstance(raw_versions, list) or not raw_versions:
        check.add("versions", "Must be a non-empty list of versions.")
    else:
        for index, raw_version in enumerate(raw_versions):
            version = _parse_version(check, raw_version, f"versions.{index}")
            if version is not None:
                versions.append(version)
        numbers = [version.number for version in versions]
        for number in sorted({n for n in numbers if numbers.count(n) > 1}):
            check.add("versions", f"Version number {number} appears more than once.")
    labels = _parse_labels(check, raw.get("labels", {}), {version.number for version in versions})

    if check.errors:
        raise PromptFileInvalid("The prompt file is invalid.", fields=check.errors)
    assert name is not None and description is not None and isinstance(archived, bool)
    return PromptFile(name=name, description=description, archived=archived, versions=versions, labels=labels)


# Import


def _version_content(version: PromptVersion) -> Content:
    return (version.kind, version.template, version.messages, version.variables, version.model, version.params)


def _file_content(version: FileVersion) -> Content:
    """The content as prompt_version_create would store it (variables normalized); raises if invalid."""
    variables = rendering.normalize_variables(version.variables)
    if version.template is not None:
        return (PromptVersion.Kind.TEXT, version.template, [], variables, version.model, version.params)
    assert version.messages is not None
    return (PromptVersion.Kind.CHAT, "", version.messages, variables, version.model, version.params)


def _version_fields(version: FileVersion) -> dict[str, Any]:
    return {
        "model": version.model,
        "template": version.template,
        "messages": version.messages,
        "variables": version.variables,
        "params": version.params,
        "commit_message": version.commit_message,
    }


@contextmanager
def _located(where: str) -> Iterator[None]:
    """Prefixes a service error's fields with the place in the file (`versions.2.template`)."""
    try:
        yield
    except DomainError as exc:
        exc.fields = {f"{where}.{key}": problems for key, problems in exc.fields.items()} or {where: [exc.message]}
        raise


def prompt_file_apply(
    *, project: Project, created_by: User | None = None, prompt_file: PromptFile, dry_run: bool = False
) -> list[Change]:
    """Makes project's prompt of that name match the file; returns the changes made.

    One transaction: on any error (a DomainError, fields located in the file) nothing is written.
    With dry_run the transaction is rolled back, so the changes are computed, validated and reported
    exactly as a real import would make them, and none is kept.
    """
    name = prompt_file.name
    changes: list[Change] = []
    with transaction.atomic():
        # Locked so that a concurrent import of the same prompt waits instead of adding the same versions.
        prompt: Prompt | None = Prompt.objects.select_for_update().filter(project=project, name=name).first()
        # Newest first: content found twice in the database maps to its newest version.
        existing = list(selectors.version_list(prompt=prompt)) if prompt is not None else []
        by_file_number: dict[int, PromptVersion] = {}
        for index, file_version in enumerate(prompt_file.versions):
            where = f"versions.{index}"
            with _located(where):
                content = _file_content(file_version)
            match = next((version for version in existing if _version_content(version) == content), None)
            if match is None:
                with _located(where):
                    if prompt is None:
                        prompt, match = services.prompt_create(
                            project=project,
                            created_by=created_by,
                            name=name,
                            description=prompt_file.description,
                            **_version_fields(file_version),
                        )
                        changes.append(Change(ChangeKind.PROMPT_CREATED, name))
                    else:
                        match = services.prompt_version_create(
                            prompt=prompt, created_by=created_by, **_version_fields(file_version)
                        )
                existing.insert(0, match)
                changes.append(
                    Change(ChangeKind.VERSION_ADDED, name, f"v{match.number} from file version {file_version.number}")
                )
            by_file_number[file_version.number] = match
        assert prompt is not None  # a file has at least one version

        current = {label.name: label.version for label in selectors.label_list(prompt=prompt)}
        for label, file_number in sorted(prompt_file.labels.items()):
            target = by_file_number[file_number]
            now = current.get(label)
            if now is not None and _version_content(now) == _version_content(target):
                continue
            with _located(f"labels.{label}"):
                services.label_move(prompt=prompt, label=label, version_number=target.number, moved_by=created_by)
            moved = f"{label}: v{now.number} -> v{target.number}" if now else f"{label}: new -> v{target.number}"
            changes.append(Change(ChangeKind.LABEL_MOVED, name, moved))

        if prompt.description != prompt_file.description:
            services.prompt_update(prompt=prompt, description=prompt_file.description)
            changes.append(Change(ChangeKind.DESCRIPTION_CHANGED, name))
        # Archiving is one-way, as in the API: a file without `archived: true` never un-archives a prompt.
        if prompt_file.archived and prompt.archived_at is None:
            services.prompt_archive(prompt=prompt)
            changes.append(Change(ChangeKind.ARCHIVED, name))
        if dry_run:
            transaction.set_rollback(True)
    return changes


def prompt_files(*, directory: Path) -> list[Path]:
    return sorted(path for path in directory.iterdir() if path.suffix in FILE_SUFFIXES and path.is_file())


def prompts_import(
    *, project: Project, created_by: User | None = None, directory: Path, dry_run: bool = False
) -> ImportReport:
    """Imports every *.yaml/*.yml file of directory into project's prompts, one transaction per file.

    A file that fails is reported in its FileResult and leaves the database as it was; the other
    files are still imported.
    """
    if not directory.is_dir():
        raise ValidationFailed(f"{directory} is not a directory.", fields={"directory": ["Not a directory."]})
    results = []
    names: dict[str, Path] = {}
    for path in prompt_files(directory=directory):
        try:
            prompt_file = prompt_file_parse(path=path)
            if prompt_file.name in names:
                raise PromptFileInvalid(
                    f"Another file defines the prompt {prompt_file.name!r}.",
                    fields={"name": [f"Also the name in {names[prompt_file.name].name}; this file was skipped."]},
                )
            names[prompt_file.name] = path
            changes = prompt_file_apply(
                project=project, created_by=created_by, prompt_file=prompt_file, dry_run=dry_run
            )
        except DomainError as exc:
            results.append(FileResult(path=path, error=exc))
        else:
            results.append(FileResult(path=path, changes=changes))
    return ImportReport(files=results, dry_run=dry_run)

"""Prompts as files: `prompts_export` / `prompts_import` and prompts.files behind them."""

from io import StringIO
from pathlib import Path

import pytest
import yaml
from django.core.management import CommandError, call_command

from prompts import files, services
from prompts.models import LabelMove, Prompt, PromptLabel, PromptVersion
from prompts.tests.factories import prompt_with_version

pytestmark = pytest.mark.django_db

SUMMARY_TEMPLATE = "Summarize for {{ audience }}:\n\n{{ text }}\n\nAnswer in at most {{ words }} words.\n"


def export(user, directory: Path, *args: str) -> str:
    out = StringIO()
    call_command("prompts_export", str(directory), "--owner", user.username, *args, stdout=out)
    return out.getvalue()


def import_(user, directory: Path, *args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("prompts_import", str(directory), "--owner", user.username, *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def import_failing(user, directory: Path, *args: str) -> tuple[str, str, str]:
    out, err = StringIO(), StringIO()
    with pytest.raises(CommandError) as failure:
        call_command("prompts_import", str(directory), "--owner", user.username, *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue(), str(failure.value)


def state(user) -> dict:
    """Everything an import may change, per prompt name, without ids and timestamps."""
    return {
        prompt.name: {
            "description": prompt.description,
            "archived": prompt.archived_at is not None,
            "versions": [
                (v.number, v.kind, v.template, v.messages, v.variables, v.model, v.params, v.commit_message)
                for v in prompt.versions.order_by("number")
            ],
            "labels": {label.name: label.version.number for label in prompt.labels.all()},
        }
        for prompt in Prompt.objects.filter(project=user.personal_project).order_by("name")
    }


def counts() -> tuple[int, int, int, int]:
    return (
        Prompt.objects.count(),
        PromptVersion.objects.count(),
        PromptLabel.objects.count(),
        LabelMove.objects.count(),
    )


def read(path: Path) -> dict:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def write(path: Path, document: dict) -> None:
    path.write_text(yaml.safe_dump(document, sort_keys=False, allow_unicode=True), encoding="utf-8")


@pytest.fixture
def alice_prompts(alice):
    """`summarize`: three text versions, production -> v2, staging -> v3; `chat`: two chat versions."""
    summarize, _ = prompt_with_version(
        alice,
        name="summarize",
        description="Résumés for the newsletter ✉",
        template=SUMMARY_TEMPLATE,
        variables={
            "text": {"type": "string"},
            "audience": {"type": "string", "default": "engineers"},
            "words": {"type": "integer", "default": 80},
        },
        params={"temperature": 0.3, "max_tokens": 120},
        commit_message="first",
    )
    for words, message in ((50, "shorter"), (30, "even shorter")):
        services.prompt_version_create(
            prompt=summarize,
            created_by=alice,
            model="local/smollm2",
            template=SUMMARY_TEMPLATE,
            variables={
                "text": {"type": "string"},
                "audience": {"type": "string", "default": "engineers"},
                "words": {"type": "integer", "default": words, "description": "Upper bound"},
            },
            params={"temperature": 0.3, "max_tokens": 120, "stop": ["\n\n"]},
            commit_message=message,
        )
    services.label_move(prompt=summarize, label="production", version_number=2, moved_by=alice)
    services.label_move(prompt=summarize, label="staging", version_number=3, moved_by=alice)
    chat, _ = prompt_with_version(
        alice,
        name="chat",
        template=None,
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi {{ name }}"}],
    )
    services.prompt_version_create(
        prompt=chat,
        created_by=alice,
        model="hf/Qwen/Qwen2.5-1.5B-Instruct",
        messages=[{"role": "system", "content": "Be brief.\nBe kind."}, {"role": "user", "content": "Hi {{ name }}"}],
        variables={"name": {"type": "string"}},
    )
    return summarize, chat


# Export


def test_export_writes_one_diff_friendly_file_per_prompt(alice, alice_prompts, tmp_path):
    output = export(alice, tmp_path)

    assert sorted(p.name for p in tmp_path.iterdir()) == ["chat.yaml", "summarize.yaml"]
    assert "Exported 2 prompt(s) of alice" in output
    text = (tmp_path / "summarize.yaml").read_text(encoding="utf-8")
    # Fixed key order, a block scalar for the multi-line template, raw UTF-8, no Python tags.
    assert [line.split(":")[0] for line in text.splitlines() if line and not line[0].isspace()] == list(files.FILE_KEYS)
    assert "    template: |\n      Summarize for {{ audience }}:\n\n      {{ text }}\n" in text
    assert "Résumés for the newsletter ✉" in text
    assert '      stop:\n        - "\\n\\n"\n' in text
    assert "!!" not in text and "python" not in text
    document = read(tmp_path / "summarize.yaml")
    assert document["labels"] == {"production": 2, "staging": 3}
    assert [v["number"] for v in document["versions"]] == [1, 2, 3]
    assert list(document["versions"][2]) == [k for k in files.VERSION_KEYS if k != "messages"]
    assert document["versions"][2]["variables"]["words"] == {
        "type": "integer",
        "required": False,
        "default": 30,
        "description": "Upper bound",
    }
    assert document["versions"][2]["params"] == {"max_tokens": 120, "stop": ["\n\n"], "temperature": 0.3}
    assert document["versions"][0]["commit_message"] == "first"
    chat = read(tmp_path / "chat.yaml")
    assert chat["versions"][1]["kind"] == "chat" and "template" not in chat["versions"][1]
    assert chat["versions"][1]["messages"][0] == {"role": "system", "content": "Be brief.\nBe kind."}


def test_export_is_stable(alice, alice_prompts, tmp_path):
    export(alice, tmp_path / "a")
    export(alice, tmp_path / "b")

    for name in ("chat.yaml", "summarize.yaml"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


@pytest.mark.parametrize(
    "text",
    [
        "a\nb",
        "a\nb\n",
        "a\nb\n\n",
        "  indented\nx",
        "\nleading break",
        "trailing space \nx",
        "tab\tx\ny",
        "a\r\nb",
        "\n\n",
        " \n",
        "next line\x85x\n",
        "line sep\u2028x\ny",
        "k: v\n- item\n# not a comment",
        "\ufeffbom\n",
    ],
)
def test_dumped_strings_load_back_exactly(text):
    dumped = yaml.dump({"t": text}, Dumper=files._Dumper, allow_unicode=True)

    assert yaml.safe_load(dumped) == {"t": text}


# Import


def test_round_trip_into_another_user(alice, bob, alice_prompts, tmp_path):
    export(alice, tmp_path)
    alice_before = state(alice)

    output, _ = import_(bob, tmp_path)

    bob_state = state(bob)
    assert bob_state == alice_before  # same versions (numbers and content), labels, descriptions
    assert state(alice) == alice_before
    assert len(bob_state["summarize"]["versions"]) == 3
    assert "2 files read, 0 failed: 2 prompts created, 5 versions added, 2 labels moved" in output
    assert "summarize.yaml: summarize: label moved (production: new -> v2)" in output
    bob_prompt = Prompt.objects.get(project=bob.personal_project, name="summarize")
    assert set(bob_prompt.versions.values_list("created_by__username", flat=True)) == {"bob"}


def test_reimport_changes_nothing(alice, bob, alice_prompts, tmp_path):
    export(alice, tmp_path)
    import_(bob, tmp_path)
    before, bob_before = counts(), state(bob)

    output, _ = import_(bob, tmp_path)

    assert counts() == before
    assert state(bob) == bob_before
    assert output.strip() == (
        "2 files read, 0 failed: 0 prompts created, 0 versions added, 0 labels moved, "
        "0 descriptions changed, 0 prompts archived."
    )


def test_reimport_into_the_same_owner_changes_nothing(alice, alice_prompts, tmp_path):
    export(alice, tmp_path)
    before, alice_before = counts(), state(alice)

    import_(alice, tmp_path)

    assert counts() == before and state(alice) == alice_before


def test_changed_template_creates_exactly_one_version(alice, alice_prompts, tmp_path):
    export(alice, tmp_path)
    path = tmp_path / "summarize.yaml"
    document = read(path)
    # Edited in place, as a team would in Git: the file's v3 gets a new template and staging follows it.
    document["versions"][2]["template"] = "TL;DR of {{ text }} for {{ audience }} in {{ words }} words."
    document["versions"][2]["commit_message"] = "tldr"
    write(path, document)
    moves_before = LabelMove.objects.count()

    output, _ = import_(alice, tmp_path)

    versions = list(
        PromptVersion.objects.filter(prompt__project=alice.personal_project, prompt__name="summarize").order_by(
            "number"
        )
    )
    assert [v.number for v in versions] == [1, 2, 3, 4]
    assert versions[3].template == "TL;DR of {{ text }} for {{ audience }} in {{ words }} words."
    assert versions[3].commit_message == "tldr"
    assert versions[3].created_by == alice
    labels = {label.name: label.version.number for label in PromptLabel.objects.filter(prompt__name="summarize")}
    assert labels == {"production": 2, "staging": 4}
    assert LabelMove.objects.count() == moves_before + 1
    assert "summarize: version added (v4 from file version 3)" in output
    assert "summarize: label moved (staging: v3 -> v4)" in output
    # Importing the same file again adds nothing.
    before = counts()
    import_(alice, tmp_path)
    assert counts() == before


def test_moved_label_in_file_moves_the_label(alice, alice_prompts, tmp_path):
    summarize, _ = alice_prompts
    export(alice, tmp_path)
    path = tmp_path / "summarize.yaml"
    document = read(path)
    document["labels"] = {"production": 1, "staging": 3, "canary": 3}
    write(path, document)
    versions_before = PromptVersion.objects.count()

    output, _ = import_(alice, tmp_path)

    assert PromptVersion.objects.count() == versions_before
    assert {label.name: label.version.number for label in PromptLabel.objects.filter(prompt=summarize)} == {
        "canary": 3,
        "production": 1,
        "staging": 3,
    }
    move = LabelMove.objects.filter(prompt=summarize, label="production").order_by("-created_at").first()
    assert (move.from_version.number, move.to_version.number, move.moved_by) == (2, 1, alice)
    assert "2 labels moved" in output


def test_file_version_numbers_are_informational(alice, bob, alice_prompts, tmp_path):
    """Numbers come from the database; labels follow content, and known content is never added again."""
    prompt_with_version(bob, name="summarize", template="Bob's own first version.", variables={})
    export(alice, tmp_path)

    import_(bob, tmp_path)

    bob_versions = state(bob)["summarize"]["versions"]
    assert [v[0] for v in bob_versions] == [1, 2, 3, 4]
    assert bob_versions[0][2] == "Bob's own first version."
    assert [v[2] for v in bob_versions[1:]] == [SUMMARY_TEMPLATE] * 3
    # alice's v2 (production) and v3 (staging) are bob's v3 and v4.
    assert state(bob)["summarize"]["labels"] == {"production": 3, "staging": 4}


def test_description_change_is_imported(alice, alice_prompts, tmp_path):
    export(alice, tmp_path)
    document = read(tmp_path / "chat.yaml")
    document["description"] = "Greets people."
    write(tmp_path / "chat.yaml", document)

    output, _ = import_(alice, tmp_path)

    assert Prompt.objects.get(project=alice.personal_project, name="chat").description == "Greets people."
    assert "chat.yaml: chat: description changed" in output
    assert "1 description changed" in output


def test_dry_run_reports_and_writes_nothing(alice, bob, alice_prompts, tmp_path):
    export(alice, tmp_path)
    document = read(tmp_path / "summarize.yaml")
    document["versions"][2]["template"] = "New {{ text }}"
    document["labels"]["production"] = 1
    document["description"] = "changed"
    write(tmp_path / "summarize.yaml", document)
    before, alice_before = counts(), state(alice)

    alice_output, _ = import_(alice, tmp_path, "--dry-run")
    bob_output, _ = import_(bob, tmp_path, "--dry-run")

    assert counts() == before
    assert state(alice) == alice_before and state(bob) == {}
    assert "summarize: version added (v4 from file version 3)" in alice_output
    assert "summarize: label moved (production: v2 -> v1)" in alice_output
    assert "summarize: label moved (staging: v3 -> v4)" in alice_output
    assert "summarize: description changed" in alice_output
    assert alice_output.strip().endswith(
        "Dry run (nothing written): 2 files read, 0 failed: 0 prompts created, 1 version added, 2 labels moved, "
        "1 description changed, 0 prompts archived."
    )
    assert "chat.yaml: chat: prompt created" in bob_output
    assert "Dry run (nothing written): 2 files read, 0 failed: 2 prompts created, 5 versions added" in bob_output


def test_dry_run_reports_invalid_content_too(bob, tmp_path):
    write(tmp_path / "bad.yaml", {"name": "bad", "versions": [{"number": 1, "template": "{{ x }}", "model": "m/x"}]})

    _, err, message = import_failing(bob, tmp_path, "--dry-run")

    assert "bad.yaml: versions.0.template: Uses undeclared variables: x." in err
    assert "1 file(s) failed" in message


def _valid_version(number: int = 1, **fields) -> dict:
    return {"number": number, "template": "Hello {{ name }}", "variables": {"name": {}}, "model": "local/x"} | fields


def test_invalid_file_is_reported_by_name_and_nothing_from_it_is_written(bob, tmp_path):
    write(tmp_path / "good.yaml", {"name": "good", "versions": [_valid_version()]})
    # Version 1 is fine (so the prompt would be created), version 2 fails validation in the services.
    write(
        tmp_path / "broken.yaml",
        {"name": "broken", "versions": [_valid_version(), _valid_version(2, template="{% if %}", model="no-slash")]},
    )

    out, err, message = import_failing(bob, tmp_path)

    assert list(Prompt.objects.filter(project=bob.personal_project).values_list("name", flat=True)) == ["good"]
    assert PromptVersion.objects.filter(prompt__name="broken").count() == 0
    assert "broken.yaml: The template is invalid." in err
    assert "broken.yaml: versions.1.template: Template syntax error on line 1" in err
    assert "good.yaml" not in err
    assert "good.yaml: good: prompt created" in out
    assert "2 files read, 1 failed: 1 prompt created, 1 version added" in out
    assert message == "1 file(s) failed, nothing written from them: broken.yaml."


def test_a_version_naming_an_unknown_provider_is_reported_and_nothing_from_the_file_is_written(bob, tmp_path):
    write(tmp_path / "typo.yaml", {"name": "typo", "versions": [_valid_version(model="lcoal/x")]})

    _, err, message = import_failing(bob, tmp_path)

    assert "typo.yaml: versions.0.model: No provider named 'lcoal' (known: hf, local)" in err
    assert not Prompt.objects.filter(name="typo").exists()
    assert message == "1 file(s) failed, nothing written from them: typo.yaml."


@pytest.mark.parametrize(
    ("document", "field", "problem"),
    [
        ({"versions": [_valid_version()]}, "name", "Required."),
        ({"name": "x", "versions": [_valid_version()], "lables": {}}, "lables", "Unknown key."),
        ({"name": "x", "versions": [_valid_version(temprature=1)]}, "versions.0.temprature", "Unknown key."),
        ({"name": "Not a slug!", "versions": [_valid_version()]}, "name", "Must be a slug"),
        ({"name": 12, "versions": [_valid_version()]}, "name", "Must be a string, not integer."),
        ({"name": "x", "versions": []}, "versions", "Must be a non-empty list"),
        ({"name": "x", "versions": {"1": _valid_version()}}, "versions", "Must be a non-empty list"),
        ({"name": "x", "versions": [_valid_version(number="one")]}, "versions.0.number", "Must be a positive"),
        (
            {"name": "x", "versions": [_valid_version(), _valid_version()]},
            "versions",
            "Version number 1 appears more than once.",
        ),
        ({"name": "x", "versions": [_valid_version(params=[1])]}, "versions.0.params", "Must be a mapping, not list"),
        ({"name": "x", "versions": [_valid_version(kind="chat")]}, "versions.0.kind", "Is chat, but"),
        ({"name": "x", "versions": [_valid_version(messages=[])]}, "versions.0", "Give either `template`"),
        (
            {"name": "x", "versions": [_valid_version(template=None, messages=[{"role": "user", "text": "hi"}])]},
            "versions.0.messages.0.text",
            "Unknown key.",
        ),
        ({"name": "x", "description": ["a"], "versions": [_valid_version()]}, "description", "Must be a string"),
        (
            {"name": "x", "versions": [_valid_version()], "labels": {"prod": 2}},
            "labels.prod",
            "This file has no version 2.",
        ),
        ({"name": "x", "versions": [_valid_version()], "labels": {"latest": 1}}, "labels.latest", "'latest'"),
        ({"name": "x", "versions": [_valid_version()], "archived": "yes"}, "archived", "Must be true or false"),
    ],
)
def test_structural_errors_name_the_file_and_key(bob, tmp_path, document, field, problem):
    document = {key: value for key, value in document.items()}
    for version in document.get("versions") or []:
        if isinstance(version, dict) and version.get("template") is None:
            version.pop("template", None)
    write(tmp_path / "p.yaml", document)

    _, err, _ = import_failing(bob, tmp_path)

    assert f"p.yaml: {field}: {problem}" in err
    assert counts()[0] == 0


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("name: x\nname: y\nversions: []\n", "duplicate key 'name'"),
        ("name: x\nversions: [&v {number: 1, model: a/b, template: hi}, *v]\n", "aliases (*name) are not allowed"),
        ("- just\n- a list\n", "Is list, not a mapping."),
        ("? [complex, key]\n: value\n", "found unhashable key"),
        ("name: [unclosed\n", "while parsing"),
        (
            "name: x\nversions:\n- {number: 1, model: a/b, template: hi, params: {seed: 2024-01-01}}\n",
            "A date is not allowed here",
        ),
    ],
)
def test_unreadable_yaml_is_reported(bob, tmp_path, text, problem):
    (tmp_path / "p.yml").write_text(text, encoding="utf-8")

    _, err, _ = import_failing(bob, tmp_path)

    assert "p.yml: " in err and problem in err
    assert counts()[0] == 0


def test_yaml_tags_are_never_executed(bob, tmp_path):
    marker = tmp_path / "executed"
    (tmp_path / "evil.yaml").write_text(f'!!python/object/apply:os.system ["touch {marker}"]\n', encoding="utf-8")

    _, err, _ = import_failing(bob, tmp_path)

    assert not marker.exists()
    assert "evil.yaml: The file is not valid YAML." in err
    assert "could not determine a constructor for the tag 'tag:yaml.org,2002:python/object/apply:os.system'" in err


def test_two_files_with_the_same_prompt_name(bob, tmp_path):
    write(tmp_path / "a.yaml", {"name": "same", "versions": [_valid_version()]})
    write(tmp_path / "b.yaml", {"name": "same", "versions": [_valid_version(template="Other {{ name }}")]})

    _, err, _ = import_failing(bob, tmp_path)

    assert "b.yaml: name: Also the name in a.yaml" in err
    assert [v[2] for v in state(bob)["same"]["versions"]] == ["Hello {{ name }}"]


def test_unknown_owner_and_missing_directory(bob, tmp_path):
    with pytest.raises(CommandError, match="No user named 'nobody'"):
        call_command("prompts_import", str(tmp_path), "--owner", "nobody")
    with pytest.raises(CommandError, match="is not a directory"):
        call_command("prompts_import", str(tmp_path / "missing"), "--owner", "bob")


# Archived prompts


@pytest.fixture
def archived(alice):
    prompt, _ = prompt_with_version(alice, name="old")
    services.label_move(prompt=prompt, label="production", version_number=1, moved_by=alice)
    return services.prompt_archive(prompt=prompt)


def test_export_leaves_archived_prompts_out_unless_asked(alice, archived, alice_prompts, tmp_path):
    export(alice, tmp_path / "default")
    export(alice, tmp_path / "all", "--include-archived")

    assert not (tmp_path / "default" / "old.yaml").exists()
    assert read(tmp_path / "all" / "old.yaml")["archived"] is True
    assert read(tmp_path / "all" / "summarize.yaml")["archived"] is False


def test_archived_prompt_round_trips_archived(alice, bob, archived, tmp_path):
    export(alice, tmp_path, "--include-archived")

    output, _ = import_(bob, tmp_path)

    assert state(bob) == state(alice)
    assert state(bob)["old"]["archived"] is True and state(bob)["old"]["labels"] == {"production": 1}
    assert "old.yaml: old: archived" in output
    before = counts()
    import_(bob, tmp_path)
    assert counts() == before


def test_archived_prompt_takes_no_new_versions_from_a_file(alice, archived, tmp_path):
    export(alice, tmp_path, "--include-archived")
    document = read(tmp_path / "old.yaml")
    document["versions"].append(_valid_version(2))
    write(tmp_path / "old.yaml", document)
    before, alice_before = counts(), state(alice)

    _, err, _ = import_failing(alice, tmp_path)

    assert "old.yaml: versions.1: The prompt is archived; it takes no new versions." in err
    assert counts() == before and state(alice) == alice_before


def test_import_never_unarchives(alice, archived, tmp_path):
    export(alice, tmp_path, "--include-archived")
    document = read(tmp_path / "old.yaml")
    document["archived"] = False
    write(tmp_path / "old.yaml", document)

    import_(alice, tmp_path)

    assert Prompt.objects.get(pk=archived.pk).archived_at == archived.archived_at


# Owner isolation


def test_import_for_bob_never_touches_alices_prompts(alice, bob, alice_prompts, tmp_path):
    export(alice, tmp_path)
    alice_before = state(alice)
    alice_moves = LabelMove.objects.filter(prompt__project=alice.personal_project).count()
    # Bob has a prompt of the same name: the import changes his, not alice's.
    prompt_with_version(bob, name="chat", template="Bob's {{ name }}")
    document = read(tmp_path / "chat.yaml")
    document["labels"] = {"production": 2}
    document["description"] = "bob's"
    write(tmp_path / "chat.yaml", document)

    import_(bob, tmp_path)
    import_(bob, tmp_path, "--dry-run")

    assert state(alice) == alice_before
    assert LabelMove.objects.filter(prompt__project=alice.personal_project).count() == alice_moves
    assert state(bob)["chat"]["description"] == "bob's"
    assert len(state(bob)["chat"]["versions"]) == 3
    assert state(bob)["chat"]["labels"] == {"production": 3}


def test_export_only_writes_the_owners_prompts(alice, bob, alice_prompts, tmp_path):
    prompt_with_version(bob, name="bobs")

    export(bob, tmp_path)

    assert [p.name for p in tmp_path.iterdir()] == ["bobs.yaml"]

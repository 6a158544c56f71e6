"""A/B splits of a label (prompts.services.label_split_set, PUT /api/v1/prompts/{ref}/labels/{label}):
the rules, each refusal naming its field, the history and the event, the protected-label role rule,
and the label's gates checked for every version a split sends runs to."""

import pytest
from rest_framework.test import APIClient

from accounts import project_services
from accounts.models import Role
from accounts.tests.factories import UserFactory
from llmops.errors import Conflict, DomainError, ValidationFailed
from llmops.tests.helpers import assert_error
from prompts import label_gates, services
from prompts.models import LabelMove, PromptLabel
from prompts.tests.factories import prompt_with_version
from webhooks.models import WebhookDelivery
from webhooks.tests.factories import WebhookEndpointFactory

pytestmark = pytest.mark.django_db

LABEL = "/api/v1/prompts/greet/labels/production"
SPLIT_90_10 = [{"version": 2, "weight": 90}, {"version": 3, "weight": 10}]


@pytest.fixture
def greet(alice):
    prompt, _ = prompt_with_version(alice, name="greet")
    for text in ("v2 {{ name }}", "v3 {{ name }}"):
        services.prompt_version_create(prompt=prompt, created_by=alice, template=text)
    return prompt


def _split(prompt, split, version=2, **kwargs):
    kwargs.setdefault("moved_by", None)
    return services.label_split_set(prompt=prompt, label="production", version_number=version, split=split, **kwargs)


# The service


def test_a_split_is_stored_in_order_and_recorded_as_a_move(greet, alice):
    label = _split(greet, SPLIT_90_10, moved_by=alice)

    label.refresh_from_db()
    assert (label.version.number, label.split) == (2, SPLIT_90_10)
    move = LabelMove.objects.get(prompt=greet, label="production")
    assert (move.from_version, move.to_version.number, move.split, move.moved_by) == (None, 2, SPLIT_90_10, alice)


def test_the_same_split_again_records_nothing_and_a_move_clears_it(greet):
    _split(greet, SPLIT_90_10)
    _split(greet, SPLIT_90_10)
    assert LabelMove.objects.filter(prompt=greet).count() == 1

    services.label_move(prompt=greet, label="production", version_number=2, moved_by=None)

    label = PromptLabel.objects.get(prompt=greet, name="production")
    assert (label.version.number, label.split) == (2, [])
    assert list(LabelMove.objects.filter(prompt=greet).values_list("split", flat=True)) == [[], SPLIT_90_10]


@pytest.mark.parametrize(
    ("split", "fields", "problem"),
    [
        ([{"version": 2, "weight": 60}, {"version": 3, "weight": 30}], {"split"}, "sum to 100"),
        ([{"version": 2, "weight": 100}], {"split.0.weight"}, "from 1 to 99"),
        ([{"version": 2, "weight": 50}, {"version": 2, "weight": 50}], {"split.1.version"}, "each version once"),
        ([{"version": 2, "weight": 50}, {"version": 9, "weight": 50}], {"split.1.version"}, "No such version"),
        ([{"version": 1, "weight": 50}, {"version": 3, "weight": 50}], {"split"}, "label's version (2)"),
        ([{"version": 2, "weight": 0}, {"version": 3, "weight": 100}], {"split.0.weight", "split.1.weight"}, "1 to"),
        ([{"version": "2", "weight": 50}, {"version": 3, "weight": 50}], {"split.0.version"}, "version number"),
        ([{"version": 2, "weight": 50}, {"version": 3}], {"split.1"}, "Must be an object"),
        ([{"version": n, "weight": 20} for n in (1, 2, 3, 4, 5)], {"split"}, "2 to 4 arms"),
        ("90/10", {"split"}, "2 to 4 arms"),
    ],
)
def test_a_bad_split_is_refused_naming_its_field_and_changes_nothing(greet, split, fields, problem):
    with pytest.raises(ValidationFailed) as refused:
        _split(greet, split)

    assert set(refused.value.fields) == fields
    assert any(problem in text for texts in refused.value.fields.values() for text in texts), refused.value.fields
    assert not PromptLabel.objects.filter(prompt=greet).exists()
    assert not LabelMove.objects.exists()


def test_a_protected_label_is_split_only_by_an_admin(greet):
    greet.project.protected_labels = ["production"]
    greet.project.save()

    with pytest.raises(DomainError) as refused:
        _split(greet, SPLIT_90_10, role=Role.EDITOR)
    assert refused.value.status_code == 403
    assert not PromptLabel.objects.filter(prompt=greet).exists()

    assert _split(greet, SPLIT_90_10, role=Role.ADMIN).split == SPLIT_90_10


@pytest.fixture
def gate(monkeypatch):
    """A gate of the label's that refuses version 3 and records every version it was asked about."""
    asked: list[tuple[str, int]] = []

    def check(*, prompt, label, version):
        asked.append((label, version.number))
        if version.number == 3:
            raise Conflict("Version 3 has not passed an evaluation.", code="evaluation_required")

    monkeypatch.setattr(label_gates, "_checks", [check])
    return asked


def test_a_split_cannot_send_a_gated_labels_runs_to_a_version_the_gate_refuses(greet, gate):
    services.label_move(prompt=greet, label="production", version_number=2, moved_by=None)
    gate.clear()

    with pytest.raises(Conflict) as refused:
        _split(greet, SPLIT_90_10)

    assert refused.value.code == "evaluation_required"
    assert gate == [("production", 3)]  # the new arm; not the label's version, which it already runs
    assert PromptLabel.objects.get(prompt=greet, name="production").split == []


def test_the_gate_is_asked_about_every_version_new_to_the_label(greet, gate):
    with pytest.raises(Conflict):
        services.label_move(prompt=greet, label="production", version_number=3, moved_by=None)
    assert gate == [("production", 3)]
    assert not PromptLabel.objects.filter(prompt=greet).exists()
    gate.clear()

    _split(greet, [{"version": 1, "weight": 50}, {"version": 2, "weight": 50}], version=1)

    assert gate == [("production", 1), ("production", 2)]


def test_setting_a_split_emits_the_label_moved_event_with_it(greet, alice):
    endpoint = WebhookEndpointFactory(project=greet.project, created_by=alice, events=["prompt.label_moved"])

    _split(greet, SPLIT_90_10, moved_by=alice)
    services.label_move(prompt=greet, label="production", version_number=2, moved_by=alice)

    payloads = [d.payload for d in WebhookDelivery.objects.filter(endpoint=endpoint).order_by("created_at")]
    assert [(p["from"], p["to"], p["split"]) for p in payloads] == [(None, 2, SPLIT_90_10), (2, 2, [])]


# The API


def test_put_sets_a_split_and_reads_show_it(alice_client, greet):
    response = alice_client.put(LABEL, {"version": 2, "split": SPLIT_90_10}, format="json")

    assert response.status_code == 200, response.content
    assert response.json()["split"] == SPLIT_90_10
    labels = alice_client.get("/api/v1/prompts/greet/labels").json()
    assert labels["labels"] == [
        {"name": "production", "version": 2, "split": SPLIT_90_10, "updated_at": labels["labels"][0]["updated_at"]}
    ]
    assert labels["history"][0]["split"] == SPLIT_90_10


def test_put_without_a_split_clears_it(alice_client, greet):
    alice_client.put(LABEL, {"version": 2, "split": SPLIT_90_10}, format="json")

    response = alice_client.put(LABEL, {"version": 2}, format="json")

    assert response.status_code == 200
    assert response.json()["split"] == []
    assert PromptLabel.objects.get(prompt=greet, name="production").split == []


@pytest.mark.parametrize(
    ("split", "fields"),
    [
        ([{"version": 2, "weight": 50}, {"version": 3, "weight": 40}], {"split"}),
        ([{"version": 2, "weight": 50}, {"version": 7, "weight": 50}], {"split.1.version"}),
        ([{"version": 2, "weight": 50}, {"version": 3, "weight": 50, "note": "x"}], {"split.1"}),
    ],
)
def test_put_with_a_bad_split_is_a_400_naming_the_field(alice_client, greet, split, fields):
    response = alice_client.put(LABEL, {"version": 2, "split": split}, format="json")

    assert_error(response, 400, fields=fields)
    assert not PromptLabel.objects.filter(prompt=greet).exists()


def test_put_a_split_of_a_protected_label_needs_an_admin(alice):
    owner = UserFactory(username="olga")
    project = project_services.project_create(name="Team", slug="team", created_by=owner)
    project.protected_labels = ["production"]
    project.save()
    prompt, _ = prompt_with_version(project, name="greet")
    services.prompt_version_create(prompt=prompt, created_by=None, template="v2 {{ name }}")
    editor = UserFactory(username="eddie")
    project_services.member_add(project=project, user=editor, role=Role.EDITOR, acting_role=None)
    client = APIClient()
    client.force_login(editor)
    body = {"version": 1, "split": [{"version": 1, "weight": 50}, {"version": 2, "weight": 50}]}

    refused = client.put(LABEL, body, format="json", HTTP_X_PROJECT="team")

    assert_error(refused, 403, "insufficient_role")
    assert not PromptLabel.objects.filter(prompt=prompt).exists()
    project_services.member_set_role(project=project, user=editor, role=Role.ADMIN, acting_role=None)
    assert client.put(LABEL, body, format="json", HTTP_X_PROJECT="team").status_code == 200


def test_put_a_split_the_gate_refuses_is_a_409(alice_client, greet, gate):
    alice_client.put(LABEL, {"version": 2}, format="json")

    response = alice_client.put(LABEL, {"version": 2, "split": SPLIT_90_10}, format="json")

    assert_error(response, 409, "evaluation_required")
    assert PromptLabel.objects.get(prompt=greet, name="production").split == []

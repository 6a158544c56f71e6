"""Datasets in the admin: created and deleted through the services, examples read-only and
appended through examples_append (a file or one example), and the runs changelist's
"Save as example" action."""

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.auth.models import Permission
from django.core.files.uploadedfile import SimpleUploadedFile

from accounts import project_services
from accounts.models import Role
from accounts.tests.factories import UserFactory
from evals.models import Dataset, DatasetVersion, Example, Experiment
from evals.tests.factories import dataset_with_examples
from prompts.tests.factories import prompt_with_version
from runs.models import Run
from runs.tests.factories import RunFactory

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/evals/dataset/"
RUNS = "/admin/runs/run/"


@pytest.fixture
def qa(alice):
    return dataset_with_examples(
        alice.personal_project,
        [{"variables": {"q": "<b>bold</b>"}, "expected_output": "first"}, {"expected_output": "second"}],
        name="qa",
    )


def test_changelist_and_change_page_show_versions_and_examples_read_only(admin_client, qa):
    listed = admin_client.get(CHANGELIST)
    page = admin_client.get(f"{CHANGELIST}{qa.pk}/change/")

    assert listed.status_code == 200 and "qa" in listed.content.decode()
    assert page.status_code == 200
    html = page.content.decode()
    assert "first" in html and "second" in html
    assert "&lt;b&gt;bold&lt;/b&gt;" in html and "<b>bold</b>" not in html
    assert f'href="{CHANGELIST}{qa.pk}/append/"' in html
    examples = next(f for f in page.context["inline_admin_formsets"] if f.opts.model is Example)
    assert not examples.has_add_permission and not examples.has_change_permission


def test_an_old_version_is_not_what_the_page_shows(admin_client, alice, qa):
    first = Example.objects.get(dataset=qa, expected_output="first")
    first.removed_in = 2
    first.save()
    DatasetVersion.objects.create(dataset=qa, number=2, example_count=1, removed_count=1)
    Dataset.objects.filter(pk=qa.pk).update(latest_version_number=2)

    html = admin_client.get(f"{CHANGELIST}{qa.pk}/change/").content.decode()

    assert "second" in html and ">first<" not in html


def test_add_goes_through_the_service(admin_client, alice):
    response = admin_client.post(
        f"{CHANGELIST}add/", {"project": str(alice.personal_project.pk), "name": "new", "description": "d"}
    )

    assert response.status_code == 302, response.context["adminform"].form.errors if response.context else None
    dataset = Dataset.objects.get(name="new")
    assert (dataset.project, dataset.description, dataset.latest_version_number) == (alice.personal_project, "d", 0)


def test_a_taken_name_is_shown_on_the_form(admin_client, alice, qa):
    response = admin_client.post(f"{CHANGELIST}add/", {"project": str(alice.personal_project.pk), "name": "qa"})

    assert response.status_code == 200
    assert response.context["adminform"].form.errors  # the unique constraint, before the service
    assert Dataset.objects.filter(name="qa").count() == 1


def test_delete_refused_while_in_use(admin_client, alice, qa):
    prompt, _ = prompt_with_version(alice.personal_project, name="greet")
    Experiment.objects.create(
        project=alice.personal_project, prompt=prompt, dataset=qa, dataset_version=qa.versions.get()
    )

    page = admin_client.get(f"{CHANGELIST}{qa.pk}/delete/")
    response = admin_client.post(f"{CHANGELIST}{qa.pk}/delete/", {"post": "yes"}, follow=True)

    assert "Cannot delete dataset" in page.content.decode()
    assert response.status_code == 200
    assert Dataset.objects.filter(pk=qa.pk).exists()


def test_append_one_example(admin_client, qa):
    response = admin_client.post(
        f"{CHANGELIST}{qa.pk}/append/",
        {"variables": '{"q": "typed"}', "expected_output": "typed in", "tags": "a, b", "note": "by hand"},
    )

    assert response.status_code == 302
    example = Example.objects.get(dataset=qa, added_in=2)
    assert (example.variables, example.expected_output, example.tags) == ({"q": "typed"}, "typed in", ["a", "b"])
    assert DatasetVersion.objects.get(dataset=qa, number=2).note == "by hand"


def test_append_a_file_and_its_bad_lines(admin_client, qa):
    good = SimpleUploadedFile("rows.csv", b"var.q,expected_output\nx,X\ny,Y\n")
    bad = SimpleUploadedFile("rows.jsonl", b'{"expected_output": "fine"}\n{"tags": 5}\n')

    added = admin_client.post(f"{CHANGELIST}{qa.pk}/append/", {"file": good})
    refused = admin_client.post(f"{CHANGELIST}{qa.pk}/append/", {"file": bad})
    bad_json = admin_client.post(f"{CHANGELIST}{qa.pk}/append/", {"variables": "{nope"})

    assert added.status_code == 302
    assert list(Example.objects.filter(dataset=qa, added_in=2).values_list("expected_output", flat=True)) == ["X", "Y"]
    assert refused.status_code == 400 and "examples.2.tags" in refused.content.decode()
    assert bad_json.status_code == 400 and "Invalid JSON" in bad_json.content.decode()
    assert Example.objects.filter(dataset=qa).count() == 4


def test_a_viewer_staff_member_cannot_append(client, alice, qa):
    staff = UserFactory(username="sam", is_staff=True)
    staff.user_permissions.add(
        *Permission.objects.filter(content_type__app_label="evals", codename__in=["view_dataset", "change_dataset"])
    )
    project_services.member_add(project=alice.personal_project, user=staff, role=Role.VIEWER, acting_role=None)
    client.force_login(staff)

    response = client.post(f"{CHANGELIST}{qa.pk}/append/", {"expected_output": "nope"})

    assert response.status_code == 403
    assert Example.objects.filter(dataset=qa).count() == 2


def _save(admin_client, runs, **data):
    return admin_client.post(
        RUNS, {"action": "save_as_example", "index": "0", ACTION_CHECKBOX_NAME: [str(r.pk) for r in runs], **data}
    )


def test_save_as_example_asks_for_the_dataset_then_saves(admin_client, alice, qa):
    runs = [RunFactory(owner=alice, variables={"n": i}, output=f"out {i}") for i in range(2)]
    other = dataset_with_examples(UserFactory().personal_project, [{}], name="elsewhere")

    asked = _save(admin_client, runs)
    assert asked.status_code == 200
    choices = [c.instance for c in asked.context["form"].fields["dataset"].choices if hasattr(c, "instance")]
    assert [str(c) for c in asked.context["form"].fields["dataset"].queryset] == ["qa"]
    assert other not in choices

    saved = _save(admin_client, runs, apply="1", dataset=str(qa.pk), tags="from-admin")

    assert saved.status_code == 302
    examples = Example.objects.filter(dataset=qa, added_in=2).order_by("position")
    assert [(e.expected_output, e.source_run_id, e.tags) for e in examples] == [
        ("out 0", runs[0].pk, ["from-admin"]),
        ("out 1", runs[1].pk, ["from-admin"]),
    ]


def test_save_as_example_refuses_unfinished_runs_and_mixed_projects(admin_client, alice, bob, qa):
    queued = RunFactory(owner=alice, status=Run.Status.QUEUED)

    refused = _save(admin_client, [queued], apply="1", dataset=str(qa.pk))
    mixed = _save(admin_client, [RunFactory(owner=alice), RunFactory(owner=bob)], apply="1", dataset=str(qa.pk))

    assert refused.status_code == 200 and "only a succeeded run" in refused.content.decode()
    assert mixed.status_code == 302
    assert Example.objects.filter(dataset=qa).count() == 2

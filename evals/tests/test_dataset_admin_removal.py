"""Removing examples from a dataset in the admin: a box per example on the dataset's page, a
confirmation page, then examples_remove as one new version. In a real browser too
(llmops/tests/browser.py)."""

import uuid

import pytest
from django.contrib.auth.models import Permission

from accounts import project_services
from accounts.models import Role
from accounts.tests.factories import UserFactory
from evals.models import DatasetVersion, Example
from evals.tests.factories import dataset_with_examples

CHANGELIST = "/admin/evals/dataset/"


def _qa(project):
    return dataset_with_examples(
        project,
        [{"variables": {"q": f"question {n}"}, "expected_output": f"answer {n}", "tags": ["t"]} for n in (1, 2, 3)],
        name="qa",
    )


@pytest.fixture
def qa(alice):
    return _qa(alice.personal_project)


def _examples(dataset):
    return list(Example.objects.filter(dataset=dataset).order_by("position"))


def _remove_url(dataset, *examples):
    query = "&".join(f"ids={example.pk}" for example in examples)
    return f"{CHANGELIST}{dataset.pk}/remove/" + (f"?{query}" if query else "")


def _present(dataset):
    return list(
        Example.objects.filter(dataset=dataset, removed_in__isnull=True)
        .order_by("position")
        .values_list("position", flat=True)
    )


@pytest.mark.django_db
def test_the_dataset_page_has_a_box_per_example_outside_the_dataset_form(admin_client, qa):
    html = admin_client.get(f"{CHANGELIST}{qa.pk}/change/").content.decode()

    for example in _examples(qa):
        assert f'name="ids" value="{example.pk}" form="remove-examples-form"' in html
    assert f'<form method="get" action="{CHANGELIST}{qa.pk}/remove/" id="remove-examples-form">' in html
    assert 'form="remove-examples-form" class="button" value="Remove the checked examples…"' in html


@pytest.mark.django_db
def test_the_confirmation_lists_the_examples_and_removes_nothing(admin_client, qa):
    first, _, third = _examples(qa)

    response = admin_client.get(_remove_url(qa, first, third))

    html = response.content.decode()
    assert response.status_code == 200
    assert "Version 2 of <strong>qa</strong>" in html and "except these 2" in html
    assert [example.position for example, _ in response.context["selected"]] == [1, 3]
    assert "answer 1" in html and "answer 3" in html and "answer 2" not in html
    assert 'value="Yes, remove 2 examples"' in html
    assert _present(qa) == [1, 2, 3]


@pytest.mark.django_db
def test_confirming_removes_them_as_a_new_version(admin_client, qa):
    first, _, third = _examples(qa)

    response = admin_client.post(
        _remove_url(qa), {"ids": [str(first.pk), str(third.pk)], "note": "ambiguous questions"}
    )

    assert response.status_code == 302 and response["Location"] == f"{CHANGELIST}{qa.pk}/change/"
    assert _present(qa) == [2]
    version = DatasetVersion.objects.get(dataset=qa, number=2)
    assert (version.removed_count, version.example_count, version.note) == (2, 1, "ambiguous questions")
    assert version.created_by.username == "admin"
    page = admin_client.get(response["Location"]).content.decode()
    assert "Version 2: 2 example(s) removed." in page
    assert "answer 2" in page and "answer 1" not in page


@pytest.mark.django_db
def test_nothing_checked_is_a_400_saying_so(admin_client, qa):
    shown = admin_client.get(_remove_url(qa))
    posted = admin_client.post(_remove_url(qa), {"note": "x"})

    for response in (shown, posted):
        assert response.status_code == 400
        assert "Select the examples to remove" in response.content.decode()
    assert DatasetVersion.objects.filter(dataset=qa).count() == 1


@pytest.mark.django_db
def test_an_example_no_longer_in_the_latest_version_is_named(admin_client, qa):
    first, second, _ = _examples(qa)
    admin_client.post(_remove_url(qa), {"ids": [str(first.pk)]})

    response = admin_client.post(_remove_url(qa), {"ids": [str(second.pk), str(first.pk), str(uuid.uuid4())]})

    html = response.content.decode()
    assert response.status_code == 400
    assert "ids.1: No such example in the dataset&#x27;s latest version." in html
    assert "ids.2: No such example" in html
    assert _present(qa) == [2, 3]  # nothing of this submission removed
    assert DatasetVersion.objects.filter(dataset=qa).count() == 2


@pytest.mark.django_db
@pytest.mark.parametrize(("role", "status"), [(Role.VIEWER, 403), (Role.EDITOR, 302)])
def test_removing_needs_the_editor_role(client, alice, qa, role, status):
    staff = UserFactory(username="sam", is_staff=True)
    staff.user_permissions.add(
        *Permission.objects.filter(content_type__app_label="evals", codename__in=["view_dataset", "change_dataset"])
    )
    project_services.member_add(project=alice.personal_project, user=staff, role=role, acting_role=None)
    client.force_login(staff)

    response = client.post(_remove_url(qa), {"ids": [str(_examples(qa)[0].pk)]})

    assert response.status_code == status
    if status == 403:
        assert "needs editor" in response.content.decode()
        assert _present(qa) == [1, 2, 3]
    else:
        assert _present(qa) == [2, 3]


@pytest.mark.django_db
def test_a_viewer_of_datasets_sees_no_boxes_and_cannot_open_the_page(client, alice, qa):
    staff = UserFactory(username="vic", is_staff=True)
    staff.user_permissions.add(*Permission.objects.filter(content_type__app_label="evals", codename="view_dataset"))
    client.force_login(staff)

    html = client.get(f"{CHANGELIST}{qa.pk}/change/").content.decode()

    assert 'name="ids"' not in html and "remove-examples-form" not in html
    assert client.get(_remove_url(qa, _examples(qa)[0])).status_code == 404


@pytest.mark.django_db(transaction=True)
def test_staff_remove_examples_in_the_browser(admin_browser):
    qa = _qa(admin_browser.user.personal_project)
    first, second, _ = _examples(qa)
    page = admin_browser.page

    admin_browser.go(f"{CHANGELIST}{qa.pk}/change/")
    page.check(f"input.remove-example[value='{first.pk}']")
    page.check(f"input.remove-example[value='{second.pk}']")
    admin_browser.shot("dataset-examples-checked")
    admin_browser.follow("#remove-examples")
    assert "Version 2 of qa" in admin_browser.text()
    assert page.locator("#remove-examples-list tr.remove-example-row").count() == 2
    page.fill("#id_note", "duplicates")
    admin_browser.shot("remove-confirmation")

    admin_browser.follow("#remove-submit")
    assert "Version 2: 2 example(s) removed." in admin_browser.text()
    assert page.locator("input.remove-example").count() == 1
    assert "answer 3" in admin_browser.text() and "answer 1" not in admin_browser.text()
    assert _present(qa) == [3]
    assert DatasetVersion.objects.get(dataset=qa, number=2).note == "duplicates"
    admin_browser.shot("dataset-after-removal")

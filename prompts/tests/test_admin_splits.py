"""A label's A/B split on the prompt's admin page: shown with its labels, set, changed and cleared on a
page of its own through label_split_set, its refusals at the fields they name, with the role a move
of the label needs. In a real browser too (llmops/tests/browser.py)."""

import pytest
from django.contrib.auth.models import Permission

from accounts import project_services
from accounts.models import Role
from accounts.tests.factories import UserFactory
from prompts import services
from prompts.models import LabelMove, PromptLabel
from prompts.splits import MAX_SPLIT_ARMS
from prompts.tests.factories import prompt_with_version


def _prompt(owner):
    """Versions 1 to 3; staging and production (protected) at v1."""
    prompt, _ = prompt_with_version(owner, template="Hello {{ name }}.", variables={"name": {"type": "string"}})
    for template in ("Hi there, {{ name }}!", "Good day, {{ name }}."):
        services.prompt_version_create(prompt=prompt, created_by=None, template=template)
    for label in ("staging", "production"):
        services.label_move(prompt=prompt, label=label, version_number=1, moved_by=None)
    return prompt


@pytest.fixture
def prompt(alice):
    return _prompt(alice)


def _url(prompt, label=None):
    url = f"/admin/prompts/prompt/{prompt.pk}/labels/split/"
    return f"{url}?label={label}" if label else url


def _form(label, *arms, version=1, clear=False):
    """The split page's POST: the label, its main version and MAX_SPLIT_ARMS rows (blank past `arms`)."""
    data = {
        "label": label,
        "version": str(version),
        "arms-TOTAL_FORMS": str(MAX_SPLIT_ARMS),
        "arms-INITIAL_FORMS": str(MAX_SPLIT_ARMS),
        "arms-MIN_NUM_FORMS": "0",
        "arms-MAX_NUM_FORMS": "1000",
    }
    for index in range(MAX_SPLIT_ARMS):
        number, weight = arms[index] if index < len(arms) else ("", "")
        data[f"arms-{index}-version"] = str(number)
        data[f"arms-{index}-weight"] = str(weight)
    if clear:
        data["clear"] = "Clear the split"
    return data


def _split(prompt, label="staging"):
    return PromptLabel.objects.get(prompt=prompt, name=label).split


def _staff(prompt, role):
    staff = UserFactory(username=f"staff-{role or 'none'}", is_staff=True, is_superuser=False)
    staff.user_permissions.add(*Permission.objects.filter(content_type__app_label="prompts"))
    if role:
        project_services.member_add(project=prompt.project, user=staff, role=role, acting_role=None)
    return staff


@pytest.mark.django_db
def test_the_page_shows_the_label_and_a_row_per_arm(admin_client, prompt):
    response = admin_client.get(_url(prompt, "staging"))

    page = response.content.decode()
    assert response.status_code == 200
    assert "<strong>staging</strong> points at v1" in page and "with no split" in page
    arms = response.context["editor"].arms
    assert len(arms.forms) == MAX_SPLIT_ARMS
    assert [form.initial.get("version") for form in arms.forms] == [1, None, None, None]
    assert page.count('<option value="3">v3</option>') == MAX_SPLIT_ARMS + 1  # the main version's select too


@pytest.mark.django_db
def test_saving_sets_the_split_through_the_service_and_the_labels_show_it(admin_client, prompt):
    response = admin_client.post(_url(prompt), _form("staging", (1, 70), (3, 30)))

    assert response.status_code == 302 and response["Location"].endswith("/change/#prompt-labels")
    assert _split(prompt) == [{"version": 1, "weight": 70}, {"version": 3, "weight": 30}]
    move = LabelMove.objects.filter(prompt=prompt, label="staging").first()
    assert (move.to_version.number, move.split, move.moved_by.username) == (1, _split(prompt), "admin")
    page = admin_client.get(response["Location"]).content.decode()
    assert "Staging split: v1 70%, v3 30%." in page
    assert '<span class="split-arm" data-version="3" data-weight="30">v3 30%</span>' in page
    assert "Change the split" in page
    listed = admin_client.get("/admin/prompts/promptlabel/").content.decode()
    assert "v1 70%, v3 30%" in listed


@pytest.mark.django_db
def test_changing_then_clearing_the_split(admin_client, prompt):
    services.label_split_set(
        prompt=prompt,
        label="staging",
        version_number=1,
        split=[{"version": 1, "weight": 50}, {"version": 2, "weight": 50}],
        moved_by=None,
    )
    shown = admin_client.get(_url(prompt, "staging"))
    assert [form.initial for form in shown.context["editor"].arms.forms][:2] == [
        {"version": 1, "weight": 50},
        {"version": 2, "weight": 50},
    ]

    changed = admin_client.post(_url(prompt), _form("staging", (2, 60), (3, 40), version=2))
    assert changed.status_code == 302
    label = PromptLabel.objects.get(prompt=prompt, name="staging")
    assert (label.version.number, label.split) == (2, [{"version": 2, "weight": 60}, {"version": 3, "weight": 40}])

    cleared = admin_client.post(_url(prompt), _form("staging", (2, 60), (3, 40), version=2, clear=True), follow=True)
    assert _split(prompt) == []
    assert "Staging split cleared: all its runs go to v2." in cleared.content.decode()


@pytest.mark.django_db
def test_a_bad_weight_total_shows_at_the_arms_and_saves_nothing(admin_client, prompt):
    response = admin_client.post(_url(prompt), _form("staging", (1, 50), (2, 40)))

    assert response.status_code == 400
    editor = response.context["editor"]
    assert editor.split_errors == ["The weights must sum to 100 (they are percentages)."]
    page = response.content.decode()
    assert '<ul class="errorlist nonfield" id="split-errors"><li>The weights must sum to 100' in page
    assert 'value="40"' in page  # what was typed is kept
    assert _split(prompt) == []


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("arms", "row", "field", "message"),
    [
        (((1, 50), (1, 50)), 1, "version", "Named by another arm already"),
        (((1, 50), (9, 50)), 1, "version", "No such version of this prompt."),
        (((1, 50), (2, 100)), 1, "weight", "Must be an integer from 1 to 99."),
        (((1, 50), (2, "")), 1, "weight", "Must be an integer from 1 to 99."),
        # A blank row in between is no arm: the service's arm 1 is the third row.
        (((1, 50), ("", ""), (1, 50)), 2, "version", "Named by another arm already"),
    ],
)
def test_an_arm_refused_shows_at_its_row(admin_client, prompt, arms, row, field, message):
    response = admin_client.post(_url(prompt), _form("staging", *arms))

    assert response.status_code == 400
    errors = response.context["editor"].arms.forms[row].errors
    assert message in " ".join(errors[field])
    assert _split(prompt) == []


@pytest.mark.django_db
def test_a_split_without_the_main_version_names_the_split(admin_client, prompt):
    response = admin_client.post(_url(prompt), _form("staging", (2, 50), (3, 50), version=1))

    assert response.status_code == 400
    assert response.context["editor"].split_errors == ["Must include the label's version (1) as an arm."]


@pytest.mark.django_db
def test_an_unknown_label_is_a_404(admin_client, prompt):
    assert admin_client.get(_url(prompt, "canary")).status_code == 404
    assert admin_client.post(_url(prompt), _form("canary", (1, 50), (2, 50))).status_code == 404


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("role", "label", "status", "message"),
    [
        (Role.VIEWER, "staging", 403, "needs editor"),
        (None, "staging", 403, "not a member"),
        (Role.EDITOR, "production", 403, "needs admin"),
        (Role.EDITOR, "staging", 302, None),
        (Role.ADMIN, "production", 302, None),
    ],
)
def test_a_split_needs_the_role_a_move_of_the_label_needs(client, prompt, role, label, status, message):
    client.force_login(_staff(prompt, role))

    response = client.post(_url(prompt), _form(label, (1, 90), (2, 10)))

    assert response.status_code == status
    assert (_split(prompt, label) != []) == (status == 302)
    if message:
        assert message in response.content.decode()


@pytest.mark.django_db(transaction=True)
def test_staff_split_a_label_in_the_browser(admin_browser):
    prompt = _prompt(admin_browser.user)
    page = admin_browser.page

    admin_browser.go(f"/admin/prompts/prompt/{prompt.pk}/change/")
    staging = page.locator(".label-row[data-label=staging]")
    assert staging.locator(".label-split").inner_text() == "-"
    admin_browser.follow(".label-row[data-label=staging] .split-link")
    assert "staging points at v1" in admin_browser.text()
    admin_browser.shot("split-page")

    page.select_option("select[name=arms-1-version]", "3")
    page.fill("input[name=arms-0-weight]", "80")
    page.fill("input[name=arms-1-weight]", "30")
    admin_browser.follow("#split-save")
    assert page.inner_text("#split-errors") == "The weights must sum to 100 (they are percentages)."
    assert page.input_value("input[name=arms-1-weight]") == "30"
    admin_browser.shot("split-weights-refused")

    page.fill("input[name=arms-1-weight]", "20")
    admin_browser.follow("#split-save")
    assert "Staging split: v1 80%, v3 20%." in admin_browser.text()
    arms = staging.locator(".split-arm")
    assert [(arms.nth(i).get_attribute("data-version"), arms.nth(i).get_attribute("data-weight")) for i in (0, 1)] == [
        ("1", "80"),
        ("3", "20"),
    ]
    assert "(split v1 80%, v3 20%)" in page.inner_text("#label-history")
    admin_browser.shot("labels-with-split")

    admin_browser.follow(".label-row[data-label=staging] .split-link")
    admin_browser.follow("#split-clear")
    assert "Staging split cleared: all its runs go to v1." in admin_browser.text()
    assert _split(prompt) == []
    admin_browser.shot("split-cleared")

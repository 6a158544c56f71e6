"""The prompts admin: versions inline and read-only; new versions and label moves go through the services."""

from prompts import services
from prompts.models import LabelMove, Prompt, PromptLabel, PromptVersion
from prompts.tests.factories import prompt_with_version

VERSION_ADD_URL = "/admin/prompts/promptversion/add/"


def _version_form(prompt, **overrides):
    form = {
        "prompt": str(prompt.pk),
        "kind": "text",
        "template": "Admin says hi to {{ name }}.",
        "messages": "[]",
        "variables": '{"name": {"type": "string"}}',
        "model": "local/smollm2",
        "params": '{"max_tokens": 16}',
        "commit_message": "from the admin",
    }
    form.update(overrides)
    return form


def test_prompt_change_page_shows_versions_inline(admin_client, alice):
    prompt, _ = prompt_with_version(alice, template="First {{ name }} template.")
    services.prompt_version_create(
        prompt=prompt,
        created_by=alice,
        model="local/smollm2",
        template="Second {{ name }} template.",
        variables={"name": {}},
    )

    response = admin_client.get(f"/admin/prompts/prompt/{prompt.pk}/change/")

    assert response.status_code == 200
    page = response.content.decode()
    assert 'id="versions-group"' in page
    assert "First {{ name }} template." in page
    assert "Second {{ name }} template." in page
    assert page.index("Second {{ name }}") < page.index("First {{ name }}")  # newest first


def test_saving_a_prompt_in_the_admin_leaves_its_versions_alone(admin_client, alice):
    prompt, version = prompt_with_version(alice)
    services.label_move(prompt=prompt, label="production", version_number=1, moved_by=alice)
    before = list(PromptVersion.objects.filter(prompt=prompt).values())

    response = admin_client.post(
        f"/admin/prompts/prompt/{prompt.pk}/change/",
        {
            "project": str(alice.personal_project.pk),
            "name": prompt.name,
            "description": "Edited in the admin.",
            "archived_at_0": "",
            "archived_at_1": "",
            "labels-TOTAL_FORMS": "1",
            "labels-INITIAL_FORMS": "1",
            "labels-0-id": str(PromptLabel.objects.get(prompt=prompt).pk),
            "labels-0-prompt": str(prompt.pk),
            "versions-TOTAL_FORMS": "1",
            "versions-INITIAL_FORMS": "1",
            "versions-0-id": str(version.pk),
            "versions-0-prompt": str(prompt.pk),
        },
    )

    assert response.status_code == 302, response.content.decode()
    assert Prompt.objects.get(pk=prompt.pk).description == "Edited in the admin."
    assert list(PromptVersion.objects.filter(prompt=prompt).values()) == before


def test_adding_a_version_in_the_admin_takes_the_next_number(admin_client, admin_user, alice):
    prompt, _ = prompt_with_version(alice)

    response = admin_client.post(VERSION_ADD_URL, _version_form(prompt))

    assert response.status_code == 302, response.content.decode()
    version = PromptVersion.objects.get(prompt=prompt, number=2)
    assert version.template == "Admin says hi to {{ name }}."
    assert version.variables == {"name": {"type": "string", "required": True}}
    assert version.params == {"max_tokens": 16}
    assert version.created_by == admin_user
    assert Prompt.objects.get(pk=prompt.pk).latest_version_number == 2


def test_adding_a_chat_version_in_the_admin(admin_client, alice):
    prompt, _ = prompt_with_version(alice)

    response = admin_client.post(
        VERSION_ADD_URL,
        _version_form(prompt, kind="chat", template="", messages='[{"role": "user", "content": "Hi {{ name }}"}]'),
    )

    assert response.status_code == 302, response.content.decode()
    version = PromptVersion.objects.get(prompt=prompt, number=2)
    assert version.kind == "chat"
    assert version.messages == [{"role": "user", "content": "Hi {{ name }}"}]


def test_an_invalid_version_in_the_admin_is_a_form_error_not_a_crash(admin_client, alice):
    prompt, _ = prompt_with_version(alice)

    response = admin_client.post(VERSION_ADD_URL, _version_form(prompt, template="Hi {{ stranger }}"))

    assert response.status_code == 200
    assert "stranger" in response.content.decode()
    assert response.context["adminform"].form.errors
    assert PromptVersion.objects.filter(prompt=prompt).count() == 1
    assert Prompt.objects.get(pk=prompt.pk).latest_version_number == 1


def test_a_version_for_an_archived_prompt_in_the_admin_is_a_form_error(admin_client, alice):
    prompt, _ = prompt_with_version(alice)
    services.prompt_archive(prompt=prompt)

    response = admin_client.post(VERSION_ADD_URL, _version_form(prompt))

    assert response.status_code == 200
    assert response.context["adminform"].form.errors
    assert PromptVersion.objects.filter(prompt=prompt).count() == 1


def test_version_change_page_is_read_only(admin_client, alice):
    _, version = prompt_with_version(alice)

    page = admin_client.get(f"/admin/prompts/promptversion/{version.pk}/change/")
    posted = admin_client.post(f"/admin/prompts/promptversion/{version.pk}/change/", {"template": "Changed"})

    assert page.status_code == 200
    assert 'name="template"' not in page.content.decode()
    assert posted.status_code == 302
    assert PromptVersion.objects.get(pk=version.pk).template == "Say hello to {{ name }}."
    assert admin_client.get(f"/admin/prompts/promptversion/{version.pk}/delete/").status_code == 403


def test_moving_a_label_in_the_admin_records_the_move(admin_client, admin_user, alice):
    prompt, v1 = prompt_with_version(alice)
    v2 = services.prompt_version_create(
        prompt=prompt, created_by=alice, model="local/smollm2", template="v2 {{ name }}", variables={"name": {}}
    )
    label = services.label_move(prompt=prompt, label="production", version_number=1, moved_by=alice)

    response = admin_client.post(f"/admin/prompts/promptlabel/{label.pk}/change/", {"version": str(v2.pk)})

    assert response.status_code == 302, response.content.decode()
    assert PromptLabel.objects.get(pk=label.pk).version == v2
    move = LabelMove.objects.filter(prompt=prompt).latest("created_at")
    assert (move.from_version, move.to_version, move.moved_by) == (v1, v2, admin_user)


def test_an_invalid_chat_message_in_the_admin_is_a_form_error(admin_client, alice):
    prompt, _ = prompt_with_version(alice)

    response = admin_client.post(
        VERSION_ADD_URL, _version_form(prompt, kind="chat", template="", messages='[{"speaker": "me"}]')
    )

    assert response.status_code == 200
    assert "messages.0" in str(response.context["adminform"].form.errors)
    assert PromptVersion.objects.filter(prompt=prompt).count() == 1


def test_adding_a_label_in_the_admin_goes_through_the_service(admin_client, admin_user, alice):
    prompt, v1 = prompt_with_version(alice)

    response = admin_client.post(
        "/admin/prompts/promptlabel/add/", {"prompt": str(prompt.pk), "name": "staging", "version": str(v1.pk)}
    )

    assert response.status_code == 302, response.content.decode()
    assert PromptLabel.objects.get(prompt=prompt, name="staging").version == v1
    move = LabelMove.objects.get(prompt=prompt)
    assert (move.label, move.from_version, move.to_version, move.moved_by) == ("staging", None, v1, admin_user)


def test_the_admin_refuses_latest_and_other_prompts_versions_as_labels(admin_client, alice):
    prompt, _ = prompt_with_version(alice, name="one")
    _, other_v1 = prompt_with_version(alice, name="two")

    latest = admin_client.post(
        "/admin/prompts/promptlabel/add/", {"prompt": str(prompt.pk), "name": "latest", "version": str(other_v1.pk)}
    )

    assert latest.status_code == 200
    errors = latest.context["adminform"].form.errors
    assert set(errors) == {"name", "version"}
    assert not PromptLabel.objects.exists()
    assert not LabelMove.objects.exists()

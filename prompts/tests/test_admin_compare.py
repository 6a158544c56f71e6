"""Comparing two versions of a prompt: the diff module and the admin's compare page."""

import pytest

from accounts.tests.factories import UserFactory
from prompts import services
from prompts.diff import content_lines, version_diff
from prompts.tests.factories import prompt_with_version

pytestmark = pytest.mark.django_db


def _compare_url(prompt, query=""):
    return f"/admin/prompts/prompt/{prompt.pk}/compare/{query}"


@pytest.fixture
def owner():
    return UserFactory.create()


@pytest.fixture
def two_versions(owner):
    prompt, v1 = prompt_with_version(
        owner,
        name="summarize",
        template="Summarize {{ text }}.\nKeep it short.",
        variables={"text": {"type": "string", "required": True}},
        model="local/smollm2",
        params={"max_tokens": 32, "temperature": 0.2},
    )
    v2 = services.prompt_version_create(
        prompt=prompt,
        created_by=owner,
        template="Summarize {{ text }} in {{ words }} words.\nKeep it short.",
        variables={"text": {"type": "string", "required": True}, "words": {"type": "integer", "default": 5}},
        model="hf/Qwen/Qwen2.5-7B-Instruct",
        params={"max_tokens": 64, "temperature": 0.2},
        commit_message="word limit",
    )
    return prompt, v1, v2


# The diff module


def test_text_change_is_one_changed_row_with_the_differing_characters_marked(two_versions):
    _, v1, v2 = two_versions

    content = version_diff(v1, v2).section("content")

    assert content.changed
    assert content.title == "Template"
    assert [row.kind for row in content.rows] == ["changed", "equal"]
    first = content.rows[0]
    assert (first.left, first.right) == ("Summarize {{ text }}.", "Summarize {{ text }} in {{ words }} words.")
    assert (first.left_number, first.right_number) == (1, 1)
    assert "".join(segment.text for segment in first.right_segments) == first.right
    assert any(segment.changed and "words" in segment.text for segment in first.right_segments)
    assert not first.right_segments[0].changed  # "Summarize {{ text }}" is common
    lines = [line.text for line in content.unified]
    assert lines[:2] == ["--- v1", "+++ v2"]
    assert "-Summarize {{ text }}." in lines
    assert "+Summarize {{ text }} in {{ words }} words." in lines
    assert " Keep it short." in lines
    assert {line.kind for line in content.unified} == {"header", "hunk", "removed", "added", "context"}


def test_added_and_removed_lines(owner):
    prompt, v1 = prompt_with_version(owner, template="one\ntwo\nthree")
    v2 = services.prompt_version_create(
        prompt=prompt, created_by=owner, template="one\nthree\nfour", variables={}, model="local/smollm2"
    )

    rows = version_diff(v1, v2).section("content").rows

    assert [(row.kind, row.left, row.right) for row in rows] == [
        ("equal", "one", "one"),
        ("removed", "two", None),
        ("equal", "three", "three"),
        ("added", None, "four"),
    ]
    assert rows[1].right_number is None and rows[3].left_number is None


def test_chat_messages_are_compared_one_role_content_block_each(owner):
    prompt, v1 = prompt_with_version(
        owner,
        template=None,
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi {{ name }}"}],
    )
    v2 = services.prompt_version_create(
        prompt=prompt,
        created_by=owner,
        messages=[{"role": "system", "content": "Be very brief."}, {"role": "user", "content": "Hi {{ name }}"}],
        variables={"name": {"type": "string"}},
        model="local/smollm2",
    )

    assert content_lines(v1) == ["system: Be brief.", "", "user: Hi {{ name }}"]
    content = version_diff(v1, v2).section("content")
    assert content.changed
    assert content.title == "Messages"
    assert [row.kind for row in content.rows] == ["changed", "equal", "equal"]
    assert "-system: Be brief." in content.unified_text
    assert "+system: Be very brief." in content.unified_text
    assert not version_diff(v1, v2).section("model").changed


def test_switching_from_text_to_chat_names_both_kinds(owner):
    prompt, v1 = prompt_with_version(owner, template="Hello {{ name }}")
    v2 = services.prompt_version_create(
        prompt=prompt, created_by=owner, messages=[{"role": "user", "content": "Hello {{ name }}"}]
    )

    content = version_diff(v1, v2).section("content")

    assert content.changed
    assert content.title == "Content (Text → Chat messages)"
    assert "+user: Hello {{ name }}" in content.unified_text


def test_variables_params_and_model_changes(two_versions):
    _, v1, v2 = two_versions

    diff = version_diff(v1, v2)

    variables, model, params = diff.section("variables"), diff.section("model"), diff.section("params")
    assert variables.changed and model.changed and params.changed
    assert '+  "words": {' in variables.unified_text
    assert [(row.kind, row.left, row.right) for row in model.rows] == [
        ("changed", "local/smollm2", "hf/Qwen/Qwen2.5-7B-Instruct")
    ]
    assert '-  "max_tokens": 32,' in params.unified_text
    assert '+  "max_tokens": 64,' in params.unified_text
    assert ' "temperature": 0.2' in params.unified_text  # context: unchanged key


def test_identical_versions_have_no_changes(owner):
    prompt, v1 = prompt_with_version(owner, params={"temperature": 0.5, "max_tokens": 8})
    # The same content with the keys in another order: sorted JSON makes it no change.
    v2 = services.prompt_version_create(
        prompt=prompt, created_by=owner, template=v1.template, params={"max_tokens": 8, "temperature": 0.5}
    )

    diff = version_diff(v1, v2)

    assert not diff.changed
    for section in diff.sections:
        assert not section.changed
        assert section.unified == ()
        assert {row.kind for row in section.rows} == {"equal"}
    assert not version_diff(v1, v1).changed


# The compare page


def test_compare_page_shows_both_sides_highlighted_and_unified(admin_client, two_versions):
    prompt, _, _ = two_versions

    response = admin_client.get(_compare_url(prompt, "?a=1&b=2"))

    assert response.status_code == 200
    page = response.content.decode()
    assert "Compare versions of summarize" in page
    assert 'class="breadcrumbs"' in page
    assert f'href="/admin/prompts/prompt/{prompt.pk}/change/"' in page
    assert 'id="diff-content"' in page
    assert "Side by side" in page and "Unified" in page
    assert 'class="diff-changed"' in page
    assert '<span class="mark">' in page
    assert "local/smollm2" in page and "hf/Qwen/Qwen2.5-7B-Instruct" in page
    assert '<span class="u-header">--- v1</span>' in page
    assert '<span class="u-removed">-Summarize {{ text }}.</span>' in page
    assert '<span class="u-added">+Summarize {{ text }} in {{ words }} words.</span>' in page
    assert '<select name="a" id="compare-a">' in page
    assert '<option value="1" selected>v1</option>' in page
    assert '<option value="2" selected>v2: word limit</option>' in page
    assert "unchanged" not in page.split('id="compare-summary"')[1]  # every section changed


def test_compare_page_escapes_the_versions_content(admin_client, owner):
    prompt, _ = prompt_with_version(owner, template="<b>bold</b> {{ name }}")
    services.prompt_version_create(prompt=prompt, created_by=owner, template="<script>x</script> {{ name }}")

    page = admin_client.get(_compare_url(prompt)).content.decode()

    assert "<script>x</script>" not in page
    assert "&lt;script&gt;" in page


def test_compare_page_defaults_to_the_latest_against_the_one_before(admin_client, owner):
    prompt, _ = prompt_with_version(owner, template="one {{ name }}")
    for text in ("two {{ name }}", "three {{ name }}"):
        services.prompt_version_create(prompt=prompt, created_by=owner, template=text)

    response = admin_client.get(_compare_url(prompt))

    assert response.status_code == 200
    assert (response.context["a"].number, response.context["b"].number) == (2, 3)
    page = response.content.decode()
    assert "-two {{ name }}" in page and "+three {{ name }}" in page
    assert "one {{ name }}" not in page.split('id="compare-summary"')[1]

    only_b = admin_client.get(_compare_url(prompt, "?b=2"))
    assert (only_b.context["a"].number, only_b.context["b"].number) == (1, 2)
    blank = admin_client.get(_compare_url(prompt, "?a=&b="))
    assert (blank.context["a"].number, blank.context["b"].number) == (2, 3)


def test_a_prompt_with_one_version_compares_it_with_itself(admin_client, owner):
    prompt, _ = prompt_with_version(owner)

    response = admin_client.get(_compare_url(prompt))

    assert response.status_code == 200
    assert (response.context["a"].number, response.context["b"].number) == (1, 1)
    page = response.content.decode()
    assert "the same version" in page
    assert page.count('<span class="unchanged-note">unchanged</span>') == 4
    assert 'class="diff-changed"' not in page


def test_unchanged_sections_are_collapsed(admin_client, owner):
    prompt, _ = prompt_with_version(owner, template="Hi {{ name }}")
    services.prompt_version_create(prompt=prompt, created_by=owner, template="Hello {{ name }}")

    page = admin_client.get(_compare_url(prompt)).content.decode()

    assert 'class="module diff-section changed" id="diff-content"' in page
    for name in ("variables", "model", "params"):
        assert f'<details class="module diff-section unchanged" id="diff-{name}">' in page
    assert page.count('<span class="unchanged-note">unchanged</span>') == 3


@pytest.mark.parametrize("query", ["?a=9&b=1", "?a=1&b=9", "?a=0", "?b=99999999999999999999999999"])
def test_unknown_version_is_a_404(admin_client, two_versions, query):
    prompt, _, _ = two_versions

    assert admin_client.get(_compare_url(prompt, query)).status_code == 404


def test_unknown_prompt_is_a_404(admin_client):
    assert admin_client.get("/admin/prompts/prompt/00000000-0000-0000-0000-000000000000/compare/").status_code == 404
    assert admin_client.get("/admin/prompts/prompt/not-a-uuid/compare/").status_code == 404


@pytest.mark.parametrize("query", ["?a=x", "?b=1.5", "?a=-1&b=2", "?a=%C2%B2", "?b=" + "9" * 5000 + "x"])
def test_a_value_that_is_not_a_number_is_a_400_page_with_the_pickers(admin_client, two_versions, query):
    prompt, _, _ = two_versions

    response = admin_client.get(_compare_url(prompt, query))

    assert response.status_code == 400
    page = response.content.decode()
    assert 'id="compare-error"' in page
    assert "is not a version number" in page
    assert '<select name="a" id="compare-a">' in page
    assert 'id="diff-content"' not in page


def test_non_staff_user_is_sent_to_the_login_page(client, two_versions):
    prompt, _, _ = two_versions
    client.force_login(UserFactory.create(is_staff=False))

    response = client.get(_compare_url(prompt))

    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


def test_anonymous_user_is_sent_to_the_login_page(client, two_versions):
    prompt, _, _ = two_versions

    response = client.get(_compare_url(prompt))

    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


def test_staff_without_view_permission_is_refused(client, two_versions):
    prompt, _, _ = two_versions
    client.force_login(UserFactory.create(is_staff=True))

    assert client.get(_compare_url(prompt)).status_code == 403


# Links from the prompt's change page


def test_prompt_page_links_to_the_compare_page(admin_client, two_versions):
    prompt, _, _ = two_versions
    services.label_move(prompt=prompt, label="production", version_number=1, moved_by=None)

    response = admin_client.get(f"/admin/prompts/prompt/{prompt.pk}/change/")

    assert response.status_code == 200
    page = response.content.decode()
    compare = _compare_url(prompt)
    assert f'<a href="{compare}" id="compare-versions-link">Compare versions</a>' in page
    # v2: both links; v1 is production itself and has no previous version.
    assert f'<a href="{compare}?a=1&amp;b=2" class="compare-link">compare with previous</a>' in page
    assert page.count("compare with previous") == 1
    assert page.count("compare with production") == 1
    assert page.count(f'href="{compare}?a=1&amp;b=2"') == 2


def test_no_production_link_without_a_production_label(admin_client, two_versions):
    prompt, _, _ = two_versions

    page = admin_client.get(f"/admin/prompts/prompt/{prompt.pk}/change/").content.decode()

    assert "compare with previous" in page
    assert "compare with production" not in page


def test_production_link_points_from_each_other_version(admin_client, owner):
    prompt, _ = prompt_with_version(owner, template="one {{ name }}")
    for text in ("two {{ name }}", "three {{ name }}"):
        services.prompt_version_create(prompt=prompt, created_by=owner, template=text)
    services.label_move(prompt=prompt, label="production", version_number=2, moved_by=owner)

    page = admin_client.get(f"/admin/prompts/prompt/{prompt.pk}/change/").content.decode()

    compare = _compare_url(prompt)
    assert f'href="{compare}?a=2&amp;b=3" class="compare-link">compare with production' in page
    assert f'href="{compare}?a=2&amp;b=1" class="compare-link">compare with production' in page
    assert page.count("compare with production") == 2

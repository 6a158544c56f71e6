"""Admin smoke test: every registered model's changelist, add page and change page load.

Objects come from the builders below or, for other apps, from `<app>.tests.factories.<Model>Factory`.
"""

import importlib
from collections.abc import Callable
from typing import Any

import pytest
from django.contrib import admin
from django.contrib.auth.models import Group
from django.db import models
from django.test import RequestFactory
from django_dramatiq.models import Task
from dramatiq import Message

from accounts import services as account_services
from accounts.tests.factories import UserFactory
from prompts import services as prompt_services
from prompts.models import LabelMove
from prompts.tests.factories import prompt_with_version


def _prompt_version() -> Any:
    _, version = prompt_with_version(UserFactory.create(), name="smoke")
    return version


def _label(with_move: bool) -> Any:
    version = _prompt_version()
    label = prompt_services.label_move(prompt=version.prompt, label="production", version_number=1, moved_by=None)
    return LabelMove.objects.get(prompt=version.prompt) if with_move else label


def _task() -> Any:
    message: Message[Any] = Message(queue_name="default", actor_name="smoke", args=(1,), kwargs={}, options={})
    return Task.tasks.create_or_update_from_message(message, status=Task.STATUS_DONE, actor_name="smoke")


def _api_key() -> models.Model:
    user = UserFactory.create()
    return account_services.api_key_create(project=user.personal_project, created_by=user, name="smoke")[0]


BUILDERS: dict[str, Callable[[], models.Model]] = {
    "django_dramatiq.task": _task,
    "auth.group": lambda: Group.objects.create(name="editors"),
    "accounts.user": lambda: UserFactory.create(),
    "accounts.apikey": lambda: _api_key(),
    "prompts.prompt": lambda: _prompt_version().prompt,
    "prompts.promptversion": _prompt_version,
    "prompts.promptlabel": lambda: _label(with_move=False),
    "prompts.labelmove": lambda: _label(with_move=True),
}


def _build(model: type[models.Model]) -> models.Model:
    label = model._meta.label_lower
    if label in BUILDERS:
        return BUILDERS[label]()
    try:
        factories = importlib.import_module(f"{model._meta.app_label}.tests.factories")
        factory = getattr(factories, f"{model.__name__}Factory")
    except (ImportError, AttributeError):
        pytest.fail(
            f"No way to build a {label}: add {model.__name__}Factory to {model._meta.app_label}/tests/factories.py"
        )
    return factory()


REGISTERED = sorted(admin.site._registry.items(), key=lambda item: item[0]._meta.label_lower)


@pytest.mark.parametrize(("model", "model_admin"), REGISTERED, ids=[m._meta.label_lower for m, _ in REGISTERED])
def test_admin_pages_load(admin_client, admin_user, model, model_admin):
    obj = _build(model)
    base = f"/admin/{model._meta.app_label}/{model._meta.model_name}/"
    request = RequestFactory().get(base)
    request.user = admin_user

    changelist = admin_client.get(base)
    searched = admin_client.get(base, {"q": "a"})
    change = admin_client.get(f"{base}{obj.pk}/change/")

    assert changelist.status_code == 200
    assert searched.status_code == 200
    assert change.status_code == 200
    if model_admin.has_view_permission(request, obj):
        assert str(obj.pk) in changelist.content.decode()
    if model_admin.has_add_permission(request):
        assert admin_client.get(f"{base}add/").status_code == 200
    else:
        assert admin_client.get(f"{base}add/").status_code == 403


def test_every_foundation_model_is_registered():
    registered = {model._meta.label_lower for model in admin.site._registry}

    assert set(BUILDERS) <= registered


@pytest.mark.parametrize(("model", "model_admin"), REGISTERED, ids=[m._meta.label_lower for m, _ in REGISTERED])
def test_admin_pages_send_everyone_else_to_the_login_page(client, django_user_model, model, model_admin):
    """Anonymous visitors and signed-in users who are not staff never see an admin page."""
    obj = _build(model)
    base = f"/admin/{model._meta.app_label}/{model._meta.model_name}/"
    pages = [base, f"{base}add/", f"{base}{obj.pk}/change/"]
    member = django_user_model.objects.create_user(username="not-staff", password="a-member-password")

    anonymous = [client.get(page) for page in pages]
    client.force_login(member)
    signed_in = [client.get(page) for page in pages]

    for response in anonymous + signed_in:
        assert response.status_code == 302, response.status_code
        assert response["Location"].startswith("/admin/login/")

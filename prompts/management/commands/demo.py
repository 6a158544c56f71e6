"""`manage.py demo`: a demo superuser, an API key and a `greet` prompt to try the platform with.

The prompt's model is `local/smollm2`; the `local` provider is registered (at the local model's default
port) when it is missing, since a version must name a known provider.

Safe to run again (`make run` runs it on every start): the user, the prompt and the key are created once.
A key's plaintext is never stored, so printing a usable key means giving it a new secret: each run rotates
the demo key (the secret printed last time stops working; the key's id, prefix, scopes, limits and budgets
stay), so there is only ever one working demo key, the one just printed.
"""

import json
import os
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from accounts import selectors as account_selectors
from accounts import services as account_services
from accounts.models import APIKey, User
from llmops.errors import NotFound
from prompts import selectors, services
from prompts.models import Prompt
from providers import local_model
from providers.models import Provider

DEMO_USERNAME = "demo"
DEMO_KEY_NAME = "demo"
DEFAULT_PASSWORD = "demo-password-change-me"  # noqa: S105 - a documented development default, refused outside DEBUG
PROMPT_NAME = "greet"
PROMPT_LABEL = "production"
PROMPT_VERSION: dict[str, Any] = {
    "messages": [
        {"role": "system", "content": "You are a helpful, concise assistant."},
        {"role": "user", "content": "Say hello to {{ name }} in one short sentence."},
    ],
    "variables": {"name": {"type": "string", "default": "world"}},
    "model": "local/smollm2",
    "params": {"max_tokens": 48, "temperature": 0.2},
    "commit_message": "Demo prompt created by `manage.py demo`.",
}


class Command(BaseCommand):
    help = (
        "Creates (once) a demo superuser, API key and `greet` prompt, gives the key a new secret (the previous one"
        " stops working), and prints how to use them."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--password",
            default=None,
            help=f"Password of the `{DEMO_USERNAME}` user (default: $DEMO_PASSWORD, else {DEFAULT_PASSWORD!r}).",
        )
        parser.add_argument(
            "--base-url", default="http://127.0.0.1:8000", help="Where the server listens, for the printed examples."
        )

    def handle(self, *args: Any, password: str | None, base_url: str, **options: Any) -> None:
        password = password or os.environ.get("DEMO_PASSWORD") or DEFAULT_PASSWORD
        # A superuser with a password printed in the README must never appear on a real deployment.
        if password == DEFAULT_PASSWORD and not settings.DEBUG:
            raise CommandError("DEBUG is off: give the demo user a password with --password or DEMO_PASSWORD.")
        with transaction.atomic():
            user, user_created = _demo_user(password=password)
            api_key, plaintext, key_state = _demo_key(user=user)
            _local_provider()
            prompt, prompt_created = _demo_prompt(user=user)
        labels = {label.name: label.version.number for label in selectors.label_list(prompt=prompt)}
        self._print(
            base_url=base_url.rstrip("/"),
            password=password,
            plaintext=plaintext,
            prefix=api_key.prefix,
            key_state=key_state,
            user_state="created" if user_created else "already there",
            prompt_state=(
                f"{prompt.name}: v{prompt.latest_version_number}, labels "
                + (", ".join(f"{name} -> v{number}" for name, number in labels.items()) or "none")
                + (" (created)" if prompt_created else " (already there, left as it is)")
            ),
        )

    def _print(
        self,
        *,
        base_url: str,
        password: str,
        plaintext: str,
        prefix: str,
        key_state: str,
        user_state: str,
        prompt_state: str,
    ) -> None:
        auth = f"-H 'Authorization: Bearer {plaintext}'"
        json_type = "-H 'Content-Type: application/json'"
        render_body = _compact({"label": PROMPT_LABEL, "variables": {"name": "Ada"}})
        run_body = _compact({"prompt": PROMPT_NAME, "variables": {"name": "Ada"}})
        lines = [
            self.style.SUCCESS("LLMOps demo is ready."),
            "",
            f"  Admin:     {base_url}/admin/",
            f"  Username:  {DEMO_USERNAME} ({user_state}, staff superuser)",
            f"  Password:  {password}",
            f"  API key:   {plaintext}",
            f"             (prefix {prefix}; {key_state}; shown only now: only its hash is stored)",
            f"  Prompt:    {prompt_state}",
            f"  API docs:  {base_url}/api/docs/",
            "",
            "List your prompts:",
            f"  curl -s {base_url}/api/v1/prompts \\",
            f"    {auth}",
            "",
            f"Render the prompt at its {PROMPT_LABEL} label (no model call):",
            f"  curl -s -X POST {base_url}/api/v1/prompts/{PROMPT_NAME}/render \\",
            f"    {auth} \\",
            f"    {json_type} \\",
            f"    -d '{render_body}'",
            "",
            "Run it against its model and wait up to 30 s for the answer:",
            f"  curl -s -X POST '{base_url}/api/v1/runs?wait=30' \\",
            f"    {auth} \\",
            f"    {json_type} \\",
            f"    -d '{run_body}'",
            "",
        ]
        self.stdout.write("\n".join(lines))


def _compact(body: dict[str, Any]) -> str:
    return json.dumps(body, separators=(",", ":"))


def _demo_user(*, password: str) -> tuple[User, bool]:
    """The demo user, created or repaired so it is an active staff superuser with `password`."""
    user = User.objects.filter(username=DEMO_USERNAME).first()
    if user is None:
        user = User.objects.create_superuser(username=DEMO_USERNAME, email="demo@example.com", password=password)
        return user, True
    changed = [flag for flag in ("is_active", "is_staff", "is_superuser") if not getattr(user, flag)]
    for flag in changed:
        setattr(user, flag, True)
    if not user.check_password(password):
        user.set_password(password)
        changed.append("password")
    if changed:
        user.save(update_fields=[*changed, "updated_at"])
    return user, False


def _demo_key(*, user: User) -> tuple[APIKey, str, str]:
    """The demo key with a new secret, and what happened to it. The newest active demo key is rotated
    (its old secret stops at once); older active ones, left by the versions of this command that made a
    key on every run, are revoked; a key is created when none is active."""
    active = [
        key
        for key in account_selectors.api_key_list(project=user.personal_project).filter(
            name=DEMO_KEY_NAME, created_by=user
        )
        if key.status == "active"
    ]
    if not active:
        api_key, plaintext = account_services.api_key_create(
            project=user.personal_project, created_by=user, name=DEMO_KEY_NAME
        )
        return api_key, plaintext, "created"
    for older in active[1:]:
        account_services.api_key_revoke(api_key=older)
    api_key, plaintext = account_services.api_key_rotate(api_key=active[0])
    state = "a new secret this run: the one printed before no longer works"
    if active[1:]:
        state += f"; {len(active) - 1} older demo key(s) revoked"
    return api_key, plaintext, state


def _local_provider() -> None:
    """The `local` provider the demo prompt names, registered at the local model's default address when
    missing (`local_model serve`, which `make run` starts next, points it at the port it serves on)."""
    if not Provider.objects.filter(name=local_model.LOCAL_PROVIDER_NAME).exists():
        local_model.ensure_local_provider(local_model.DEFAULT_PORT)


def _demo_prompt(*, user: User) -> tuple[Prompt, bool]:
    """The demo prompt; created with its label only when missing, so later edits and label moves stay."""
    try:
        return selectors.prompt_get(project=user.personal_project, ref=PROMPT_NAME), False
    except NotFound:
        pass
    prompt, version = services.prompt_create(
        project=user.personal_project,
        created_by=user,
        name=PROMPT_NAME,
        description="Greets someone by name.",
        **PROMPT_VERSION,
    )
    services.label_move(prompt=prompt, label=PROMPT_LABEL, version_number=version.number, moved_by=user)
    return prompt, True

"""Writes for prompts, their versions and labels."""

from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.models import Project, Role, User
from accounts.services import role_check
from llmops.errors import Conflict, FieldErrors, ValidationFailed
from prompts import rendering
from prompts.label_gates import label_gates_check
from prompts.models import LATEST_LABEL, LabelMove, Prompt, PromptLabel, PromptVersion
from prompts.splits import MAX_SPLIT_ARMS, SPLIT_TOTAL
from providers.checks import MODEL_PATTERN, model_shape_check, provider_check
from webhooks.models import WebhookEvent
from webhooks.services import webhook_emit

# name -> (types, min, max); None bounds are open.
_PARAMS: dict[str, tuple[tuple[type, ...], float | None, float | None]] = {
    "temperature": ((int, float), 0, 2),
    "top_p": ((int, float), 0, 1),
    "max_tokens": ((int,), 1, 1_000_000),
    "frequency_penalty": ((int, float), -2, 2),
    "presence_penalty": ((int, float), -2, 2),
    "seed": ((int,), None, None),
    "stop": ((list, str), None, None),
}
# Parameters of the run itself, never sent to the provider (providers.clients.CHAT_PARAMS is what is
# sent): `fallbacks`, the models tried in turn when the run's model is rate limited or keeps failing
# (runs.services.after_failure), and `cache`, the response cache (runs.response_cache).
MAX_FALLBACKS = 3
CACHE_TTL_MAX_S = 86_400
RUN_PARAMS = ("fallbacks", "cache")
_FALLBACKS_HELP = f"Must be a list of at most {MAX_FALLBACKS} models, each '<provider>/<model id>'."
_CACHE_HELP = f'Must be an object {{"ttl": seconds}}, the seconds an integer from 1 to {CACHE_TTL_MAX_S}.'


def _fallbacks_problems(value: Any, key: str) -> FieldErrors:
    """Shape only: that each fallback's provider exists and serves it is checked when a run is created
    (runs.services.run_create), as for the version's own model."""
    if not isinstance(value, list) or len(value) > MAX_FALLBACKS:
        return {key: [_FALLBACKS_HELP]}
    errors: FieldErrors = {}
    for index, model in enumerate(value):
        try:
            model_shape_check(model=model, field=f"{key}.{index}")
        except ValidationFailed as exc:
            errors.update(exc.fields)
    return errors


def _cache_problems(value: Any, key: str) -> FieldErrors:
    if not isinstance(value, dict):
        return {key: [_CACHE_HELP]}
    errors: FieldErrors = {f"{key}.{name}": ["Unknown. Known: ttl."] for name in value if name != "ttl"}
    ttl = value.get("ttl")
    if "ttl" not in value:
        errors[f"{key}.ttl"] = ["Required: the seconds a cached answer may be reused."]
    elif isinstance(ttl, bool) or not isinstance(ttl, int):
        errors[f"{key}.ttl"] = ["Must be of type int."]
    elif not (1 <= ttl <= CACHE_TTL_MAX_S):
        errors[f"{key}.ttl"] = [f"Must be between 1 and {CACHE_TTL_MAX_S}."]
    return errors


def validate_params(params: Any, *, field: str = "params") -> dict[str, Any]:
    """Model parameters: only known names, each of the right type and range; and the run's own
    (RUN_PARAMS: `fallbacks`, `cache`), which are never sent to the provider."""
    if not isinstance(params, dict):
        raise ValidationFailed("params must be an object.", fields={field: ["Must be an object."]})
    errors: FieldErrors = {}
    for name, value in params.items():
        key = f"{field}.{name}"
        if name == "fallbacks":
            errors.update(_fallbacks_problems(value, key))
            continue
        if name == "cache":
            errors.update(_cache_problems(value, key))
            continue
        if name not in _PARAMS:
            errors[key] = [f"Unknown parameter. Known: {', '.join((*_PARAMS, *RUN_PARAMS))}."]
            continue
        types, low, high = _PARAMS[name]
        if isinstance(value, bool) or not isinstance(value, types):
            errors[key] = [f"Must be of type {' or '.join(t.__name__ for t in types)}."]
        elif low is not None and high is not None and not (low <= value <= high):  # type: ignore[operator]
            errors[key] = [f"Must be between {low} and {high}."]
        elif (
            name == "stop"
            and isinstance(value, list)
            and not (len(value) <= 4 and all(isinstance(s, str) and s for s in value))
        ):
            errors[key] = ["Must be a string or a list of at most 4 non-empty strings."]
    if errors:
        raise ValidationFailed("Invalid model parameters.", fields=errors)
    return params


def params_json_schema() -> dict[str, Any]:
    """What validate_params takes, as JSON Schema (the API's schema states it)."""
    properties: dict[str, Any] = {}
    for name, (types, low, high) in _PARAMS.items():
        if name == "stop":
            properties[name] = {
                "oneOf": [
                    {"type": "string"},
                    {"type": "array", "maxItems": 4, "items": {"type": "string", "minLength": 1}},
                ]
            }
            continue
        bounds = {key: value for key, value in (("minimum", low), ("maximum", high)) if value is not None}
        properties[name] = {"type": "integer" if types == (int,) else "number", **bounds}
    properties["fallbacks"] = {
        "type": "array",
        "maxItems": MAX_FALLBACKS,
        "items": {"type": "string", "pattern": MODEL_PATTERN},
        "description": (
            "Models tried in turn, `<provider>/<model id>`, when the run's model answers 429 or keeps "
            "failing with a retryable error; never sent to the provider."
        ),
    }
    properties["cache"] = {
        "type": "object",
        "properties": {"ttl": {"type": "integer", "minimum": 1, "maximum": CACHE_TTL_MAX_S}},
        "required": ["ttl"],
        "additionalProperties": False,
        "description": (
            "The response cache: an identical request (same models, messages and parameters) with "
            "`temperature` 0 or a `seed` is answered from an answer at most `ttl` seconds old; never sent "
            "to the provider."
        ),
    }
    return {"type": "object", "properties": properties, "additionalProperties": False}


def validate_model(model: Any) -> str:
    """`model` when its provider exists and is enabled (see providers.checks.provider_check)."""
    provider_check(model=model, field="model")
    return str(model)


def _validated_content(
    *, template: str | None, messages: list[dict[str, Any]] | None, variables: Any
) -> tuple[str, str, list[dict[str, Any]], dict[str, Any]]:
    if (template is None) == (messages is None):
        raise ValidationFailed(
            "Give either a text template or chat messages.",
            fields={"template": ["Exactly one of template or messages is required."]},
        )
    normalized = rendering.normalize_variables(variables if variables is not None else {})
    if template is not None:
        if not template.strip():
            raise ValidationFailed("The template is empty.", fields={"template": ["Must not be empty."]})
        kind, content_template, content_messages = PromptVersion.Kind.TEXT, template, []
    else:
        assert messages is not None
        if not isinstance(messages, list) or not messages:
            raise ValidationFailed("No messages.", fields={"messages": ["At least one message is required."]})
        # The API's serializer checks this shape too; the admin's JSON field does not.
        roles = ", ".join(rendering.CHAT_ROLES)
        malformed = {
            f"messages.{index}": [f"Must be an object with a role ({roles}) and a content string."]
            for index, m in enumerate(messages)
            if not (isinstance(m, dict) and m.get("role") in rendering.CHAT_ROLES and isinstance(m.get("content"), str))
        }
        if malformed:
            raise ValidationFailed("Invalid messages.", fields=malformed)
        kind = PromptVersion.Kind.CHAT
        content_template = ""
        content_messages = [{"role": m["role"], "content": m["content"]} for m in messages]
    rendering.check_templates(kind=kind, template=content_template, messages=content_messages, variables=normalized)
    return kind, content_template, content_messages, normalized


def prompt_version_check(
    *,
    prompt: Prompt,
    model: str,
    template: str | None = None,
    messages: list[dict[str, Any]] | None = None,
    variables: dict[str, Any] | None = None,
    params: dict[str, Any] | None = None,
) -> None:
    """Raises what prompt_version_create would for these fields, writing nothing (for admin forms)."""
    _validated_content(template=template, messages=messages, variables=variables)
    validate_model(model)
    validate_params(params or {})
    if prompt.archived_at is not None:
        raise Conflict("The prompt is archived; it takes no new versions.", code="prompt_archived")


def _base_version(*, prompt: Prompt, based_on: int | None) -> PromptVersion | None:
    """The version a new one takes what it leaves out from: number `based_on`, else the latest
    (None for a prompt with no version yet)."""
    versions = PromptVersion.objects.filter(prompt=prompt)
    if based_on is None:
        return versions.order_by("-number").first()
    base = versions.filter(number=based_on).first()
    if base is None:
        raise ValidationFailed(
            f"Version {based_on} does not exist.", fields={"based_on": ["No such version of this prompt."]}
        )
    return base


def prompt_version_create(
    *,
    prompt: Prompt,
    created_by: User | None,
    template: str | None = None,
    messages: list[dict[str, Any]] | None = None,
    model: str | None = None,
    variables: dict[str, Any] | None = None,
    params: dict[str, Any] | None = None,
    based_on: int | None = None,
    commit_message: str = "",
) -> PromptVersion:
    """Appends the next numbered version. Precondition: the prompt is not archived.

    The content (`template` or `messages`) is always given: it is what a new version is. A `model`,
    `variables` or `params` left out (None) is that of the version it is based on: number `based_on`,
    else the latest. A first version has nothing to take: it needs a model, and has no variables or
    params unless given.

    The prompt row is locked while the base is read and the number taken, so concurrent creations
    get 1, 2, 3... with no gaps or duplicates, and "the latest" is the one just before this one.
    """
    with transaction.atomic():
        locked = Prompt.objects.select_for_update().get(pk=prompt.pk)
        if locked.archived_at is not None:
            raise Conflict("The prompt is archived; it takes no new versions.", code="prompt_archived")
        base = _base_version(prompt=locked, based_on=based_on)
        if model is None:
            if base is None:
                raise ValidationFailed(
                    "A first version needs a model.",
                    fields={"model": ["Required: there is no earlier version to take it from."]},
                )
            model = base.model
        if variables is None:
            variables = base.variables if base is not None else {}
        if params is None:
            params = base.params if base is not None else {}
        kind, content_template, content_messages, normalized = _validated_content(
            template=template, messages=messages, variables=variables
        )
        validate_model(model)
        validate_params(params)
        locked.latest_version_number += 1
        locked.save(update_fields=["latest_version_number", "updated_at"])
        version = PromptVersion.objects.create(
            prompt=locked,
            number=locked.latest_version_number,
            kind=kind,
            template=content_template,
            messages=content_messages,
            variables=normalized,
            model=model,
            params=params,
            commit_message=commit_message,
            created_by=created_by,
        )
        webhook_emit(
            project=locked.project,
            event=WebhookEvent.PROMPT_VERSION_CREATED,
            payload={
                "prompt": {"id": str(locked.pk), "name": locked.name},
                "version": version.number,
                "version_id": str(version.pk),
                "model": version.model,
            },
        )
    prompt.latest_version_number = version.number
    return version


def prompt_create(
    *, project: Project, created_by: User | None, name: str, description: str = "", **version_fields: Any
) -> tuple[Prompt, PromptVersion]:
    """Creates a prompt of `project` with its version 1 in one transaction."""
    with transaction.atomic():
        if Prompt.objects.filter(project=project, name=name).exists():
            raise Conflict(
                f"This project already has a prompt named {name!r}.",
                fields={"name": ["A prompt with this name exists (archived prompts keep their name)."]},
                code="name_taken",
            )
        try:
            with transaction.atomic():
                prompt = Prompt.objects.create(
                    project=project, created_by=created_by, name=name, description=description
                )
        except IntegrityError:  # lost a race with a concurrent create of the same name
            raise Conflict(
                f"This project already has a prompt named {name!r}.",
                fields={"name": ["Already exists."]},
                code="name_taken",
            ) from None
        version = prompt_version_create(prompt=prompt, created_by=created_by, **version_fields)
    return prompt, version


def prompt_update(*, prompt: Prompt, description: str) -> Prompt:
    prompt.description = description
    prompt.save(update_fields=["description", "updated_at"])
    return prompt


def prompt_archive(*, prompt: Prompt) -> Prompt:
    """Hides the prompt from lists and blocks new versions; versions and runs stay."""
    if prompt.archived_at is None:
        prompt.archived_at = timezone.now()
        prompt.save(update_fields=["archived_at", "updated_at"])
    return prompt


def split_check(*, prompt: Prompt, version_number: int, split: Any) -> list[dict[str, int]]:
    """The split as stored, or a ValidationFailed naming each bad part (`split`, `split.<i>.version`,
    `split.<i>.weight`). The rules: [] (or None) is no split; else 2 to MAX_SPLIT_ARMS (4) arms, each
    {"version": a version number of this prompt, "weight": a whole percentage}, versions distinct,
    weights positive and summing to SPLIT_TOTAL (100), and the label's own `version` one of them."""
    if split is None or split == []:
        return []
    # (One arm cannot pass: its weight is below SPLIT_TOTAL, so the sum rule refuses it.)
    if not isinstance(split, list) or len(split) > MAX_SPLIT_ARMS:
        raise ValidationFailed(
            "Invalid split.", fields={"split": [f"Must be a list of 2 to {MAX_SPLIT_ARMS} arms, or [] for none."]}
        )
    errors: FieldErrors = {}
    arms: list[dict[str, int]] = []
    for index, arm in enumerate(split):
        key = f"split.{index}"
        if not isinstance(arm, dict) or set(arm) != {"version", "weight"}:
            errors[key] = ['Must be an object {"version": <number>, "weight": <percent>}.']
            continue
        version, weight = arm["version"], arm["weight"]
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            errors[f"{key}.version"] = ["Must be a version number (an integer of at least 1)."]
        if isinstance(weight, bool) or not isinstance(weight, int) or not (1 <= weight < SPLIT_TOTAL):
            errors[f"{key}.weight"] = [f"Must be an integer from 1 to {SPLIT_TOTAL - 1}."]
        arms.append({"version": version, "weight": weight})
    if errors:
        raise ValidationFailed("Invalid split.", fields=errors)
    numbers = [arm["version"] for arm in arms]
    existing = set(PromptVersion.objects.filter(prompt=prompt, number__in=numbers).values_list("number", flat=True))
    for index, number in enumerate(numbers):
        if number not in existing:
            errors[f"split.{index}.version"] = ["No such version of this prompt."]
        elif number in numbers[:index]:
            errors[f"split.{index}.version"] = ["Named by another arm already: each version once."]
    if errors:
        raise ValidationFailed("Invalid split.", fields=errors)
    if sum(arm["weight"] for arm in arms) != SPLIT_TOTAL:
        raise ValidationFailed(
            f"The split's weights must sum to {SPLIT_TOTAL}.",
            fields={"split": [f"The weights must sum to {SPLIT_TOTAL} (they are percentages)."]},
        )
    if version_number not in numbers:
        raise ValidationFailed(
            "The label's version must be an arm of its split.",
            fields={"split": [f"Must include the label's version ({version_number}) as an arm."]},
        )
    return arms


def label_move(
    *, prompt: Prompt, label: str, version_number: int, moved_by: User | None, role: str | None = None
) -> PromptLabel:
    """Points `label` at a version of the same prompt and records the move (a rollback is a move too).
    All of the label's traffic goes there: a split it had is cleared (label_split_set with no split).

    A label the project protects (`Project.protected_labels`) moves only for an admin: `role` is the
    mover's role in the project (None: staff tooling, which may)."""
    return label_split_set(
        prompt=prompt, label=label, version_number=version_number, split=[], moved_by=moved_by, role=role
    )


def label_split_set(
    *,
    prompt: Prompt,
    label: str,
    version_number: int,
    split: list[dict[str, Any]] | None,
    moved_by: User | None,
    role: str | None = None,
) -> PromptLabel:
    """Points `label` at version `version_number` (its main version) and sets its A/B split: runs of the
    label go to the split's arms by weight (prompts.splits); [] or None clears it. The rules are
    split_check's. Recorded as a LabelMove with the split after it, and announced as a label move.

    Every version that starts getting traffic from the label (each arm, and the main version, unless it
    is the label's current version) must pass the label's gates (prompts.label_gates): a split cannot
    send a gated label's traffic to a version that a move could not. A protected label changes only for
    an admin, as a move (`role`: the caller's role in the project; None: staff tooling, which may).
    Nothing changes (and nothing is recorded) when the label is already exactly so."""
    if label == LATEST_LABEL:
        raise ValidationFailed(
            "'latest' always means the highest version and cannot be moved.",
            fields={"label": ["'latest' is reserved."]},
        )
    if label in prompt.project.protected_labels:
        role_check(role=role, minimum=Role.ADMIN, action=f"moving the protected label {label!r}")
    with transaction.atomic():
        locked = Prompt.objects.select_for_update().get(pk=prompt.pk)
        if locked.archived_at is not None:
            raise Conflict("The prompt is archived; its labels cannot move.", code="prompt_archived")
        version = PromptVersion.objects.filter(prompt=locked, number=version_number).first()
        if version is None:
            raise ValidationFailed(
                f"Version {version_number} does not exist.", fields={"version": ["No such version of this prompt."]}
            )
        arms = split_check(prompt=locked, version_number=version_number, split=split)
        current = PromptLabel.objects.filter(prompt=locked, name=label).first()
        if current is not None and current.version_id == version.pk and current.split == arms:
            return current  # already there: nothing moved, so no event
        # Under the prompt's lock, before anything is written: each version new to the label's traffic.
        current_number = current.version.number if current is not None else None
        targets = {version_number, *(arm["version"] for arm in arms)} - {current_number}
        for target in PromptVersion.objects.filter(prompt=locked, number__in=targets).order_by("number"):
            label_gates_check(prompt=locked, label=label, version=target)
        previous = current.version if current is not None else None
        had_split = bool(current is not None and current.split)
        if current is None:
            current = PromptLabel.objects.create(prompt=locked, name=label, version=version, split=arms)
        else:
            current.version = version
            current.split = arms
            current.save(update_fields=["version", "split", "updated_at"])
        LabelMove.objects.create(
            prompt=locked, label=label, from_version=previous, to_version=version, split=arms, moved_by=moved_by
        )
        payload: dict[str, Any] = {
            "prompt": {"id": str(locked.pk), "name": locked.name},
            "label": label,
            "from": previous.number if previous else None,
            "to": version.number,
            "moved_by": {"id": str(moved_by.pk), "username": moved_by.username} if moved_by else None,
        }
        if arms or had_split:  # only then: a plain move's payload stays what receivers know
            payload["split"] = arms
        webhook_emit(project=locked.project, event=WebhookEvent.PROMPT_LABEL_MOVED, payload=payload)
    return current


def prompt_render(*, version: PromptVersion, values: Any) -> dict[str, Any]:
    return rendering.render(
        kind=version.kind,
        template=version.template,
        messages=version.messages,
        variables=version.variables,
        values=values,
    )

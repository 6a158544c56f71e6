"""Provider connections: where a model string's `<provider>` part sends its requests."""

import math
from urllib.parse import urlparse

from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models
from django.db.models import Q

from llmops.models import BaseModel


def validate_provider_base_url(value: str) -> None:
    """An http(s) URL with any host name. Django's URLValidator wants a dot in the host, which a
    compose service name (`http://vllm:8000/v1`) or a bare host name lacks."""
    try:
        parsed = urlparse(value)
        parsed.port  # noqa: B018 -- raises ValueError for a port that is not a number
    except ValueError:
        parsed = None
    if (
        parsed is None
        or parsed.scheme not in ("http", "https")
        or not parsed.hostname
        or any(char.isspace() for char in value)
    ):
        raise ValidationError("Must be an http:// or https:// URL.", code="invalid")
    if parsed.username is not None or parsed.password is not None:
        # It would be shown in the admin's list; the key belongs in the variable api_key_env names.
        raise ValidationError("Must not contain credentials; name the key's variable in api_key_env.", code="invalid")


# The message never repeats the value: someone may have pasted the key itself instead of its name.
validate_env_var_name = RegexValidator(
    r"^[A-Za-z_][A-Za-z0-9_]*$",
    message="Must be an environment variable name, e.g. OPENAI_API_KEY (the name, not the key).",
    code="invalid",
)


class Provider(BaseModel):
    """A connection to an LLM provider; the `<provider>` part of a version's model string.

    The secret is never stored: `api_key_env` names the environment variable that holds it.
    """

    class Kind(models.TextChoices):
        HF_INFERENCE = "hf-inference", "Hugging Face Inference"
        OPENAI_COMPATIBLE = "openai-compatible", "OpenAI-compatible (vLLM, TGI, llama.cpp, Ollama)"

    name = models.SlugField(max_length=50, unique=True)
    kind = models.CharField(max_length=32, choices=Kind.choices)
    base_url = models.CharField(
        max_length=500,
        blank=True,
        default="",
        validators=[validate_provider_base_url],
        help_text="Required for openai-compatible; e.g. http://127.0.0.1:8011/v1 or http://vllm:8000/v1",
    )
    api_key_env = models.CharField(
        max_length=100,
        blank=True,
        default="",
        validators=[validate_env_var_name],
        help_text="Name of the environment variable holding the API key (the name, not the key).",
    )
    timeout = models.FloatField(default=60.0, help_text="Seconds per request.")
    enabled = models.BooleanField(default=True)

    class Meta:
        # The table keeps the name it had in `runs` (moved with SeparateDatabaseAndState).
        db_table = "runs_provider"
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(condition=Q(timeout__gt=0), name="provider_timeout_positive"),
            models.CheckConstraint(
                condition=Q(kind__in=["hf-inference", "openai-compatible"]), name="provider_kind_valid"
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        # Rules across fields, or beyond a field's validators; full_clean runs them for the admin
        # form and for providers.services.provider_set alike.
        errors: dict[str, list[str]] = {}
        if self.kind == self.Kind.OPENAI_COMPATIBLE and not self.base_url:
            errors["base_url"] = ["Required for an openai-compatible provider."]
        # Not a number at all is the field's own error.
        if isinstance(self.timeout, int | float) and not (math.isfinite(self.timeout) and self.timeout > 0):
            errors["timeout"] = ["Must be a positive number of seconds."]
        if errors:
            raise ValidationError(errors)

"""Projects and their members: the API's request and response shapes."""

from typing import Any

from rest_framework import serializers

from accounts import selectors
from accounts.models import Membership, Project, Role, User
from accounts.project_services import LABEL_PATTERN, SLUG_HELP, SLUG_PATTERN
from llmops.serializers import StrictInputSerializer

_LABELS_HELP = "Label names only admins may move, e.g. production."


def _slug_field(**kwargs: Any) -> serializers.RegexField:
    # Not trimmed: the schema's pattern refuses " acme", so the server must too.
    return serializers.RegexField(
        SLUG_PATTERN, max_length=50, trim_whitespace=False, error_messages={"invalid": SLUG_HELP}, **kwargs
    )


class ProjectSerializer(serializers.ModelSerializer):
    personal = serializers.SerializerMethodField(help_text="A user's personal project; it cannot be deleted.")
    role = serializers.ChoiceField(choices=Role.choices, read_only=True, help_text="Your role in the project.")
    protected_labels = serializers.ListField(child=serializers.CharField(), read_only=True, help_text=_LABELS_HELP)

    class Meta:
        model = Project
        fields = ["id", "name", "slug", "personal", "role", "protected_labels", "created_at", "updated_at"]
        read_only_fields = fields

    def get_personal(self, project: Project) -> bool:
        return project.personal_for_id is not None


class ProjectCreateSerializer(StrictInputSerializer):
    name = serializers.CharField(max_length=100)
    slug = _slug_field(required=False, help_text=f"{SLUG_HELP} Default: made from the name.")


class ProjectUpdateSerializer(StrictInputSerializer):
    name = serializers.CharField(max_length=100, required=False)
    slug = _slug_field(required=False, help_text=f"{SLUG_HELP} Changing it needs the owner role.")
    protected_labels = serializers.ListField(
        child=serializers.RegexField(LABEL_PATTERN.pattern, max_length=50, trim_whitespace=False),
        required=False,
        help_text=f"{_LABELS_HELP} Replaces the list.",
    )


class MemberSerializer(serializers.ModelSerializer):
    username = serializers.CharField(source="user.username", read_only=True)
    email = serializers.CharField(source="user.email", read_only=True)
    joined = serializers.DateTimeField(source="created_at", read_only=True, help_text="When they became a member.")

    class Meta:
        model = Membership
        fields = ["username", "email", "role", "joined"]
        read_only_fields = fields


class MemberAddSerializer(StrictInputSerializer):
    user = serializers.CharField(max_length=254, help_text="An existing user's username or email.")
    role = serializers.ChoiceField(choices=Role.choices)

    def validate_user(self, value: str) -> User:
        """The user named `value` (a username, else an email): a 400 naming `user` when none or several."""
        try:
            return selectors.user_by_name_or_email(value)
        except selectors.UserNotFound as exc:
            raise serializers.ValidationError(str(exc)) from None


class MemberRoleSerializer(StrictInputSerializer):
    role = serializers.ChoiceField(choices=Role.choices, required=False, help_text="The new role (PATCH {}: none).")

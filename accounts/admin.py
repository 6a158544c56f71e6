from decimal import Decimal
from typing import Any, cast
from urllib.parse import urlencode

from django import forms
from django.apps import apps
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.exceptions import NotRegistered
from django.contrib.admin.utils import quote, unquote
from django.contrib.admin.widgets import ForeignKeyRawIdWidget
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Count, Q, QuerySet, Sum
from django.forms.models import BaseInlineFormSet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import URLPattern, path, reverse
from django.utils import timezone

from accounts import project_services, services
from accounts.models import APIKey, Membership, Project, Role, Scope, User, all_scopes, role_at_least
from llmops.admin import (
    RefusableForm,
    ServiceRefused,
    ServiceWritesMixin,
    ShownOnce,
    ShowSecretOnceMixin,
    service_refusal,
)
from llmops.errors import Conflict, DomainError
from llmops.money import money_str


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    list_display = ["username", "email", "is_staff", "is_active", "created_at"]
    list_filter = ["is_staff", "is_superuser", "is_active"]
    search_fields = ["username", "email", "first_name", "last_name"]
    ordering = ["username"]


def key_manager_refusal(*, user: User, project: Project, action: str = "Creating, rotating and revoking") -> str | None:
    """Why `user`, on an admin page, may not create, rotate, revoke or change (`action`, for the
    message) the keys of `project`; None when they may. A superuser may; other staff need the admin
    role in the project, as api_key_create needs of a key's creator."""
    if user.is_superuser:
        return None
    role = services.member_role(project=project, user=user)
    if role is not None and role_at_least(role, Role.ADMIN):
        return None
    return f"{action} the API keys of {project} needs the admin role in it; you are {role or 'not a member'}."


class APIKeyChangeForm(forms.ModelForm):
    scopes = forms.MultipleChoiceField(
        choices=Scope.choices, initial=all_scopes, widget=forms.CheckboxSelectMultiple, help_text="Granted scopes."
    )
    # The staff user on the page; set by APIKeyAdmin.get_form.
    acting_user: User | None = None

    class Meta:
        model = APIKey
        fields = ["name", "expires_at", "scopes"]

    def clean(self) -> dict[str, Any]:
        cleaned: dict[str, Any] = super().clean() or {}
        if not self.instance._state.adding and self.acting_user is not None:
            # Scopes and limits are what the key may do: the rule for making and revoking keys applies.
            refusal = key_manager_refusal(user=self.acting_user, project=self.instance.project, action="Changing")
            if refusal is not None:
                self.add_error(None, refusal)
        return cleaned

    def clean_scopes(self) -> list[str]:
        return services.scopes_clean(scopes=self.cleaned_data["scopes"])


class APIKeyAddForm(APIKeyChangeForm):
    class Meta(APIKeyChangeForm.Meta):
        fields = ["project", "created_by", "name", "expires_at", "scopes"]

    def clean(self) -> dict[str, Any]:
        cleaned: dict[str, Any] = super().clean() or {}
        project, user = cleaned.get("project"), cleaned.get("created_by")
        if project is not None and self.acting_user is not None:
            refusal = key_manager_refusal(user=self.acting_user, project=project)
            if refusal is not None:
                self.add_error("project", refusal)
        if project is not None and user is not None:
            # api_key_create refuses it too; here it is a field error, not a 500.
            role = services.member_role(project=project, user=user)
            if role is None or not role_at_least(role, Role.ADMIN):
                self.add_error("created_by", f"Must be an admin or owner of {project} (is {role or 'not a member'}).")
        return cleaned

    def clean_expires_at(self) -> Any:
        # api_key_create refuses a past expiry too, but a raise in save_model would be a 500.
        expires_at = self.cleaned_data.get("expires_at")
        if expires_at is not None and expires_at <= timezone.now():
            raise forms.ValidationError("Must be in the future.")
        return expires_at


class RotateForm(forms.Form):
    grace_seconds = forms.IntegerField(
        min_value=0,
        max_value=services.MAX_ROTATION_GRACE_SECONDS,
        initial=0,
        label="Grace period (seconds)",
        help_text="How long the old secrets keep working; 0 ends them at once.",
    )


@admin.register(APIKey)
class APIKeyAdmin(ShowSecretOnceMixin, admin.ModelAdmin):
    """Keys are created here (the plaintext is shown once, on the page after saving), rotated (likewise)
    and revoked, in bulk by the changelist's actions or one at a time by `<pk>/rotate/` and
    `<pk>/revoke/` (the project page's buttons); the secret hashes are never displayed. Staff who are
    not superusers do these, and change a key's name, expiry, scopes and limits, only in projects
    they are an admin of (key_manager_refusal)."""

    form = APIKeyChangeForm
    list_display = [
        "name",
        "prefix",
        "project",
        "created_by",
        "status",
        "scope_list",
        "expires_at",
        "last_used_at",
        "created_at",
    ]
    list_filter = ["is_active", "created_at", "expires_at"]
    search_fields = ["name", "prefix", "project__slug", "created_by__username", "created_by__email"]
    list_select_related = ["project", "created_by"]
    raw_id_fields = ["project", "created_by"]
    # Revocation is one-way, through the "Revoke" action or view, so is_active is not editable.
    readonly_fields = [
        "prefix",
        "project",
        "created_by",
        "status",
        "is_active",
        "revoked_at",
        "rotated_at",
        "previous_secret_expires_at",
        "last_used_at",
        "created_at",
        "updated_at",
    ]
    fields = [
        "project",
        "created_by",
        "name",
        "prefix",
        "scopes",
        "status",
        "is_active",
        "expires_at",
        "rate_limit",
        "run_rate_limit",
        "tokens_per_minute",
        "revoked_at",
        "rotated_at",
        "previous_secret_expires_at",
        "last_used_at",
        "created_at",
    ]
    actions = ["revoke_selected", "rotate_selected"]
    created_template = "admin/accounts/apikey/created.html"

    @admin.display(description="Scopes")
    def scope_list(self, obj: APIKey) -> str:
        return ", ".join(obj.scopes)

    def has_delete_permission(self, request: HttpRequest, obj: APIKey | None = None) -> bool:
        # Revoking is how a key ends (it keeps the record of whose runs it made); deleting one bypasses
        # the project's role rules, so only a superuser may.
        return bool(request.user.is_superuser) and super().has_delete_permission(request, obj)

    def get_form(self, request: HttpRequest, obj: APIKey | None = None, change: bool = False, **kwargs: Any) -> Any:
        if obj is None:
            kwargs["form"] = APIKeyAddForm
        form = super().get_form(request, obj, change=change, **kwargs)
        return type(form.__name__, (form,), {"acting_user": request.user})

    def get_fields(self, request: HttpRequest, obj: APIKey | None = None) -> Any:
        return ["project", "created_by", "name", "expires_at", "scopes"] if obj is None else self.fields

    def get_readonly_fields(self, request: HttpRequest, obj: APIKey | None = None) -> Any:
        return [] if obj is None else self.readonly_fields

    def save_model(self, request: HttpRequest, obj: APIKey, form: Any, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        api_key, plaintext = services.api_key_create(
            project=form.cleaned_data["project"],
            created_by=form.cleaned_data["created_by"],
            name=form.cleaned_data["name"],
            expires_at=form.cleaned_data["expires_at"],
            scopes=form.cleaned_data["scopes"],
        )
        self.adopt_created(request, obj, api_key, plaintext)

    def created_context(self, obj: APIKey, secret: ShownOnce) -> dict[str, Any]:
        api_key = APIKey.objects.select_related("project", "created_by").get(pk=obj.pk)
        return {
            "api_key": api_key,
            "plaintext": secret,
            "title": "API key created",
            "project_url": self._project_url(api_key),
        }

    def _project_url(self, api_key: APIKey) -> str:
        return reverse(
            "admin:accounts_project_change", args=[quote(api_key.project_id)], current_app=self.admin_site.name
        )

    def _refused(self, request: HttpRequest, api_key: APIKey) -> bool:
        """Whether the staff user may not manage this key's project's keys; says why on the page."""
        refusal = key_manager_refusal(user=cast(User, request.user), project=api_key.project)
        if refusal is not None:
            self.message_user(request, refusal, messages.ERROR)
        return refusal is not None

    def get_urls(self) -> list[URLPattern]:
        # Before the default ones: their `<path:object_id>/` would take `<pk>/revoke/` too.
        return [
            path(
                "<path:object_id>/revoke/",
                self.admin_site.admin_view(self.revoke_view),
                name="accounts_apikey_revoke",
            ),
            path(
                "<path:object_id>/rotate/",
                self.admin_site.admin_view(self.rotate_view),
                name="accounts_apikey_rotate",
            ),
            *super().get_urls(),
        ]

    def _key_for_view(self, request: HttpRequest, object_id: str) -> APIKey | HttpResponse:
        """The key of a per-object view, or the response that ends the view: another page for a
        missing key, 403 without the change permission, the project's page for a refusal."""
        api_key = self.get_object(request, unquote(object_id))
        if api_key is None:
            self.message_user(request, "No such API key: it may have been deleted.", messages.WARNING)
            return HttpResponseRedirect(reverse("admin:accounts_apikey_changelist", current_app=self.admin_site.name))
        if not self.has_change_permission(request, api_key):
            raise PermissionDenied
        if self._refused(request, api_key):
            return HttpResponseRedirect(self._project_url(api_key))
        return api_key

    def revoke_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """`<pk>/revoke/`: a GET (or a POST without `confirm`) asks first; a confirmed POST revokes
        and goes back to the key's project. The admin site's wrapper checks the CSRF token."""
        api_key = self._key_for_view(request, object_id)
        if isinstance(api_key, HttpResponse):
            return api_key
        back = self._project_url(api_key)
        if not api_key.is_active:
            self.message_user(request, f"{api_key} is revoked already.", messages.WARNING)
            return HttpResponseRedirect(back)
        if request.method == "POST" and request.POST.get("confirm") == "yes":
            services.api_key_revoke(api_key=api_key)
            self.log_change(request, api_key, "Revoked.")
            self.message_user(request, f"Revoked {api_key}: it stopped working at once.", messages.SUCCESS)
            return HttpResponseRedirect(back)
        return self.render_once(
            request,
            "admin/accounts/apikey/revoke_confirmation.html",
            {"title": "Revoke API key", "api_key": api_key, "cancel_url": back},
        )

    def rotate_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """`<pk>/rotate/`: a GET (or a POST without `confirm`) asks for the grace period; a confirmed
        POST rotates and shows the new plaintext on its response only."""
        api_key = self._key_for_view(request, object_id)
        if isinstance(api_key, HttpResponse):
            return api_key
        back = self._project_url(api_key)
        if api_key.status != "active":
            self.message_user(
                request, f"{api_key} is {api_key.status}; only active keys can be rotated.", messages.ERROR
            )
            return HttpResponseRedirect(back)
        confirmed = request.method == "POST" and request.POST.get("confirm") == "yes"
        form = RotateForm(request.POST if confirmed else None)
        if not form.is_valid():
            return self.render_once(
                request,
                "admin/accounts/apikey/rotate_confirmation.html",
                {"title": "Rotate API key", "form": form, "queryset": [api_key], "cancel_url": back},
            )
        try:
            api_key, plaintext = services.api_key_rotate(
                api_key=api_key, grace_seconds=form.cleaned_data["grace_seconds"]
            )
        except Conflict as error:  # revoked or expired since the page was shown
            self.message_user(request, error.message, messages.ERROR)
            return HttpResponseRedirect(back)
        self.log_change(request, api_key, "Rotated the secret.")
        return self.render_once(
            request,
            "admin/accounts/apikey/rotated.html",
            {
                "title": "API key rotated",
                "rotated": [{"api_key": api_key, "plaintext": ShownOnce(plaintext)}],
                "skipped": [],
                "back_url": back,
            },
        )

    def _manageable(self, request: HttpRequest, queryset: QuerySet[APIKey]) -> list[APIKey]:
        """The selected keys the staff user may manage (key_manager_refusal); says which were left."""
        allowed, refused = [], []
        for api_key in queryset.select_related("project"):
            if key_manager_refusal(user=cast(User, request.user), project=api_key.project) is None:
                allowed.append(api_key)
            else:
                refused.append(api_key)
        if refused:
            names = ", ".join(str(api_key) for api_key in refused)
            self.message_user(
                request, f"Left alone, as you are not an admin of their projects: {names}.", messages.ERROR
            )
        return allowed

    @admin.action(description="Revoke selected API keys")
    def revoke_selected(self, request: HttpRequest, queryset: QuerySet[APIKey]) -> None:
        allowed = self._manageable(request, queryset)
        for api_key in allowed:
            services.api_key_revoke(api_key=api_key)
        if allowed:
            self.message_user(request, f"Revoked {len(allowed)} key(s).")

    @admin.action(description="Rotate selected API keys (new secrets are shown once)")
    def rotate_selected(self, request: HttpRequest, queryset: QuerySet[APIKey]) -> HttpResponse:
        """First a confirmation page with the grace period, then the new plaintexts, on that page only."""
        form = RotateForm(request.POST if "confirm" in request.POST else None)
        if not form.is_valid():
            return self.render_once(
                request,
                "admin/accounts/apikey/rotate_confirmation.html",
                {
                    "title": "Rotate API keys",
                    "form": form,
                    "queryset": queryset,
                    "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
                },
            )
        rotated, skipped = [], []
        for api_key in self._manageable(request, queryset):
            try:
                api_key, plaintext = services.api_key_rotate(
                    api_key=api_key, grace_seconds=form.cleaned_data["grace_seconds"]
                )
            except Conflict:  # revoked or expired: nothing to rotate
                skipped.append(api_key)
                continue
            self.log_change(request, api_key, "Rotated the secret.")
            rotated.append({"api_key": api_key, "plaintext": ShownOnce(plaintext)})
        return self.render_once(
            request,
            "admin/accounts/apikey/rotated.html",
            {"title": "API keys rotated", "rotated": rotated, "skipped": skipped},
        )


# Projects and their members. Every write goes through accounts.project_services with
# acting_role=None (staff may do anything a project owner may), so the admin keeps the API's rules:
# the last owner stays (409), and a removed member's keys in the project are revoked with them.


class _MemberRefused(ServiceRefused):
    """A member service's refusal of a row of the project page's members inline: `member` is the
    refused row's user and `field` the row's field it is shown at, None for the row as a whole."""

    def __init__(self, error: DomainError, *, who: str, member: Any, field: str | None):
        super().__init__(error, on="members", who=who)
        self.member = member
        self.field = field


def _raw_id_user_field(admin_site: Any, **kwargs: Any) -> forms.ModelChoiceField:
    return forms.ModelChoiceField(
        queryset=User.objects.all(),
        widget=ForeignKeyRawIdWidget(Membership._meta.get_field("user").remote_field, admin_site),
        **kwargs,
    )


class ProjectForm(RefusableForm):
    slug = forms.RegexField(regex=project_services.SLUG_PATTERN, max_length=50, help_text=project_services.SLUG_HELP)

    class Meta:
        model = Project
        fields = ["name", "slug", "protected_labels"]


class ProjectAddForm(ProjectForm):
    slug = forms.RegexField(
        regex=project_services.SLUG_PATTERN,
        max_length=50,
        required=False,
        help_text=f"{project_services.SLUG_HELP} Empty: made from the name.",
    )
    # Replaced with a raw-id field in ProjectAdmin.get_form (its widget needs the admin site).
    owner = forms.ModelChoiceField(queryset=User.objects.all())

    class Meta(ProjectForm.Meta):
        fields = ["name", "slug"]


class MembershipInlineForm(RefusableForm):
    class Meta:
        model = Membership
        fields = ["user", "role"]

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        # Read before validation assigns the submitted user to the instance.
        self.initial_user: User | None = None if self.instance._state.adding else self.instance.user

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        if not self.instance._state.adding and "user" in self.changed_data:
            self.add_error("user", "A membership's user cannot change: remove this member and add the other user.")
        return cleaned


class MembershipFormSet(BaseInlineFormSet):
    """Saved by ProjectAdmin.save_formset through the member services; `refusal` is set on the
    second pass after one refused, and shown above the members and on the refused member's row."""

    refusal: _MemberRefused | None = None

    def clean(self) -> None:
        super().clean()
        if self.refusal is None:
            return
        for form in cast(list[MembershipInlineForm], self.forms):
            user = form.initial_user if form.initial_user is not None else form.cleaned_data.get("user")
            if user is not None and user.pk == self.refusal.member:
                # A removed row's errors do not make the formset invalid: the error below does.
                form.add_error(self.refusal.field, self.refusal.error.message)
                break
        raise ValidationError(self.refusal.text)


class MembershipInline(admin.TabularInline):
    model = Membership
    form = MembershipInlineForm
    formset = MembershipFormSet
    fields = ["user", "role", "created_at"]
    readonly_fields = ["created_at"]
    raw_id_fields = ["user"]
    extra = 1
    verbose_name = "member"
    verbose_name_plural = "members (removing one revokes their API keys in this project)"

    def get_queryset(self, request: HttpRequest) -> QuerySet[Membership]:
        return super().get_queryset(request).select_related("user")

    def get_formset(self, request: HttpRequest, obj: Project | None = None, **kwargs: Any) -> Any:
        formset = super().get_formset(request, obj, **kwargs)
        refused = service_refusal(request, "members")
        if isinstance(refused, _MemberRefused):
            formset = type(formset.__name__, (formset,), {"refusal": refused})
        return formset


class ProjectKindFilter(admin.SimpleListFilter):
    title = "kind"
    parameter_name = "kind"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("personal", "Personal"), ("team", "Team")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Project]) -> QuerySet[Project]:
        if self.value() == "personal":
            return queryset.filter(personal_for__isnull=False)
        if self.value() == "team":
            return queryset.filter(personal_for__isnull=True)
        return queryset


@admin.register(Project)
class ProjectAdmin(ServiceWritesMixin, admin.ModelAdmin):
    """Projects and their members, written through accounts.project_services. The change page also
    shows the project's API keys (with links to add and edit them, and buttons to rotate and revoke
    them through APIKeyAdmin's views), its budgets with their use in the current window (with links
    to add and edit them in the billing admin) and its spend so far
    (templates/admin/accounts/project/change_form.html).

    accounts is below billing (.importlinter), so budgets and costs are reached through Django's
    registries at request time, never imported: the cost entries with `apps.get_model`, the budgets
    through the registered billing admin, whose queryset is billing.selectors.budgets_with_usage.
    """

    form = ProjectForm
    list_display = ["name", "slug", "personal_for", "member_count", "created_at"]
    list_filter = [ProjectKindFilter, "created_at"]
    search_fields = ["name", "slug", "memberships__user__username"]
    list_select_related = ["personal_for"]
    readonly_fields = ["personal_for", "member_count", "created_at", "updated_at"]
    inlines = [MembershipInline]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Project]:
        return super().get_queryset(request).annotate(member_count=Count("memberships", distinct=True))

    @admin.display(description="members", ordering="member_count")
    def member_count(self, project: Project) -> int:
        return project.member_count  # type: ignore[attr-defined]

    def get_fields(self, request: HttpRequest, obj: Project | None = None) -> Any:
        if obj is None:
            return ["name", "slug", "owner"]
        return ["name", "slug", "personal_for", "protected_labels", "member_count", "created_at", "updated_at"]

    def get_readonly_fields(self, request: HttpRequest, obj: Project | None = None) -> Any:
        return [] if obj is None else self.readonly_fields

    def get_inlines(self, request: HttpRequest, obj: Project | None) -> Any:
        # A new project's owner is the add form's; more members are added on its page.
        return [] if obj is None else self.inlines

    def get_form(self, request: HttpRequest, obj: Project | None = None, change: bool = False, **kwargs: Any) -> Any:
        if obj is None:
            kwargs["form"] = ProjectAddForm
        form = super().get_form(request, obj, change=change, **kwargs)
        if obj is None:
            form.base_fields["owner"] = _raw_id_user_field(
                self.admin_site, help_text="The project's first owner; more members are added on its page."
            )
        return form

    def has_delete_permission(self, request: HttpRequest, obj: Project | None = None) -> bool:
        # project_delete refuses a personal project: it goes with its user.
        if obj is not None and obj.personal_for_id is not None:
            return False
        return super().has_delete_permission(request, obj)

    def save_model(self, request: HttpRequest, obj: Project, form: Any, change: bool) -> None:
        data = form.cleaned_data
        try:
            if change:
                fields = {name: data[name] for name in form.changed_data if name in ProjectForm.Meta.fields}
                project = project_services.project_update(project=obj, role=None, **fields)
            else:
                project = project_services.project_create(
                    name=data["name"], created_by=data["owner"], slug=data["slug"] or None
                )
        except DomainError as error:
            raise ServiceRefused(error) from error
        # The admin logs and redirects with `obj`: give it the saved row's values.
        for field in Project._meta.concrete_fields:
            setattr(obj, field.attname, getattr(project, field.attname))
        obj._state.adding = False

    def delete_model(self, request: HttpRequest, obj: Project) -> None:
        try:
            project_services.project_delete(project=obj, role=None)
        except DomainError as error:
            raise ServiceRefused(error) from error

    def save_formset(self, request: HttpRequest, form: Any, formset: Any, change: bool) -> None:
        """The members inline, through member_add, member_set_role and member_remove, in an order that
        lets one submission hand ownership over: additions, then promotions to owner, then other role
        changes, then removals. A refusal rolls the whole submission back (ServiceWritesMixin)."""
        if formset.model is not Membership:
            super().save_formset(request, form, formset, change)
            return
        project = form.instance
        deleted = [f for f in formset.initial_forms if f in formset.deleted_forms]
        added = [f for f in formset.extra_forms if f.has_changed() and f not in formset.deleted_forms]
        role_changed = [f for f in formset.initial_forms if f not in deleted and "role" in f.changed_data]
        role_changed.sort(key=lambda f: f.cleaned_data["role"] != Role.OWNER)
        formset.new_objects, formset.changed_objects, formset.deleted_objects = [], [], []
        notes = []
        for member_form in [*added, *role_changed, *deleted]:
            membership = member_form.instance
            # An existing row's user as loaded (the form refuses to change it, but a deleted row's
            # form is not validated).
            user = member_form.cleaned_data["user"] if member_form in added else member_form.initial_user
            try:
                if member_form in added:
                    formset.new_objects.append(
                        project_services.member_add(
                            project=project, user=user, role=member_form.cleaned_data["role"], acting_role=None
                        )
                    )
                elif member_form in role_changed:
                    membership = project_services.member_set_role(
                        project=project, user=user, role=member_form.cleaned_data["role"], acting_role=None
                    )
                    formset.changed_objects.append((membership, ["role"]))
                else:
                    revoked = project_services.member_remove(project=project, user=user, acting_role=None)
                    formset.deleted_objects.append(membership)
                    notes.append(f"Removed {user}; revoked {revoked} of their API key(s) in {project}.")
            except DomainError as error:
                if member_form in deleted:
                    field = None
                else:
                    field = next((name for name in error.fields if name in member_form.fields), "role")
                raise _MemberRefused(error, who=str(user), member=user.pk, field=field) from error
        for note in notes:
            self.message_user(request, note, messages.INFO)

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None
    ) -> HttpResponse:
        project = self.get_object(request, unquote(object_id))
        if project is not None:
            extra_context = {**(extra_context or {}), **self._project_sections(request, project)}
        return super().change_view(request, object_id, form_url, extra_context)

    def _project_sections(self, request: HttpRequest, project: Project) -> dict[str, Any]:
        """The keys (with links to add, edit, rotate and revoke them), budgets (to add and edit) and
        spend below the members. The buttons go to APIKeyAdmin's views, which check again."""
        user = cast(User, request.user)
        key_admin = self.admin_site.get_model_admin(APIKey)
        add_key_url = None
        if key_admin.has_add_permission(request):
            initial = {"project": project.pk}
            role = services.member_role(project=project, user=user)
            if role is not None and role_at_least(role, Role.ADMIN):
                initial["created_by"] = user.pk
            add_key_url = f"{self._admin_url('accounts_apikey_add')}?{urlencode(initial)}"
        keys = [
            {
                "api_key": api_key,
                "url": self._admin_url("accounts_apikey_change", api_key.pk),
                "rotate_url": self._admin_url("accounts_apikey_rotate", api_key.pk),
                "revoke_url": self._admin_url("accounts_apikey_revoke", api_key.pk),
                "scopes": ", ".join(api_key.scopes),
                "can_rotate": api_key.status == "active",
                "can_revoke": api_key.is_active,
            }
            for api_key in APIKey.objects.filter(project=project).select_related("created_by").order_by("-created_at")
        ]
        cost_log = apps.get_model("billing", "CostLog")
        spend = cost_log.objects.filter(project=project).aggregate(
            total=Sum("total_cost", filter=Q(cost_known=True)),
            runs=Count("id"),
            unknown=Count("id", filter=Q(cost_known=False)),
        )
        return {
            "project_add_key_url": add_key_url,
            "project_key_buttons": key_admin.has_change_permission(request),
            "project_key_refusal": key_manager_refusal(user=user, project=project),
            "project_api_keys": keys,
            **self._budgets(request, project),
            "project_spend": {
                "total": money_str(spend["total"] if spend["total"] is not None else Decimal(0)),
                "runs": spend["runs"],
                "unknown_cost_runs": spend["unknown"],
            },
        }

    def _admin_url(self, name: str, pk: Any = None) -> str:
        args = [] if pk is None else [quote(pk)]
        return reverse(f"admin:{name}", args=args, current_app=self.admin_site.name)

    def _budgets(self, request: HttpRequest, project: Project) -> dict[str, Any]:
        """`project_budgets`: the project's budgets with spent, reserved and remaining in their current
        window, None when the billing admin, whose queryset computes them, is not registered;
        `project_add_budget_url`: its add page with the project filled in."""
        budget = apps.get_model("billing", "Budget")
        try:
            budget_admin = self.admin_site.get_model_admin(budget)
        except NotRegistered:
            return {"project_budgets": None, "project_add_budget_url": None}
        rows = []
        for row in budget_admin.get_queryset(request).filter(project=project).select_related("api_key"):
            spent, reserved = row.spent, row.reserved
            rows.append(
                {
                    "budget": row,
                    "url": self._admin_url("billing_budget_change", row.pk),
                    "scope": f"key {row.api_key.prefix}" if row.api_key is not None else "project-wide",
                    "amount": money_str(row.amount),
                    "window": row.get_window_display(),
                    "spent": money_str(spent),
                    "reserved": money_str(reserved),
                    "remaining": money_str(row.amount - spent - reserved),
                }
            )
        add_url = None
        if budget_admin.has_add_permission(request):
            # BudgetAdmin's project is a raw-id field, so the add page takes it from the query string.
            add_url = f"{self._admin_url('billing_budget_add')}?{urlencode({'project': project.pk})}"
        return {"project_budgets": rows, "project_add_budget_url": add_url}


@admin.register(Membership)
class MembershipAdmin(ServiceWritesMixin, admin.ModelAdmin):
    """Memberships, written through accounts.project_services like the project page's inline:
    deleting one revokes the member's keys in the project; the last owner stays."""

    form = RefusableForm
    list_display = ["user", "project", "role", "created_at"]
    list_filter = ["role"]
    search_fields = ["user__username", "user__email", "project__slug", "project__name"]
    list_select_related = ["user", "project"]
    raw_id_fields = ["project", "user"]

    def get_fields(self, request: HttpRequest, obj: Membership | None = None) -> Any:
        return ["project", "user", "role"] if obj is None else ["project", "user", "role", "created_at", "updated_at"]

    def get_readonly_fields(self, request: HttpRequest, obj: Membership | None = None) -> Any:
        # Only the role changes; moving a membership is a removal and an addition.
        return [] if obj is None else ["project", "user", "created_at", "updated_at"]

    def save_model(self, request: HttpRequest, obj: Membership, form: Any, change: bool) -> None:
        data = form.cleaned_data
        try:
            if change:
                membership = project_services.member_set_role(
                    project=obj.project, user=obj.user, role=data["role"], acting_role=None
                )
            else:
                membership = project_services.member_add(
                    project=data["project"], user=data["user"], role=data["role"], acting_role=None
                )
        except DomainError as error:
            raise ServiceRefused(error) from error
        for field in Membership._meta.concrete_fields:
            setattr(obj, field.attname, getattr(membership, field.attname))
        obj._state.adding = False

    def delete_model(self, request: HttpRequest, obj: Membership) -> None:
        try:
            revoked = project_services.member_remove(project=obj.project, user=obj.user, acting_role=None)
        except DomainError as error:
            raise ServiceRefused(error, who=str(obj.user)) from error
        self.message_user(request, f"Revoked {revoked} of {obj.user}'s API key(s) in {obj.project}.", messages.INFO)

from datetime import UTC
from decimal import Decimal
from typing import Any, cast

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path
from django.utils import timezone

from accounts.models import Project, Role, User
from accounts.staff import staff_role_check
from billing import dashboard, selectors, services
from billing.models import Budget, BudgetReservation, CostLog, ModelPrice
from llmops.admin import ReadOnlyAdmin, RefusableForm, ServiceRefused, ServiceWritesMixin
from llmops.errors import DomainError, ValidationFailed
from llmops.money import money_str


def _money(value: Decimal | None) -> str:
    """As money (0.00, 1.50, 0.000123), not with the column's ten decimal places; "-" for none."""
    return "-" if value is None else money_str(value)


@admin.register(ModelPrice)
class ModelPriceAdmin(admin.ModelAdmin):
    """Staff prices win over seeded ones; a price change is a new row with a later effective_from."""

    list_display = ["model", "provider", "input_price", "output_price", "currency", "effective_from", "source"]
    list_filter = ["source", "currency", "provider"]
    search_fields = ["model", "provider", "notes"]
    date_hierarchy = "effective_from"

    def save_model(self, request: HttpRequest, obj: ModelPrice, form: Any, change: bool) -> None:
        if not change:
            obj.source = ModelPrice.Source.STAFF
        super().save_model(request, obj, form, change)

    def get_readonly_fields(self, request: HttpRequest, obj: ModelPrice | None = None) -> Any:
        return ["source"]

    @admin.display(description="input per Mtok", ordering="input_per_mtok")
    def input_price(self, price: ModelPrice) -> str:
        return _money(price.input_per_mtok)

    @admin.display(description="output per Mtok", ordering="output_per_mtok")
    def output_price(self, price: ModelPrice) -> str:
        return _money(price.output_per_mtok)


@admin.register(CostLog)
class CostLogAdmin(ReadOnlyAdmin):
    """Read-only: cost entries are written with the run's completion and never edited."""

    list_display = [
        "created_at",
        "project",
        "created_by",
        "provider",
        "model",
        "prompt_tokens",
        "completion_tokens",
        "total",
        "currency",
        "cost_known",
        "tokens_estimated",
    ]
    list_filter = ["cost_known", "tokens_estimated", "provider", "created_at"]
    search_fields = ["model", "provider", "project__slug", "run__id"]
    list_select_related = ["project", "created_by", "api_key"]
    date_hierarchy = "created_at"
    # The page shows every field read-only; the costs as money instead of with ten decimal places.
    fields = [
        "run",
        "project",
        "created_by",
        "api_key",
        "provider",
        "model",
        "prompt_tokens",
        "completion_tokens",
        "tokens_estimated",
        "price",
        "input",
        "output",
        "total",
        "currency",
        "cost_known",
    ]
    readonly_fields = ["input", "output", "total"]
    dashboard_template = "admin/billing/costlog/dashboard.html"

    def get_urls(self) -> list[URLPattern]:
        # Before the defaults: their `<path:object_id>/` catch-all would swallow `dashboard/`.
        dashboard_url = path(
            "dashboard/",
            self.admin_site.admin_view(self.dashboard_view),
            name=f"{self.opts.app_label}_{self.opts.model_name}_dashboard",
        )
        return [dashboard_url, *super().get_urls()]

    def dashboard_view(self, request: HttpRequest) -> HttpResponse:
        """Spend and tokens per day as charts, and tables by model, prompt, project, member and key:
        `?start=YYYY-MM-DD&end=YYYY-MM-DD&project=<slug or id>` (both days included, UTC; no project:
        all of them). A bad parameter is a 400 page that names it and still offers the form."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        context: dict[str, Any] = {
            **self.admin_site.each_context(request),
            "title": "Cost dashboard",
            "subtitle": None,
            "opts": self.opts,
            "projects": dashboard.project_choices(),
            "params": {name: request.GET.get(name, "") for name in ("start", "end", "project")},
            "error": None,
            "dashboard": None,
        }
        try:
            query = dashboard.dashboard_query(params=request.GET, today=timezone.now().astimezone(UTC).date())
        except ValidationFailed as exc:
            context.update(error=exc.message)
            return TemplateResponse(request, self.dashboard_template, context, status=400)
        figures = dashboard.cost_dashboard(query=query)
        spend_chart, tokens_chart = dashboard.dashboard_charts(figures)
        context.update(
            params={
                "start": query.start.isoformat(),
                "end": query.last_day.isoformat(),
                "project": query.project.slug if query.project is not None else "",
            },
            dashboard=figures,
            spend_chart=spend_chart,
            tokens_chart=tokens_chart,
        )
        return TemplateResponse(request, self.dashboard_template, context)

    @admin.display(description="input cost", ordering="input_cost")
    def input(self, log: CostLog) -> str:
        return _money(log.input_cost)

    @admin.display(description="output cost", ordering="output_cost")
    def output(self, log: CostLog) -> str:
        return _money(log.output_cost)

    @admin.display(description="total cost", ordering="total_cost")
    def total(self, log: CostLog) -> str:
        return _money(log.total_cost)


def _role_check(request: HttpRequest, *, project: Project) -> None:
    """Staff who are not superusers add, change and delete budgets as an admin of the project, as the
    API requires (InsufficientRole otherwise)."""
    staff_role_check(user=cast(User, request.user), project=project, minimum=Role.ADMIN, action="managing budgets")


class BudgetScopeFilter(admin.SimpleListFilter):
    title = "scope"
    parameter_name = "scope"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("project", "Project-wide"), ("key", "One API key")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Budget]) -> QuerySet[Budget]:
        if self.value() == "project":
            return queryset.filter(api_key__isnull=True)
        if self.value() == "key":
            return queryset.filter(api_key__isnull=False)
        return queryset


def _per_window(budget: Budget) -> str:
    return f"{_money(budget.amount)} USD per {budget.window}"


class BudgetForm(RefusableForm):
    class Meta:
        model = Budget
        fields = ["project", "api_key", "amount", "window"]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        project, api_key = cleaned.get("project"), cleaned.get("api_key")
        if self.instance._state.adding and project is not None:
            # budget_create refuses it too (409), but without naming a field; an error at the field also
            # keeps the unique constraints' generic messages off the page.
            existing = Budget.objects.filter(project=project, api_key=api_key).first()
            if existing is not None and api_key is None:
                self.add_error(
                    "project",
                    f"This project already has a project-wide budget ({_per_window(existing)}); edit that one, "
                    "or choose an API key to give one key a budget of its own.",
                )
            elif existing is not None:
                self.add_error("api_key", f"This key already has a budget ({_per_window(existing)}); edit that one.")
        return cleaned


@admin.register(Budget)
class BudgetAdmin(ServiceWritesMixin, admin.ModelAdmin):
    """Spent, reserved and remaining are computed for the current window (UTC), as the API shows them.

    Written through billing.services, as the API does: a change takes the budget's lock like a
    reservation does, and changes only the amount and window. A refusal is shown on the page
    (ServiceWritesMixin), and staff who are not superusers need the admin role in the budget's project,
    as the API needs of a member.
    """

    form = BudgetForm
    list_display = ["project", "api_key", "amount_usd", "window", "spent", "reserved", "remaining", "updated_at"]
    list_filter = ["window", BudgetScopeFilter]
    search_fields = ["project__slug", "api_key__prefix", "api_key__name"]
    list_select_related = ["project", "api_key"]
    raw_id_fields = ["project", "api_key"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Budget]:
        return selectors.budgets_with_usage(now=timezone.now())

    def get_readonly_fields(self, request: HttpRequest, obj: Budget | None = None) -> Any:
        # A budget's scope is fixed: its held reservations were checked against this project or key.
        return ["project", "api_key"] if obj is not None else []

    def save_model(self, request: HttpRequest, obj: Budget, form: Any, change: bool) -> None:
        data = form.cleaned_data
        try:
            # On a change the project is read-only: obj's is the stored one.
            _role_check(request, project=obj.project if change else data["project"])
            if change:
                budget = services.budget_update(budget=obj, amount=data["amount"], window=data["window"])
            else:
                api_key = data.get("api_key")
                budget = services.budget_create(
                    project=data["project"],
                    amount=data["amount"],
                    window=data["window"],
                    api_key_id=api_key.pk if api_key is not None else None,
                )
        except DomainError as error:
            raise ServiceRefused(error) from error
        # The admin logs and redirects with `obj`: give it the saved row's values.
        for field in Budget._meta.concrete_fields:
            setattr(obj, field.attname, getattr(budget, field.attname))
        obj._state.adding = False

    def delete_model(self, request: HttpRequest, obj: Budget) -> None:
        try:
            _role_check(request, project=obj.project)
            services.budget_delete(budget=obj)
        except DomainError as error:
            raise ServiceRefused(error) from error

    @admin.display(description="amount (USD)", ordering="amount")
    def amount_usd(self, budget: Budget) -> str:
        return _money(budget.amount)

    @admin.display(description="spent (USD)")
    def spent(self, budget: Budget) -> str:
        return _money(budget.spent)  # type: ignore[attr-defined]

    @admin.display(description="reserved (USD)")
    def reserved(self, budget: Budget) -> str:
        return _money(budget.reserved)  # type: ignore[attr-defined]

    @admin.display(description="remaining (USD)")
    def remaining(self, budget: Budget) -> str:
        return _money(budget.amount - budget.spent - budget.reserved)  # type: ignore[attr-defined]


@admin.register(BudgetReservation)
class BudgetReservationAdmin(ReadOnlyAdmin):
    """Read-only: reservations are made by run creation and closed by the run's outcome."""

    list_display = ["created_at", "budget", "run", "amount_usd", "status", "closed_at"]
    list_filter = ["status", "budget__window", "created_at"]
    search_fields = ["run__id", "budget__project__slug"]
    list_select_related = ["budget", "budget__api_key", "run"]
    date_hierarchy = "created_at"
    fields = ["budget", "run", "amount_usd", "status", "closed_at"]
    readonly_fields = ["amount_usd"]

    @admin.display(description="amount (USD)", ordering="amount")
    def amount_usd(self, reservation: BudgetReservation) -> str:
        return _money(reservation.amount)

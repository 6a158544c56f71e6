import re
from typing import Any

from rest_framework.exceptions import ValidationError
from rest_framework.pagination import PageNumberPagination
from rest_framework.request import Request

# Plain ASCII digits: Python's int() would also take " 2", "2_0" or "٢".
_NUMBER = re.compile(r"[0-9]{1,9}")


class StandardPagination(PageNumberPagination):
    """Page numbers, strict about their query parameters, so a typo is an error rather than
    silently the first page or the default size: an invalid `page` is a 404 (DRF's "Invalid page."),
    an invalid `page_size` a 400. The schema states both bounds."""

    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200
    last_page_strings = ()  # no `?page=last`: the schema says page is an integer

    def get_page_size(self, request: Request) -> int:
        raw = request.query_params.get(self.page_size_query_param)
        if raw is None:
            return self.page_size
        if not _NUMBER.fullmatch(raw) or not 1 <= int(raw) <= self.max_page_size:
            raise ValidationError({self.page_size_query_param: [f"Must be an integer from 1 to {self.max_page_size}."]})
        return int(raw)

    def get_page_number(self, request: Request, paginator: Any) -> Any:
        raw = request.query_params.get(self.page_query_param, "1")
        # Anything else makes the paginator raise InvalidPage, which DRF answers with 404.
        return raw if _NUMBER.fullmatch(raw) else "invalid"

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            if parameter["name"] == self.page_query_param:
                parameter["schema"]["minimum"] = 1
            elif parameter["name"] == self.page_size_query_param:
                parameter["schema"].update(minimum=1, maximum=self.max_page_size)
        return parameters

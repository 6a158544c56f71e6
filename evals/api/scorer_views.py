from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.models import Scope
from evals.api.scorer_serializers import ScorerSerializer
from evals.scorers.registry import scorer_classes


class ScorerListView(APIView):
    """The scorers an experiment can name: the built-in ones and this deployment's custom ones."""

    required_scopes = {"get": Scope.EVALS_READ}

    @extend_schema(
        tags=["evals"],
        summary="List the scorers experiments can use, by name",
        responses={200: ScorerSerializer(many=True)},
    )
    def get(self, request: Request) -> Response:
        scorers = [
            {"name": name, "description": cls.description, "default_threshold": cls.default_threshold}
            for name, cls in sorted(scorer_classes().items())
        ]
        return Response(ScorerSerializer(scorers, many=True).data)

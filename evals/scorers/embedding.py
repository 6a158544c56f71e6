"""A scorer that compares meanings: the cosine similarity of embeddings from a provider."""

import math
from typing import Any

from evals.scorers.base import ScoreContext, ScoreInput, Scorer, ScoreResult, ScorerOptionsError, ScoringFailed
from evals.scorers.options import options_take
from llmops.errors import ValidationFailed
from providers import checks, clients


def cosine(left: list[float], right: list[float]) -> float | None:
    """Cosine similarity of two vectors of one length; None when either is all zeros."""
    norms = math.sqrt(sum(x * x for x in left)) * math.sqrt(sum(y * y for y in right))
    if norms == 0:
        return None
    return sum(x * y for x, y in zip(left, right, strict=True)) / norms


class EmbeddingSimilarity(Scorer):
    name = "embedding_similarity"
    description = (
        "Cosine similarity of the embeddings of the output and the expected output, clipped to [0, 1] "
        "(opposite meanings score 0). Options: model (required), '<provider>/<model id>' of an embedding model."
    )
    default_threshold = 0.8

    def check_options(self, options: dict[str, Any]) -> dict[str, Any]:
        options_take(options, name=self.name, extra=("model",))
        if "model" not in options:
            raise ScorerOptionsError("Give a model.", fields={"model": ["Required: '<provider>/<model id>'."]})
        try:
            checks.provider_check(model=options["model"], field="model")
        except ValidationFailed as exc:
            raise ScorerOptionsError(exc.message, fields=exc.fields) from None
        return {"model": options["model"]}

    def score(self, item: ScoreInput, *, context: ScoreContext) -> ScoreResult:
        if not item.expected_output:
            raise ScoringFailed("The example has no expected output to compare with.")
        try:
            # Again now: the provider may have been disabled or removed since the options were checked.
            provider = checks.provider_check(model=self.options["model"], field="model")
        except ValidationFailed as exc:
            raise ScoringFailed(f"The embedding model cannot be used: {exc.message}") from None
        _, model_id = checks.model_split(self.options["model"])
        try:
            output, expected = clients.embed(
                provider=provider, model_id=model_id, texts=[item.output, item.expected_output]
            )
        except clients.ProviderError as error:
            # The message is the provider layer's, scrubbed of any key.
            raise ScoringFailed(f"The embeddings call failed ({error.code}): {error.message}") from None
        similarity = cosine(output, expected)
        if similarity is None:
            return ScoreResult(value=0.0, reason="An embedding is all zeros: no similarity.")
        value = min(1.0, max(0.0, similarity))
        return ScoreResult(value=value, reason=f"Cosine similarity {similarity:.3f}.")

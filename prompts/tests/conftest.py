import pytest

from providers.models import Provider


@pytest.fixture(autouse=True)
def _hf_provider(_local_provider, request):
    """Prompts' tests name a hosted model too (`hf/...`); versions must name a known provider."""
    if request.node.get_closest_marker("django_db") or {"db", "transactional_db"} & set(request.fixturenames):
        Provider.objects.get_or_create(name="hf", defaults={"kind": Provider.Kind.HF_INFERENCE})

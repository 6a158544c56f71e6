"""GET /api/v1/health?providers=1 through the runs app's provider check, against real local servers."""

from providers.models import Provider

HEALTH = "/api/v1/health"


def test_health_reports_each_provider(anon_client, provider_factory, openai_server, closed_port):
    provider_factory(name="up")
    provider_factory(name="down", base_url=f"http://127.0.0.1:{closed_port}/v1")
    provider_factory(name="off", enabled=False)
    provider_factory(name="hub", kind=Provider.Kind.HF_INFERENCE, base_url="")

    response = anon_client.get(HEALTH, {"providers": "1"})

    assert response.status_code == 200
    assert response.json()["providers"] == {
        "down": "error: connection_error",
        "hub": "not checked (hf-inference)",
        "off": "disabled",
        "up": "ok",
    }
    # Asked once, for its model list only, and without a key (the disabled one was not asked).
    assert [(r.method, r.path, r.headers.get("authorization")) for r in openai_server.requests] == [
        ("GET", "/v1/models", "Bearer none")
    ]


def test_plain_health_asks_no_provider(anon_client, provider_factory, openai_server):
    provider_factory(name="up")

    response = anon_client.get(HEALTH)

    assert response.status_code == 200
    assert "providers" not in response.json()
    assert openai_server.requests == []

from django.apps import AppConfig


class ProvidersConfig(AppConfig):
    name = "providers"

    def ready(self) -> None:
        from llmops.health import register_provider_check
        from providers import signals  # noqa: F401  (the config cache invalidated on every write)
        from providers.selectors import provider_states

        register_provider_check(provider_states)

from django.apps import AppConfig


class RunsConfig(AppConfig):
    name = "runs"

    def ready(self) -> None:
        from llmops.health import register_provider_check
        from llmops.metrics import register_collector
        from runs.metrics import RunsCollector
        from runs.selectors import provider_states

        register_collector(RunsCollector())
        register_provider_check(provider_states)

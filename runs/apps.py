from django.apps import AppConfig


class RunsConfig(AppConfig):
    name = "runs"

    def ready(self) -> None:
        from llmops.metrics import register_collector
        from runs.metrics import RunsCollector

        register_collector(RunsCollector())

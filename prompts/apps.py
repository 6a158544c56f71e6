from django.apps import AppConfig


class PromptsConfig(AppConfig):
    name = "prompts"

    def ready(self) -> None:
        from prompts import signals  # noqa: F401  (the config cache invalidated on every write)

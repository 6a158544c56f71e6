from django.apps import AppConfig


class EvalsConfig(AppConfig):
    name = "evals"
    verbose_name = "Evaluation"

    def ready(self) -> None:
        from evals import receivers  # noqa: F401  (connects the signal receivers)
        from evals.gates import label_gate_check
        from evals.recovery import experiments_recover
        from prompts.label_gates import label_gate_register
        from runs.recovery import recovery_step_register

        label_gate_register(label_gate_check)
        recovery_step_register("experiments", experiments_recover)

"""Conditions that other apps set on moving a label (evals: a passing experiment first).

prompts cannot import the apps above it, so they register a check here in their AppConfig.ready();
`label_move` calls every check, under the prompt's row lock, before anything is written. A check
refuses by raising a DomainError (evals raises a 409 naming the missing evaluation).
"""

from collections.abc import Callable

from prompts.models import Prompt, PromptVersion

LabelGateCheck = Callable[..., None]  # (*, prompt: Prompt, label: str, version: PromptVersion) -> None

_checks: list[LabelGateCheck] = []


def label_gate_register(check: LabelGateCheck) -> None:
    if check not in _checks:
        _checks.append(check)


def label_gates_check(*, prompt: Prompt, label: str, version: PromptVersion) -> None:
    for check in _checks:
        check(prompt=prompt, label=label, version=version)

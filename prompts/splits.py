"""A/B splits of a label: which version a run of the label gets.

A split is the label's `split`, [{"version": <number>, "weight": <percent>}, ...], its weights summing
to SPLIT_TOTAL (prompts.services.label_split_set checks it). A run with a split key falls in a bucket
in [0, SPLIT_TOTAL) hashed from (label id, key), and gets the arm whose cumulative weights cover that
bucket: the same key always gets the same arm while the split is unchanged (sticky), and different
labels split the same caller independently. A run with no key gets a bucket drawn at random.
"""

import hashlib
import random
import uuid
from dataclasses import dataclass
from typing import Any

from prompts import selectors
from prompts.models import Prompt, PromptVersion

SPLIT_TOTAL = 100  # weights are percentages
MAX_SPLIT_ARMS = 4
MAX_SPLIT_KEY = 256  # characters; the gateway's `user` is at most this long

_random = random.SystemRandom()


def split_bucket(*, label_id: uuid.UUID, split_key: str | None) -> int:
    """The caller's bucket in [0, SPLIT_TOTAL): from a hash of (label id, key), else at random."""
    if split_key is None:
        return _random.randrange(SPLIT_TOTAL)
    digest = hashlib.sha256(f"{label_id}\0{split_key}".encode()).digest()
    # 64 bits reduced mod 100: the bias is below 1e-17, far under any tolerance of a test or a report.
    return int.from_bytes(digest[:8], "big") % SPLIT_TOTAL


def split_arm(*, split: list[dict[str, Any]], bucket: int) -> int:
    """The version number of the arm whose cumulative weights cover `bucket` (arms in stored order)."""
    upper = 0
    for arm in split:
        upper += arm["weight"]
        if bucket < upper:
            return int(arm["version"])
    raise ValueError(f"bucket {bucket} is outside the split's weights (they sum to {upper})")


@dataclass(frozen=True)
class LabelPick:
    """The version a run of a label gets, and whether the label's split picked it."""

    version: PromptVersion
    split: bool


def label_version_pick(*, prompt: Prompt, label: str, split_key: str | None) -> LabelPick | None:
    """The version a run of `label` executes: an arm of its split, else its one version. None when the
    prompt has no such label."""
    found = selectors.label_get(prompt=prompt, name=label)
    if found is None:
        return None
    if not found.split:
        return LabelPick(version=found.version, split=False)
    number = split_arm(split=found.split, bucket=split_bucket(label_id=found.pk, split_key=split_key))
    if number == found.version.number:
        return LabelPick(version=found.version, split=True)
    version = selectors.version_by_number(prompt=prompt, number=number)
    if version is None:  # an arm's version cannot be deleted (PROTECT), so this is a broken invariant
        raise PromptVersion.DoesNotExist(f"Version {number} of the split of {label!r} does not exist.")
    return LabelPick(version=version, split=True)

"""Exact-match accuracy of a model on the addition task, run by tritium's host runtime.

Used by the tests, by the shipped model's card, and by `tritium eval` / `tritium demo`: it
needs only a `BitNetModel` (any backend) and no torch. A problem counts as right when greedy
decoding of "a+b=" produces exactly the digits of a+b followed by the end-of-sequence token.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..golden.checks import InputError
from .tasks import MAX_DIGITS, is_held_out


@dataclass(frozen=True)
class AddResult:
    a: int
    b: int
    answer: str          # what the model wrote before its EOS (or all it wrote, without one)
    stopped: bool        # whether it emitted EOS

    @property
    def prompt(self) -> str:
        return f"{self.a}+{self.b}="

    @property
    def right(self) -> bool:
        return self.stopped and self.answer == str(self.a + self.b)


@dataclass
class AddScore:
    results: list[AddResult] = field(default_factory=list)

    @property
    def correct(self) -> int:
        return sum(r.right for r in self.results)

    @property
    def accuracy(self) -> float:
        return self.correct / len(self.results) if self.results else 0.0

    def as_dict(self) -> dict:
        return {"problems": len(self.results), "correct": self.correct,
                "accuracy": self.accuracy}


def held_out_problems(n: int = 1000, digits: int = 3, seed: int = 0) -> list[tuple[int, int]]:
    """n distinct problems with operands below 10**digits that training never saw
    (`tasks.is_held_out`), in a seeded random order."""
    if isinstance(digits, bool) or not isinstance(digits, int) or not 1 <= digits <= MAX_DIGITS:
        raise InputError(f"digits must be an integer from 1 to {MAX_DIGITS}, got {digits!r}")
    limit = 10 ** digits
    rng = np.random.default_rng(seed)
    if limit <= 1000:
        a, b = np.divmod(np.arange(limit * limit), limit)
        keep = is_held_out(a, b)
        pool = np.stack([a[keep], b[keep]], axis=1)
        if n > len(pool):
            raise InputError(f"only {len(pool)} held-out problems have {digits}-digit operands; "
                             f"asked for {n}")
        pick = pool[rng.permutation(len(pool))[:n]]
        return [(int(x), int(y)) for x, y in pick]
    seen: dict[tuple[int, int], None] = {}
    while len(seen) < n:
        ab = rng.integers(0, limit, (4 * n, 2))
        for x, y in ab[is_held_out(ab[:, 0], ab[:, 1])]:
            seen.setdefault((int(x), int(y)))
    return list(seen)[:n]


def all_problems(digits: int) -> list[tuple[int, int]]:
    """Every problem with operands below 10**digits (for small digit counts)."""
    limit = 10 ** digits
    return [(a, b) for a in range(limit) for b in range(limit)]


def solve(model, a: int, b: int) -> AddResult:
    """Greedy answer of a `tritium.host.BitNetModel` to "a+b="."""
    prompt = f"{a}+{b}="
    eos = set(model.config.eos_token_ids)
    if not eos:
        raise InputError(f"{model.path}: config.json names no eos_token_id; the addition task "
                         "ends each answer with one")
    # the longest right answer is one digit longer than the longer operand, then EOS
    budget = max(len(str(a)), len(str(b))) + 2
    new = model.generate(model.encode(prompt), max_new_tokens=budget)
    stopped = bool(new) and new[-1] in eos
    return AddResult(a, b, model.decode(new[:-1] if stopped else new), stopped)


def exact_match(model, problems: Iterable[Sequence[int]], *,
                on_result: Callable[[AddResult], None] | None = None) -> AddScore:
    """Solve every (a, b) with the model; on_result(result) is called after each."""
    score = AddScore()
    for p in problems:
        a, b = (int(v) for v in p)
        if a < 0 or b < 0:
            raise InputError(f"addition problems take non-negative operands, got {a}+{b}")
        r = solve(model, a, b)
        score.results.append(r)
        if on_result:
            on_result(r)
    return score

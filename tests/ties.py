"""The rounding-tie rule both parity suites share (tests/parity.py against transformers,
tests/onnx_parity.py against onnxruntime): float sums taken in another order may land an int8
activation code one step away from golden's where x * scale is within an ulp of k + 0.5. Such a
code is given to golden, so that one flip is not amplified through every later layer; any other
difference fails."""

from __future__ import annotations

import numpy as np

TIE_WINDOW = 1e-3   # how close to k + 0.5 (in int8 code units) a flipped code may be


def force_ties(q: np.ndarray, want: np.ndarray, xs: np.ndarray, where: str, other: str
               ) -> tuple[np.ndarray, int]:
    """golden's codes q with each tie flip replaced by the reference's code (want); xs are the
    unrounded codes. Returns the codes and how many were replaced."""
    diff = q != want
    if not diff.any():
        return q, 0
    step = np.abs(q[diff].astype(np.int32) - want[diff])
    tie = np.abs(np.abs(xs[diff] - np.floor(xs[diff])) - 0.5)
    assert step.max() == 1 and tie.max() <= TIE_WINDOW, (
        f"{where}: int8 codes differ from {other}'s by up to {step.max()} at {diff.sum()} "
        f"place(s), {tie.max():.2e} from a tie")
    return np.where(diff, want, q), int(diff.sum())

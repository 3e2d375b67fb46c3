"""onnxruntime against golden for exported decoders: the generation loop, probes of each
BitLinear's int8 codes, and the rounding-tie rule (shared by tests/test_onnx_export.py and
benchmarks/bench_onnx_export.py)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from tritium.host import BitNetModel
from tritium.host.arch import ModelConfig

from .ties import force_ties

TOL = 1e-4   # relative to max |logit|


def rel_error(got: np.ndarray, want: np.ndarray) -> float:
    return float(np.abs(got - want).max() / np.abs(want).max())


def close(got: np.ndarray, want: np.ndarray) -> None:
    err = rel_error(got, want)
    assert err <= TOL, f"max logit difference {err:.2e} x max|logit|"


Key = tuple[int, str]     # (layer, projection)
Probes = dict[Key, tuple[np.ndarray, np.ndarray]]   # -> (int8 codes, x * s before rounding)


def probe_points(m: onnx.ModelProto) -> dict[Key, tuple[str, str]]:
    """For each MatMulInteger: its int8 input and the float x * s its Round node rounds."""
    made_by = {o: n for n in m.graph.node for o in n.output}
    out = {}
    for n in m.graph.node:
        if n.op_type == "MatMulInteger":
            # model.layers.<i>.<self_attn|mlp>.<proj>/MatMulInteger
            parts = n.name.split("/")[0].split(".")
            node = made_by[n.input[0]]
            while node.op_type != "Round":
                node = made_by[node.input[0]]
            out[(int(parts[2]), parts[4])] = (n.input[0], node.input[0])
    return out


class Decoder:
    """An onnxruntime session of an exported model, fed the way Optimum's loops feed it. With
    probes, each BitLinear's int8 codes are extra outputs (for TieForcing)."""

    def __init__(self, path: Path, cfg: ModelConfig, probes: bool = False,
                 threads: int = 1) -> None:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads   # 1 for tests: the machine's cores are shared
        self.points: dict[Key, tuple[str, str]] = {}
        if probes:
            # the same graph with the codes as extra outputs, saved beside the original so
            # that external data (if any) is found and never loaded into this process
            m = onnx.load(str(path), load_external_data=False)
            self.points = probe_points(m)
            for q, xs in self.points.values():
                m.graph.output.extend([
                    onnx.helper.make_tensor_value_info(q, onnx.TensorProto.INT8, None),
                    onnx.helper.make_tensor_value_info(xs, onnx.TensorProto.FLOAT, None)])
            path = path.with_name(path.stem + ".probed.onnx")
            onnx.save_model(m, str(path))
        self.sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        self.cfg = cfg

    def empty_past(self, batch: int) -> dict[str, np.ndarray]:
        c = self.cfg
        z = np.zeros((batch, c.num_key_value_heads, 0, c.head_dim), np.float32)
        return {f"past_key_values.{i}.{k}": z for i in range(c.num_hidden_layers)
                for k in ("key", "value")}

    def step(self, ids: np.ndarray, past: dict[str, np.ndarray],
             mask: np.ndarray | None = None, positions: np.ndarray | None = None
             ) -> tuple[np.ndarray, dict[str, np.ndarray], Probes]:
        """logits [B, S, V], the next past and the probes, for ids [B, S] after past (every
        position attended unless `mask` says otherwise)."""
        b, s = ids.shape
        start = next(iter(past.values())).shape[2]
        if mask is None:
            mask = np.ones((b, start + s), np.int64)
        if positions is None:
            positions = np.tile(np.arange(start, start + s), (b, 1))
        feeds = {"input_ids": ids.astype(np.int64), "attention_mask": mask.astype(np.int64),
                 "position_ids": positions.astype(np.int64), **past}
        names = [o.name for o in self.sess.get_outputs()]
        out = dict(zip(names, self.sess.run(None, feeds), strict=True))
        nxt = {n.replace("present", "past_key_values"): v for n, v in out.items()
               if n.startswith("present.")}
        probes = {k: (out[q], out[xs]) for k, (q, xs) in self.points.items()}
        return out["logits"], nxt, probes

    def greedy(self, ids: list[int], n: int, ties: TieForcing | None = None) -> list[int]:
        past = self.empty_past(1)
        step = np.array([ids])
        new: list[int] = []
        for _ in range(n):
            logits, past, probes = self.step(step, past)
            if ties:
                ties.push(probes)
            new.append(int(np.argmax(logits[0, -1])))
            step = np.array([[new[-1]]])
        return new


class TieForcing:
    """tests/parity.py's rounding-tie rule, with onnxruntime as the other side.

    golden and onnxruntime quantise float32 activations that were summed in different orders
    (NumPy's pairwise sums against onnxruntime's ReduceMean, Exp and attention MatMul), so they
    can differ in the last ulp; where x * s lands within that of a half-integer, the two round
    to neighbouring int8 codes, and one flipped code moves the logits ~1e-2. Golden here takes
    onnxruntime's codes wherever they differ, after asserting each difference is 1 and sits
    within a tie (tests/ties.py); any other difference fails. Probes are pushed in the order
    golden's forward passes consume them, per (layer, projection), for batch row `row`."""

    def __init__(self, golden: BitNetModel) -> None:
        from collections import defaultdict, deque

        self.queue: dict[Key, deque] = defaultdict(deque)
        self.golden, self.forced = golden, 0
        self._linear = golden._linear
        golden._linear = self._forced   # type: ignore[method-assign]

    def push(self, probes: Probes, row: int = 0, start: int = 0) -> None:
        """Batch row `row`'s codes, from token `start` on (after left padding)."""
        for key, (q, xs) in probes.items():
            self.queue[key].append((q[row, start:], xs[row, start:]))

    def push_joined(self, *calls: Probes) -> None:
        """Chunks of one sequence fed in separate runs, as golden's single pass sees them."""
        for key in calls[0]:
            self.queue[key].append(tuple(np.concatenate([c[key][i][0] for c in calls])
                                         for i in (0, 1)))

    def _forced(self, li: int, proj: str, q: np.ndarray, s: np.ndarray) -> np.ndarray:
        want, xs = self.queue[(li, proj)].popleft()
        q, forced = force_ties(q, want, xs, f"layer {li} {proj}", "onnxruntime")
        self.forced += forced
        return self._linear(li, proj, q, s)

    def close(self) -> None:
        del self.golden._linear   # back to the class's method


@contextlib.contextmanager
def forcing(golden: BitNetModel) -> Iterator[TieForcing]:
    ties = TieForcing(golden)
    try:
        yield ties
    finally:
        ties.close()
    assert not any(ties.queue.values()), "golden ran fewer BitLinears than onnxruntime"

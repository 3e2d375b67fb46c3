"""What the parity tests against transformers share: a checkpoint writer independent of
tritium's own, rounding-tie forcing, and the logits and greedy-token checks.

Rounding ties. tritium's int8 x ternary sums are exact; transformers' BitNet linears compute the
same sums as a float32 F.linear of the dequantised activations (MKL's summation order), and its
RMSNorm mean sums in torch's own order, so their float32 outputs differ from tritium's by about
1e-7 relative (bit-identical for only ~20 % of q_proj outputs). Neither order can be reproduced
in NumPy. Almost always that changes no int8 activation code, but when x * s lands within float
noise of a half-integer the two round it to neighbouring codes (measured: one such flip in
about 1 of 12 runs of a 3-layer model over 40 tokens), and one flipped code moves the logits by
~1e-2 relative. `TieForcing` therefore watches transformers' BitLinear inputs: wherever
tritium's code differs from transformers', it asserts that the difference is 1 and that
transformers' x * s is within 1e-3 of a rounding tie, and gives tritium transformers' code.
Any other difference still fails, at the 1e-5 tolerance below.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from tritium.host import BitNetModel
from tritium.host.hf_reference import hf_reference
from tritium.host.synthetic import ModelSpec, random_weights

from .ties import force_ties

LOGIT_TOL = 1e-5  # relative to max |logit|


@contextlib.contextmanager
def torch_eager() -> Iterator[None]:
    """transformers wraps unpack_weights and the quantisers in torch.compile, which would spend
    ~25 s compiling C++ for these tiny shapes; eager mode computes the same values."""
    import torch._dynamo

    old, threads = torch._dynamo.config.disable, torch.get_num_threads()
    torch._dynamo.config.disable = True
    torch.set_num_threads(1)   # tiny models, and the machine's cores are shared
    try:
        yield
    finally:
        torch._dynamo.config.disable = old
        torch.set_num_threads(threads)


def _bf16(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(torch.bfloat16)


def write_hf_checkpoint(path: Path, spec: ModelSpec, *, packed: bool = True, seed: int = 0,
                        shards: int = 1, master_dtype: torch.dtype | None = None) -> Path:
    """A random checkpoint written with transformers' pack_weights and safetensors.torch."""
    from safetensors.torch import save_file
    from transformers.integrations.bitnet import pack_weights

    from tritium.golden.packing import pack_hf

    master_dtype = master_dtype or torch.bfloat16
    rw = random_weights(spec, packed=packed, seed=seed)
    tensors = {name: _bf16(x) for name, x in rw.floats.items()}
    for name, q in rw.ternary.items():
        packed_w = pack_weights(torch.from_numpy(q.astype(np.int32)))
        # golden's packer must agree byte for byte with transformers'
        np.testing.assert_array_equal(packed_w.numpy(), pack_hf(q))
        tensors[name + ".weight"] = packed_w
        # the stored value: BitLinear's is the inverse scale it divides by
        tensors[name + ".weight_scale"] = _bf16(np.array([rw.scales[name]], np.float32))
    for name, w in rw.master.items():
        tensors[name + ".weight"] = torch.from_numpy(w).to(master_dtype)
    path.mkdir(parents=True, exist_ok=True)
    names = list(tensors)
    if shards == 1:
        save_file(tensors, str(path / "model.safetensors"), metadata={"format": "pt"})
    else:
        weight_map = {}
        for i in range(shards):
            fname = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
            part = names[i * len(names) // shards:(i + 1) * len(names) // shards]
            save_file({n: tensors[n] for n in part}, str(path / fname),
                      metadata={"format": "pt"})
            weight_map.update(dict.fromkeys(part, fname))
        (path / "model.safetensors.index.json").write_text(json.dumps(
            {"metadata": {"total_size": 0}, "weight_map": weight_map}))
    (path / "config.json").write_text(json.dumps(spec.config(packed=packed)))
    return path


def make_pair(cases: dict[str, tuple[ModelSpec, dict[str, Any]]], name: str, tmp: Path):
    """(tritium golden model, transformers model, spec) for CASES[name]."""
    spec, opts = cases[name]
    path = write_hf_checkpoint(tmp, spec, **opts)
    return BitNetModel.from_pretrained(path, backend="golden"), hf_reference(path), spec


class TieForcing:
    """Records the int8 codes a torch model's BitLinear layers compute (modules named as
    transformers names them: model.layers.<i>.<self_attn|mlp>.<proj>), and makes tritium's
    model take them where the two differ at a rounding tie (asserting that they are ties).
    `prepare(module, x)` turns a layer's input into what it quantises."""

    def __init__(self, modules: dict[str, Any], ours: BitNetModel,
                 prepare: Any = None) -> None:
        from collections import defaultdict

        from tritium.golden.quant import quantize_activations

        self.want: dict[tuple[int, str], list] = defaultdict(list)
        self.calls: dict[tuple[int, str], int] = defaultdict(int)
        self.forced = 0
        self._hooks = []
        for name, module in modules.items():
            parts = name.split(".")
            key = (int(parts[2]), parts[4])

            def hook(module, inputs, _out, key=key):
                x = inputs[0][0]
                if prepare is not None:
                    x = prepare(module, x)
                x = x.detach().float().numpy()
                q, s = quantize_activations(x)   # = transformers' ActQuant codes
                self.want[key].append((q, x * s))

            self._hooks.append(module.register_forward_hook(hook))
        self.ours = ours
        self._linear = ours._linear
        ours._linear = self._forced_linear

    @classmethod
    def of_transformers(cls, hf: Any, ours: BitNetModel) -> TieForcing:
        from transformers.integrations.bitnet import AutoBitLinear, BitLinear

        def before_quant(module: Any, x: Any) -> Any:
            # use_rms_norm: BitLinear quantises after its own norm
            return x if module.rms_norm is None else module.rms_norm(x)

        linears = {n: m for n, m in hf.named_modules() if isinstance(m, (AutoBitLinear, BitLinear))}
        return cls(linears, ours, before_quant)

    def _forced_linear(self, li: int, proj: str, q: np.ndarray, s: np.ndarray) -> np.ndarray:
        key = (li, proj)
        i = self.calls[key]
        self.calls[key] += 1
        want, xs = self.want[key][i]
        q, forced = force_ties(q, want, xs, f"layer {li} {proj} call {i}", "transformers")
        self.forced += forced
        return self._linear(li, proj, q, s)

    def close(self) -> None:
        del self.ours._linear   # back to the class's method
        for h in self._hooks:
            h.remove()


def prompt(spec: ModelSpec, n: int, seed: int) -> list[int]:
    return np.random.default_rng(seed).integers(0, spec.vocab, n).tolist()


def check_logits(ours: BitNetModel, hf: Any, spec: ModelSpec, length: int) -> None:
    """Every logit within LOGIT_TOL x max|logit| of transformers' on a fresh prompt."""
    ids = prompt(spec, length, length)
    ties = TieForcing.of_transformers(hf, ours)
    try:
        with torch.no_grad():
            want = hf(torch.tensor([ids])).logits[0].numpy()
        got = ours.logits(ids)
    finally:
        ties.close()
    assert got.dtype == np.float32 and got.shape == (length, spec.vocab)
    err = np.abs(got - want).max() / np.abs(want).max()
    assert err <= LOGIT_TOL, f"max logit difference {err:.2e} x max|logit|"


def check_greedy(ours: BitNetModel, hf: Any, spec: ModelSpec) -> None:
    """8 greedy tokens identical to transformers' generate(do_sample=False)."""
    ids = prompt(spec, 7, 99)
    ties = TieForcing.of_transformers(hf, ours)
    try:
        with torch.no_grad():
            out = hf.generate(torch.tensor([ids]), max_new_tokens=8, do_sample=False,
                              pad_token_id=0)
        want = out[0, len(ids):].tolist()
        assert len(want) == 8
        assert ours.generate(ids, max_new_tokens=8) == want
    finally:
        ties.close()


def parity_suite(cases: dict[str, tuple[ModelSpec, dict[str, Any]]]) -> tuple[Any, ...]:
    """The `pair` fixture (one per case) and the logits and greedy tests over it, for a test
    module to bind to its own names so that pytest collects them there."""

    @pytest.fixture(scope="module", params=sorted(cases))
    def pair(request, tmp_path_factory):
        with torch_eager():
            ours, hf, spec = make_pair(cases, request.param,
                                       tmp_path_factory.mktemp(request.param))
            yield ours, hf, spec
            ours.close()

    @pytest.mark.parametrize("length", [1, 11])
    def test_logits_match_transformers(pair, length) -> None:
        check_logits(*pair, length)

    def test_greedy_tokens_match_transformers(pair) -> None:
        check_greedy(*pair)

    return pair, test_logits_match_transformers, test_greedy_tokens_match_transformers

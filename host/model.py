"""BitNetModel: a ternary decoder checkpoint run with every BitLinear matmul on a Backend.

The model is architecture-generic: config.json's model_type (and quantization_config) picks a
table entry in host/arch, which names the tensors and holds one layer's forward pass (see
host/arch/bitnet.py and host/arch/llama_bitnet.py); this file loads the weights, runs the
embedding, the layers, the final norm and the LM head, and gives each layer's block what it
calls: norms, BitLinears, attention with RoPE and the KV cache.

Each BitLinear quantises its input per token to int8 (absmax), hands the int8 matrix to the
backend, and dequantises the int32 result with the activation and weight scales. Everything
else runs in NumPy float32 on the CPU.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..golden.checks import InputError
from ..golden.config import ArrayConfig
from ..golden.cycles import Events
from ..golden.quant import dequantize, quantize_activations
from . import ops, zoo
from .arch import PROJECTIONS, ModelConfig
from .backends import Backend, Prepared, make_backend
from .checkpoint import Checkpoint
from .weights import FloatMatrix, iter_layers, read_config


@dataclass
class ProjStats(Events):
    """What one projection cost: calls, the array's events, and wall time in the backend."""

    calls: int = 0
    seconds: float = 0.0
    events_known: bool = True    # False once a backend returned no events

    def add(self, events: Events | None, seconds: float) -> None:
        self.calls += 1
        self.seconds += seconds
        if events is None:
            self.events_known = False
            return
        super().__iadd__(events)

    def __iadd__(self, other: Events) -> ProjStats:
        super().__iadd__(other)
        if isinstance(other, ProjStats):
            self.calls += other.calls
            self.seconds += other.seconds
            self.events_known = self.events_known and other.events_known
        return self

    def as_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"calls": self.calls}
        if self.events_known:
            d.update(super().as_dict())
        d["seconds"] = round(self.seconds, 6)
        return d


@dataclass
class ModelStats:
    """Per-layer, per-projection statistics of everything run since the last reset().

    layers[i][proj] -> ProjStats; layer(i) and total sum them. cpu_seconds is the time spent
    outside the backend (norms, attention, quantisation, LM head).
    """

    backend: str
    array: ArrayConfig
    layers: list[dict[str, ProjStats]] = field(default_factory=list)
    tokens: int = 0           # positions run through the model
    forward_passes: int = 0
    seconds: float = 0.0      # wall time of all forward passes

    @classmethod
    def empty(cls, backend: str, array: ArrayConfig, n_layers: int,
              projections: Sequence[str] = PROJECTIONS) -> ModelStats:
        return cls(backend, array, [{p: ProjStats() for p in projections}
                                    for _ in range(n_layers)])

    def layer(self, i: int) -> ProjStats:
        total = ProjStats()
        for s in self.layers[i].values():
            total += s
        return total

    @property
    def total(self) -> ProjStats:
        total = ProjStats()
        for i in range(len(self.layers)):
            total += self.layer(i)
        return total

    @property
    def backend_seconds(self) -> float:
        return self.total.seconds

    @property
    def cpu_seconds(self) -> float:
        return max(0.0, self.seconds - self.backend_seconds)

    def reset(self) -> None:
        for layer in self.layers:
            for p in layer:
                layer[p] = ProjStats()
        self.tokens = self.forward_passes = 0
        self.seconds = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "array": self.array.to_dict(),
            "tokens": self.tokens,
            "forward_passes": self.forward_passes,
            "seconds": round(self.seconds, 6),
            "backend_seconds": round(self.backend_seconds, 6),
            "cpu_seconds": round(self.cpu_seconds, 6),
            "total": self.total.as_dict(),
            "layers": [
                {"layer": i, "total": self.layer(i).as_dict(),
                 "projections": {p: s.as_dict() for p, s in layer.items()}}
                for i, layer in enumerate(self.layers)
            ],
        }


@dataclass
class _Linear:
    prepared: Prepared
    scale: float
    divide: bool      # linear_class "bitlinear": y = acc / (weight_scale * act_scale)
    bias: np.ndarray | None = None
    norm: np.ndarray | None = None    # quantization_config.use_rms_norm


@dataclass
class _Layer:
    norms: dict[str, np.ndarray]
    linears: dict[str, _Linear]


ProgressFn = Callable[[int, int], None]


class BitNetModel:
    """A loaded ternary model of any registered architecture (BitNet b1.58, Llama + BitNet).
    Use `from_pretrained`; close() (or `with`) frees the backend.

    >>> m = BitNetModel.from_pretrained(path, backend="golden")
    >>> m.logits([1, 2, 3]).shape          # (3, vocab), float32
    >>> m.generate([1, 2, 3], max_new_tokens=8)   # greedy, with a KV cache
    """

    def __init__(self, config: ModelConfig, backend: Backend, layers: list[_Layer],
                 embed: FloatMatrix, lm_head: FloatMatrix, final_norm: np.ndarray,
                 checkpoint: Checkpoint | None = None, tokenizer: Any = None,
                 path: Path | None = None, tokenizer_problem: str | None = None) -> None:
        self.config = config
        self.arch = config.arch
        self._closed = False
        self._tokenizer_problem = tokenizer_problem
        self.backend = backend
        self.path = path
        self.tokenizer = tokenizer
        self._layers = layers
        self._embed = embed
        self._lm_head = ops.LMHead(lm_head)
        self._final_norm = final_norm
        self._ckpt = checkpoint
        self._inv_freq = ops.rope_inv_freq(config.head_dim, config.rope_theta)
        self.stats = ModelStats.empty(backend.name, backend.array, config.num_hidden_layers,
                                      config.projections)

    # -- loading ------------------------------------------------------------------------------

    @classmethod
    def from_pretrained(cls, path: str | Path, backend: str | Backend = "golden",
                        array: ArrayConfig | None = None, *,
                        progress: ProgressFn | None = None, **backend_opts: Any) -> BitNetModel:
        """Load a Hugging Face checkpoint folder of any registered architecture and prepare
        every weight on a backend.

        backend: a name ("golden", "rtl", ...) made with `array` (default: a 4x4 array with
        32-bit accumulators) and backend_opts, or a Backend instance (which the model then owns
        and closes). progress(i, n) is called after each of the n layers is loaded.
        """
        # a shipped model's name ("tiny-adder") stands for its folder in host/zoo
        path = zoo.resolve(path) or path
        ckpt, cfg = read_config(path)
        be: Backend | None = None
        try:
            be = backend if isinstance(backend, Backend) else make_backend(
                backend, array, **backend_opts)
            if cfg.max_k > be.array.max_k:
                raise InputError(
                    f"the model's longest reduction is K={cfg.max_k} but ArrayConfig.max_k="
                    f"{be.array.max_k}; raise max_k to at least {cfg.max_k}")
            embed = FloatMatrix(ckpt, "model.embed_tokens.weight",
                                (cfg.vocab_size, cfg.hidden_size))
            head = embed if cfg.tie_word_embeddings else FloatMatrix(
                ckpt, "lm_head.weight", (cfg.vocab_size, cfg.hidden_size))
            final_norm = ckpt.float32("model.norm.weight", (cfg.hidden_size,)).copy()
            layers = []
            for lw in iter_layers(ckpt, cfg):
                linears = {}
                for full, lin in lw.linears.items():
                    proj = full.split(".")[-1]
                    prep = be.prepare(lin.w, name=f"model.layers.{lw.index}.{full}")
                    linears[proj] = _Linear(prep, lin.scale, lin.divide, lin.bias, lin.norm)
                norms = {n.split(".")[-1]: w for n, w in lw.norms.items()}
                layers.append(_Layer(norms, linears))
                if progress:
                    progress(lw.index + 1, cfg.num_hidden_layers)
            tokenizer, problem = load_tokenizer(ckpt.dir)
            ckpt.release_pages()
        except BaseException:
            if be is not None and not isinstance(backend, Backend):
                be.close()
            ckpt.close()
            raise
        return cls(cfg, be, layers, embed, head, final_norm, ckpt, tokenizer, Path(path), problem)

    # -- running --------------------------------------------------------------------------------

    def _check_ids(self, token_ids: Sequence[int] | np.ndarray, extra: int = 0) -> np.ndarray:
        ids = np.asarray(token_ids)
        if ids.ndim != 1:
            raise InputError(f"token_ids must be a 1-D sequence of token ids, got shape "
                             f"{ids.shape}")
        if ids.size == 0:
            raise InputError("token_ids is empty: the prompt needs at least one token")
        vocab = self.config.vocab_size
        if ids.dtype == np.bool_ or not np.issubdtype(ids.dtype, np.integer):
            # an object array holds Python ints too large for int64 (e.g. 10**30): range-check
            # them here; anything else that is not an integer is named
            for i, v in enumerate(ids.tolist()):
                if isinstance(v, bool) or not isinstance(v, int):
                    raise InputError(f"token ids must be integers, got {v!r} at position {i}")
                if not 0 <= v < vocab:
                    raise InputError(f"token id {v} at position {i} is outside the vocabulary "
                                     f"of {self._name}: valid ids are 0..{vocab - 1}")
            ids = ids.astype(np.int64)
        bad = (ids < 0) | (ids >= vocab)
        if bad.any():
            i = int(np.argmax(bad))
            raise InputError(f"token id {int(ids[i])} at position {i} is outside the "
                             f"vocabulary of {self._name}: valid ids are "
                             f"0..{vocab - 1}")
        limit = self.config.max_position_embeddings
        if ids.size + extra > limit:
            raise InputError(f"{ids.size} prompt tokens + {extra} new tokens exceed "
                             f"max_position_embeddings={limit}")
        return ids.astype(np.int64)

    def _linear(self, li: int, proj: str, q: np.ndarray, s: np.ndarray) -> np.ndarray:
        lin = self._layers[li].linears[proj]
        t0 = time.perf_counter()
        acc, events = self.backend.matmul(q, lin.prepared)
        self.stats.layers[li][proj].add(events, time.perf_counter() - t0)
        if lin.divide:
            y = acc.astype(np.float32) / (np.float32(lin.scale) * s)
        else:
            y = dequantize(acc, s, lin.scale)
        return y if lin.bias is None else y + lin.bias

    def _forward(self, ids: np.ndarray, cache: ops.KVCache) -> np.ndarray:
        """Final-normed hidden states [T, hidden] of ids at positions cache.length onward."""
        t0 = time.perf_counter()
        run = _LayerRun(self, cache, ids.size)
        x = self._embed.rows(ids)
        for li in range(len(self._layers)):
            run.li = li
            x = self.arch.block(run, x)
        cache.length += ids.size
        out = ops.rms_norm(x, self._final_norm, self.config.rms_norm_eps)
        self.stats.tokens += ids.size
        self.stats.forward_passes += 1
        self.stats.seconds += time.perf_counter() - t0
        return out

    def _new_cache(self, capacity: int) -> ops.KVCache:
        cfg = self.config
        return ops.KVCache(cfg.num_hidden_layers, cfg.num_key_value_heads, cfg.head_dim,
                           capacity)

    def logits(self, token_ids: Sequence[int] | np.ndarray) -> np.ndarray:
        """float32 [len(token_ids), vocab]: the logits at every position of a fresh sequence."""
        self._check_open()
        ids = self._check_ids(token_ids)
        h = self._forward(ids, self._new_cache(ids.size))
        t0 = time.perf_counter()
        out = self._lm_head(h)
        self.stats.seconds += time.perf_counter() - t0
        return out

    def generate(self, token_ids: Sequence[int] | np.ndarray, max_new_tokens: int = 8, *,
                 stop_at_eos: bool = True,
                 on_token: Callable[[int], None] | None = None) -> list[int]:
        """Greedy decoding with a KV cache; returns the new token ids (at most max_new_tokens).

        stop_at_eos: stop after emitting one of config.eos_token_ids, as transformers'
        generate does (the eos token is included). on_token(id) is called for each new token.
        """
        self._check_open()
        if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) \
                or max_new_tokens < 0:
            raise InputError(f"max_new_tokens must be an integer >= 0, got {max_new_tokens!r}")
        ids = self._check_ids(token_ids, max_new_tokens)
        cache = self._new_cache(ids.size + max_new_tokens)
        eos = set(self.config.eos_token_ids) if stop_at_eos else set()
        new: list[int] = []
        step = ids
        while len(new) < max_new_tokens:
            h = self._forward(step, cache)
            t0 = time.perf_counter()
            nxt = int(np.argmax(self._lm_head(h[-1:])[0]))
            self.stats.seconds += time.perf_counter() - t0
            new.append(nxt)
            if on_token:
                on_token(nxt)
            if nxt in eos:
                break
            step = np.array([nxt], dtype=np.int64)
        return new

    # -- text ---------------------------------------------------------------------------------

    def encode(self, text: str) -> list[int]:
        if self.tokenizer is None:
            raise InputError(self._no_tokenizer + "; give token ids instead of text")
        if not text:
            raise InputError("the prompt is empty")
        return list(self.tokenizer.encode(text).ids)

    def decode(self, ids: Sequence[int]) -> str:
        if self.tokenizer is None:
            raise InputError(self._no_tokenizer)
        return str(self.tokenizer.decode(list(ids)))

    # -- lifetime -----------------------------------------------------------------------------

    @property
    def _name(self) -> str:
        return str(self.path) if self.path else "the model"

    @property
    def _no_tokenizer(self) -> str:
        return self._tokenizer_problem or f"{self._name} has no tokenizer.json"

    def _check_open(self) -> None:
        if self._closed:
            raise InputError("this BitNetModel is closed")

    def close(self) -> None:
        """Close the backend (the simulator, for "rtl") and unmap the checkpoint."""
        self._closed = True
        self.backend.close()
        self._layers = []
        self._embed = self._lm_head = None  # type: ignore[assignment]
        if self._ckpt is not None:
            self._ckpt.close()
            self._ckpt = None

    def __enter__(self) -> BitNetModel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _LayerRun:
    """What an architecture's block calls for layer `li` of one forward pass (arch.LayerRun)."""

    def __init__(self, model: BitNetModel, cache: ops.KVCache, t: int) -> None:
        self.model, self.cache, self.t, self.li = model, cache, t, 0
        self.start = cache.length
        self.cos, self.sin = ops.rope_cos_sin(np.arange(self.start, self.start + t),
                                              model._inv_freq)

    def norm(self, name: str, x: np.ndarray) -> np.ndarray:
        weight = self.model._layers[self.li].norms[name]
        return ops.rms_norm(x, weight, self.model.config.rms_norm_eps)

    def linears(self, names: tuple[str, ...], x: np.ndarray) -> list[np.ndarray]:
        layer = self.model._layers[self.li]
        shared: tuple[np.ndarray, np.ndarray] | None = None
        bits = self.model.backend.array.act_bits   # 8 for BitNet b1.58; fewer to study accuracy
        out = []
        for proj in names:
            norm = layer.linears[proj].norm
            if norm is not None:
                qs = quantize_activations(
                    ops.rms_norm(x, norm, self.model.config.linear_rms_norm_eps), bits=bits)
            else:
                # linears that see the same input share its quantisation (identical codes)
                shared = shared or quantize_activations(x, bits=bits)
                qs = shared
            out.append(self.model._linear(self.li, proj, *qs))
        return out

    def attention(self, q: np.ndarray, k: np.ndarray, v: np.ndarray) -> np.ndarray:
        cfg, t = self.model.config, self.t
        hd = cfg.head_dim
        q = q.reshape(t, cfg.num_attention_heads, hd).transpose(1, 0, 2)
        k = k.reshape(t, cfg.num_key_value_heads, hd).transpose(1, 0, 2)
        v = v.reshape(t, cfg.num_key_value_heads, hd).transpose(1, 0, 2)
        q = ops.apply_rope(q, self.cos, self.sin)
        k = ops.apply_rope(k, self.cos, self.sin)
        k_all, v_all = self.cache.update(self.li, k, v)
        return ops.attention(q, k_all, v_all, self.start, hd ** -0.5)


def load_tokenizer(directory: Path) -> tuple[Any, str | None]:
    """(tokenizers.Tokenizer, None) from tokenizer.json if the folder has one and the
    `tokenizers` package is there; otherwise (None, why not). Token ids work either way."""
    path = directory / "tokenizer.json"
    if not path.is_file():
        return None, None
    try:
        from tokenizers import Tokenizer
    except ImportError:
        return None, f"reading {path} needs the `tokenizers` package (pip install tokenizers)"
    try:
        return Tokenizer.from_file(str(path)), None
    except Exception as exc:  # the Rust side raises its own exception type
        raise InputError(f"{path}: cannot load tokenizer ({exc})") from None

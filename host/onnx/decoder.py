"""The ONNX graph of a ternary decoder, traced from its architecture's own forward pass.

`build_decoder` runs each layer's `block()` from the architecture table (host/arch) with a
`SymbolicLayer` in place of the runtime's LayerRun and `graph.Value`s in place of arrays, so the
graph has the architecture's operations in golden's order with no per-architecture code here.
What a LayerRun provides (norms, BitLinears, attention with RoPE and the KV cache) is written
once below, op for op as host/ops.py and host/model.py compute it:

- a BitLinear: golden.quant's per-token absmax int8 quantiser (Abs, ReduceMax, Max with 1e-5,
  Div, Mul by 127, Round half to even, Clip to [-128, 127], Cast to int8), `MatMulInteger` with
  the ternary weight as an int8 [in, out] initializer, Cast to float32, then the rescale:
  `(acc / s) * weight_scale` (autobitlinear) or `acc / (weight_scale * s)` (bitlinear), + bias;
- everything else in float32: embeddings (Gather), RMSNorm, RoPE (cos/sin in float64 rounded
  once, as golden), causal grouped-query attention over past + present keys, the LM head (Gemm).

Inputs and outputs follow Hugging Face Optimum's decoder export (`TextDecoderWithPositionIds
OnnxConfig` with past): `input_ids`, `attention_mask`, `position_ids` (int64),
`past_key_values.N.key|value` (float32 [batch, kv_heads, past, head_dim]); `logits` and
`present.N.key|value` ([batch, kv_heads, past + seq, head_dim]).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ...golden.checks import InputError
from ..arch import ModelConfig
from ..checkpoint import Checkpoint
from ..ops import rope_inv_freq
from ..weights import FloatMatrix, LayerWeights, TernaryLinear, iter_layers
from .trace import DOUBLE, FLOAT, INT8, INT64, Graph, Value

# Optimum's dynamic axis names
BATCH, SEQ, PAST = "batch_size", "sequence_length", "past_sequence_length"
TOTAL = f"{PAST} + {SEQ}"
ACT_EPS = np.float32(1e-5)   # golden.quant's clamp of max|x|


def input_names(cfg: ModelConfig) -> list[str]:
    names = ["input_ids", "attention_mask", "position_ids"]
    for i in range(cfg.num_hidden_layers):
        names += [f"past_key_values.{i}.key", f"past_key_values.{i}.value"]
    return names


def output_names(cfg: ModelConfig) -> list[str]:
    names = ["logits"]
    for i in range(cfg.num_hidden_layers):
        names += [f"present.{i}.key", f"present.{i}.value"]
    return names


# ------------------------------------------------------------------------------------------
# the pieces, each as golden computes it
# ------------------------------------------------------------------------------------------

def reduce(g: Graph, op: str, x: Value, opset: int) -> Value:
    """op over the last axis, keeping it. `axes` became an input in opset 13 for ReduceSum and
    in opset 18 for the other reductions."""
    if opset >= (13 if op == "ReduceSum" else 18):
        return g.op(op, x, g.ints([-1]), keepdims=1)
    return g.op(op, x, axes=[-1], keepdims=1)


def rms_norm(g: Graph, x: Value, weight: Value, eps: float, opset: int) -> Value:
    """host.ops.rms_norm: weight * (x * (1 / sqrt(mean(x * x) + eps)))."""
    variance = reduce(g, "ReduceMean", x * x, opset)
    inv = g.reciprocal(g.op("Sqrt", variance + np.float32(eps)))
    return weight * (x * inv)


def quantize(g: Graph, x: Value, opset: int) -> tuple[Value, Value]:
    """golden.quant.quantize_activations: (int8 q, float32 s), s = (1 / max(max|x|, 1e-5)) * 127,
    q = clip(round_half_even(x * s), -128, 127)."""
    amax = reduce(g, "ReduceMax", g.op("Abs", x), opset)
    s = g.reciprocal(g.op("Max", amax, g.const(ACT_EPS))) * np.float32(127.0)
    q = g.op("Clip", g.op("Round", x * s), g.const(-128.0), g.const(127.0))
    return g.op("Cast", q, to=INT8), s


def bitlinear(g: Graph, q: Value, s: Value, lin: TernaryLinear, prefix: str) -> Value:
    """MatMulInteger of the int8 codes with the int8 ternary [in, out] weight, then the
    float rescale as host.model (divide: bitlinear; multiply: autobitlinear)."""
    w = g.initializer(prefix + ".weight", lin.w.astype(np.int8, copy=False))
    ws = g.initializer(prefix + ".weight_scale", np.array(lin.scale, np.float32))
    acc = g.op("Cast", g.op("MatMulInteger", q, w), to=FLOAT)
    y = acc / (ws * s) if lin.divide else (acc / s) * ws
    if lin.bias is not None:
        y = y + g.initializer(prefix + ".bias", lin.bias.astype(np.float32))
    return y


@dataclass
class Step:
    """What every layer of one forward pass shares: RoPE's cos and sin [batch, 1, seq,
    head_dim] and the attention mask [batch, 1, seq, past + seq] (True: not attended)."""

    cos: Value
    sin: Value
    masked: Value


def step_values(g: Graph, cfg: ModelConfig, ids: Value, mask: Value, positions: Value,
                past_key: Value) -> Step:
    with g.scope("model.rotary_emb"):
        inv_freq = g.initializer("model.rotary_emb.inv_freq",
                                 rope_inv_freq(cfg.head_dim, cfg.rope_theta))
        # [B, S, 1] * [D/2]: the float32 angles, as host.ops.rope_cos_sin
        freqs = g.op("Unsqueeze", g.op("Cast", positions, to=FLOAT), g.ints([-1])) * inv_freq
        emb = g.op("Cast", g.op("Concat", freqs, freqs, axis=-1), to=DOUBLE)
        # cos and sin in float64, rounded once to float32 (golden does the same)
        cos, sin = (g.op("Unsqueeze", g.op("Cast", g.op(f, emb), to=FLOAT), g.ints([1]))
                    for f in ("Cos", "Sin"))
    with g.scope("model.attention_mask"):
        # query i (cache index past + i) sees keys 0 .. past + i, and no key whose
        # attention_mask is 0 (Optimum's padding convention)
        past = g.op("Shape", past_key, start=2, end=3)
        total = g.op("Add", past, g.op("Shape", ids, start=1, end=2))
        scalar = [g.op("Squeeze", v, g.ints([0])) for v in (past, total)]
        keys = g.op("Range", g.const(0, np.int64), scalar[1], g.const(1, np.int64))
        queries = g.op("Range", scalar[0], scalar[1], g.const(1, np.int64))
        causal = g.op("Greater", g.op("Unsqueeze", keys, g.ints([0])),
                      g.op("Unsqueeze", queries, g.ints([1])))
        padding = g.op("Unsqueeze", g.op("Equal", mask, g.const(0, np.int64)), g.ints([1, 2]))
        masked = g.op("Or", causal, padding)
    return Step(cos, sin, masked)


def rotate(g: Graph, x: Value, step: Step, head_dim: int) -> Value:
    """host.ops.apply_rope: x * cos + rotate_half(x) * sin, x [B, heads, S, D]."""
    half = head_dim // 2
    lo, hi = g.node("Split", [x, g.ints([half, half])], 2, axis=-1)
    return (x * step.cos) + (g.op("Concat", -hi, lo, axis=-1) * step.sin)


class SymbolicLayer:
    """arch.LayerRun for the tracer: each call adds one layer's nodes to the graph."""

    def __init__(self, g: Graph, cfg: ModelConfig, weights: LayerWeights, step: Step,
                 past: tuple[Value, Value], opset: int) -> None:
        self.g, self.cfg, self.step, self.past, self.opset = g, cfg, step, past, opset
        self.prefix = f"model.layers.{weights.index}"
        self.present: tuple[Value, Value] | None = None
        # the runtime keys a layer's norms by their last name ("attn_sub_norm")
        self._norms = {full.split(".")[-1]: (full, w) for full, w in weights.norms.items()}
        self._linears = {full.split(".")[-1]: (full, lin)
                         for full, lin in weights.linears.items()}

    def norm(self, name: str, x: Value) -> Value:
        full, w = self._norms[name]
        where = f"{self.prefix}.{full}"
        with self.g.scope(where):
            return rms_norm(self.g, x, self.g.initializer(where + ".weight", w),
                            self.cfg.rms_norm_eps, self.opset)

    def linears(self, names: tuple[str, ...], x: Value) -> list[Value]:
        g, out = self.g, []
        shared: tuple[Value, Value] | None = None
        for proj in names:
            full, lin = self._linears[proj]
            where = f"{self.prefix}.{full}"
            with g.scope(where):
                if lin.norm is not None:
                    normed = rms_norm(g, x, g.initializer(where + ".rms_norm.weight", lin.norm),
                                      self.cfg.linear_rms_norm_eps, self.opset)
                    qs = quantize(g, normed, self.opset)
                else:
                    # linears that see the same input share its quantisation, as the runtime
                    shared = shared or quantize(g, x, self.opset)
                    qs = shared
                out.append(bitlinear(g, *qs, lin, where))
        return out

    def attention(self, q: Value, k: Value, v: Value) -> Value:
        g, cfg = self.g, self.cfg
        h, kv, d = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
        with g.scope(f"{self.prefix}.self_attn"):
            def heads(x: Value, n: int) -> Value:   # [B, S, n*D] -> [B, n, S, D]
                return g.op("Transpose", g.op("Reshape", x, g.ints([0, 0, n, d])),
                            perm=[0, 2, 1, 3])

            q = rotate(g, heads(q, h), self.step, d)
            k = rotate(g, heads(k, kv), self.step, d)
            keys = g.op("Concat", self.past[0], k, axis=2)
            values = g.op("Concat", self.past[1], heads(v, kv), axis=2)
            self.present = (keys, values)
            # each KV head serves its H/KV query heads (HF's repeat_kv order) without a copy:
            # [B, KV, G*S, D] @ [B, KV, D, T], as host.ops.attention
            qg = g.op("Reshape", q, g.ints([0, kv, -1, d]))
            scores = g.op("MatMul", qg, g.op("Transpose", keys, perm=[0, 1, 3, 2]))
            scores = g.op("Reshape", scores * np.float32(d ** -0.5), g.ints([0, h, -1, 0]))
            # the float32 minimum rather than -inf: a fully padded row stays finite (as HF)
            scores = g.op("Where", self.step.masked, g.const(np.finfo(np.float32).min), scores)
            e = g.op("Exp", scores - reduce(g, "ReduceMax", scores, self.opset))
            probs = e / reduce(g, "ReduceSum", e, self.opset)
            probs = g.op("Reshape", probs, g.ints([0, kv, -1, 0]))
            out = g.op("Reshape", g.op("MatMul", probs, values), g.ints([0, h, -1, d]))
            return g.op("Reshape", g.op("Transpose", out, perm=[0, 2, 1, 3]),
                        g.ints([0, 0, h * d]))


ProgressFn = Callable[[int, int], None]


def build_decoder(g: Graph, ckpt: Checkpoint, cfg: ModelConfig, opset: int,
                  progress: ProgressFn | None = None) -> None:
    """Fill g with the whole decoder: inputs, embedding, every layer's traced block, final norm,
    LM head and outputs."""
    kv, d, n = cfg.num_key_value_heads, cfg.head_dim, cfg.num_hidden_layers
    ids = g.input("input_ids", INT64, [BATCH, SEQ])
    mask = g.input("attention_mask", INT64, [BATCH, TOTAL])
    positions = g.input("position_ids", INT64, [BATCH, SEQ])
    past = [tuple(g.input(f"past_key_values.{i}.{kind}", FLOAT, [BATCH, kv, PAST, d])
                  for kind in ("key", "value")) for i in range(n)]

    embed = _float_matrix(ckpt, "model.embed_tokens.weight", cfg)
    table = g.initializer("model.embed_tokens.weight", embed)
    del embed
    with g.scope("model.embed_tokens"):
        x = g.op("Gather", table, ids)
    step = step_values(g, cfg, ids, mask, positions, past[0][0])

    presents = []
    for lw in iter_layers(ckpt, cfg):
        layer = SymbolicLayer(g, cfg, lw, step, past[lw.index], opset)  # type: ignore[arg-type]
        x = cfg.arch.block(layer, x)    # type: ignore[arg-type]
        if layer.present is None:
            raise InputError(f"{cfg.model_type}'s block() never called layer.attention(): the "
                             "exporter cannot build its KV cache outputs")
        presents.append(layer.present)
        if progress:
            progress(lw.index + 1, n)

    with g.scope("model.norm"):
        h = rms_norm(g, x, g.initializer("model.norm.weight",
                                         ckpt.float32("model.norm.weight", (cfg.hidden_size,))),
                     cfg.rms_norm_eps, opset)
    with g.scope("lm_head"):
        head = table if cfg.tie_word_embeddings else g.initializer(
            "lm_head.weight", _float_matrix(ckpt, "lm_head.weight", cfg))
        flat = g.op("Gemm", g.op("Reshape", h, g.ints([-1, cfg.hidden_size])), head, transB=1)
        shape = g.op("Concat", g.op("Shape", ids), g.ints([cfg.vocab_size]), axis=0)
        logits = g.op("Reshape", flat, shape)
    g.output(logits, "logits", FLOAT, [BATCH, SEQ, cfg.vocab_size])
    for i, (k, v) in enumerate(presents):
        g.output(k, f"present.{i}.key", FLOAT, [BATCH, kv, TOTAL, d])
        g.output(v, f"present.{i}.value", FLOAT, [BATCH, kv, TOTAL, d])


def _float_matrix(ckpt: Checkpoint, name: str, cfg: ModelConfig) -> np.ndarray:
    """A [vocab, hidden] float tensor widened to float32 (bf16 -> float32 is exact)."""
    m = FloatMatrix(ckpt, name, (cfg.vocab_size, cfg.hidden_size))
    return m.block_into(0, cfg.vocab_size, np.empty(m.shape, np.float32))

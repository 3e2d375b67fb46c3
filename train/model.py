"""A BitNet b1.58 decoder for quantisation-aware training, in one file (nanoGPT style).

The block is transformers' `modeling_bitnet.py` (and tritium's `host/model.py`):

    x = x + o_proj(attn_sub_norm(attention(rope(q_proj(h)), rope(k_proj(h)), v_proj(h))))
        with h = input_layernorm(x)
    x = x + down_proj(ffn_sub_norm(relu(gate_proj(h))**2 * up_proj(h)))
        with h = post_attention_layernorm(x)
    logits = norm(x) @ embed_tokens.T          (tied embeddings)

RMSNorm, grouped-query attention, RoPE, no biases. Every projection is a `BitLinear`: in
training it fake-quantises its input (per-token absmax int8) and its weight (absmean ternary)
with straight-through gradients; with ``exact=True`` (set by `BitNet.quantised()`) it runs the
inference arithmetic of tritium's golden model instead: an exact integer matmul of the int8 and
ternary codes, then ``(acc / s) * weight_scale``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .config import BitNetConfig
from .quant import act_codes, fake_quant_act, fake_quant_weight, weight_codes

PROJECTIONS = {"self_attn": ("q_proj", "k_proj", "v_proj", "o_proj"),
               "mlp": ("gate_proj", "up_proj", "down_proj")}


class RMSNorm(nn.Module):
    """float32 RMSNorm in golden's order: weight * (x * (1 / sqrt(mean(x^2) + eps)))."""

    def __init__(self, size: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(size))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        variance = x.pow(2).mean(-1, keepdim=True)
        return self.weight * (x * (1.0 / torch.sqrt(variance + self.eps)))


class BitLinear(nn.Linear):
    """nn.Linear without bias whose weight and input are quantised as BitNet b1.58's."""

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__(in_features, out_features, bias=False)
        self.exact = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.exact:
            return F.linear(fake_quant_act(x), fake_quant_weight(self.weight))
        q, s = act_codes(x)
        wq, ws = weight_codes(self.weight)
        # float64 sums of int8 x ternary products are exact: this is golden's int32 accumulator
        acc = torch.matmul(q.double(), wq.double().T).float()
        return (acc / s) * ws


def rope_tables(cfg: BitNetConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin [max_positions, head_dim], computed as golden's `ops.rope_cos_sin`."""
    hd = cfg.head_dim
    exponent = torch.arange(0, hd, 2, dtype=torch.float32) / torch.tensor(float(hd))
    inv_freq = 1.0 / (torch.tensor(cfg.rope_theta, dtype=torch.float32) ** exponent)
    pos = torch.arange(cfg.max_position_embeddings, dtype=torch.float32)
    freqs = pos[:, None] * inv_freq[None, :]
    emb = torch.cat([freqs, freqs], dim=-1).double()
    return emb.cos().float(), emb.sin().float()


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat([-x[..., half:], x[..., :half]], dim=-1)


class Attention(nn.Module):
    def __init__(self, cfg: BitNetConfig) -> None:
        super().__init__()
        h, hd = cfg.hidden_size, cfg.head_dim
        self.heads, self.kv_heads, self.head_dim = (cfg.num_attention_heads,
                                                    cfg.num_key_value_heads, hd)
        self.q_proj = BitLinear(h, self.heads * hd)
        self.k_proj = BitLinear(h, self.kv_heads * hd)
        self.v_proj = BitLinear(h, self.kv_heads * hd)
        self.o_proj = BitLinear(self.heads * hd, h)
        self.attn_sub_norm = RMSNorm(h, cfg.rms_norm_eps)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        q = self.q_proj(x).view(b, t, self.heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(b, t, self.kv_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(b, t, self.kv_heads, self.head_dim).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        # query head i reads KV head i // group, transformers' repeat_kv order
        group = self.heads // self.kv_heads
        k = k.repeat_interleave(group, dim=1)
        v = v.repeat_interleave(group, dim=1)
        scores = (q @ k.transpose(-1, -2)) * (self.head_dim ** -0.5)
        causal = torch.ones(t, t, dtype=torch.bool, device=x.device).triu(1)
        probs = scores.masked_fill(causal, float("-inf")).softmax(dim=-1)
        a = (probs @ v).transpose(1, 2).reshape(b, t, self.heads * self.head_dim)
        return self.o_proj(self.attn_sub_norm(a))


class MLP(nn.Module):
    def __init__(self, cfg: BitNetConfig) -> None:
        super().__init__()
        h, i = cfg.hidden_size, cfg.intermediate_size
        self.gate_proj = BitLinear(h, i)
        self.up_proj = BitLinear(h, i)
        self.down_proj = BitLinear(i, h)
        self.ffn_sub_norm = RMSNorm(i, cfg.rms_norm_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(self.ffn_sub_norm(F.relu(self.gate_proj(x)).square()
                                                * self.up_proj(x)))


class Block(nn.Module):
    def __init__(self, cfg: BitNetConfig) -> None:
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.self_attn = Attention(cfg)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.mlp = MLP(cfg)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        x = x + self.self_attn(self.input_layernorm(x), cos, sin)
        return x + self.mlp(self.post_attention_layernorm(x))


class BitNet(nn.Module):
    """Parameter names follow transformers' BitNetForCausalLM without the ``model.`` prefix."""

    def __init__(self, cfg: BitNetConfig) -> None:
        super().__init__()
        cfg.check()
        self.config = cfg
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList(Block(cfg) for _ in range(cfg.num_hidden_layers))
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        cos, sin = rope_tables(cfg)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        self.apply(self._init)
        for layer in self.layers:
            # GPT-2's scaled init of the projections that write into the residual stream
            for proj in (layer.self_attn.o_proj, layer.mlp.down_proj):
                nn.init.normal_(proj.weight, std=0.02 / math.sqrt(2 * cfg.num_hidden_layers))

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, nn.Linear | nn.Embedding):
            nn.init.normal_(m.weight, std=0.02)

    def bitlinears(self) -> dict[str, BitLinear]:
        """``model.layers.<i>.<self_attn|mlp>.<proj>`` -> module, in checkpoint order."""
        out = {}
        for i, layer in enumerate(self.layers):
            for part, projs in PROJECTIONS.items():
                for p in projs:
                    out[f"model.layers.{i}.{part}.{p}"] = getattr(getattr(layer, part), p)
        return out

    def quantised(self, exact: bool = True) -> BitNet:
        """Switch every BitLinear to golden's integer inference arithmetic (or back)."""
        for m in self.bitlinears().values():
            m.exact = exact
        return self

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """ids [B, T] -> logits [B, T, vocab] (float32)."""
        t = ids.shape[1]
        if t > self.config.max_position_embeddings:
            raise ValueError(f"sequence of {t} tokens exceeds max_position_embeddings="
                             f"{self.config.max_position_embeddings}")
        cos, sin = self.rope_cos[:t], self.rope_sin[:t]
        x = self.embed_tokens(ids)
        for layer in self.layers:
            x = layer(x, cos, sin)
        return self.norm(x) @ self.embed_tokens.weight.T

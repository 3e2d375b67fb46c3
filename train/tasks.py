"""Training tasks and their tokenizers, without torch (the evaluator needs them too).

- `AddTask`: decimal addition of numbers below 10**digits. A sequence is the prompt "a+b=",
  then the digits of a+b, then the end-of-sequence token; the loss covers the answer and EOS.
  One problem in about a thousand is held out of training (`is_held_out`) for evaluation.
- `TextTask`: next-token prediction on a text file, byte-level or with a BPE trained on it.

Tokenizers are `tokenizers.Tokenizer` objects saved as tokenizer.json beside the checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

from ..golden.checks import InputError

PAD, EOS = "<pad>", "<eos>"
ADD_SYMBOLS = [*"0123456789", "+", "="]
MAX_DIGITS = 6
BYTE_VOCAB = 256 + 2


def char_tokenizer(symbols: list[str]) -> Tokenizer:
    """One token per character: <pad> = 0, <eos> = 1, then the symbols."""
    vocab = {PAD: 0, EOS: 1, **{c: i + 2 for i, c in enumerate(symbols)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tok.decoder = decoders.Fuse()
    tok.add_special_tokens([PAD, EOS])
    return tok


def _hash(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    # a fixed integer hash (Knuth's multiplicative), so the held-out set never changes
    key = (a.astype(np.uint64) * np.uint64(1_000_003) + b.astype(np.uint64))
    return (key * np.uint64(2_654_435_761)) % np.uint64(2**32)


def is_held_out(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """True for the ~0.1 % of (a, b) pairs that training never sees."""
    return _hash(np.asarray(a), np.asarray(b)) < np.uint64(2**32 // 1000)


@dataclass
class AddTask:
    digits: int = 3
    tokenizer: Tokenizer = field(init=False)

    def __post_init__(self) -> None:
        if isinstance(self.digits, bool) or not isinstance(self.digits, int) \
                or not 1 <= self.digits <= MAX_DIGITS:
            raise InputError(f"--digits must be an integer from 1 to {MAX_DIGITS}, "
                             f"got {self.digits!r}")
        self.tokenizer = char_tokenizer(ADD_SYMBOLS)
        self.pad_id = self.tokenizer.token_to_id(PAD)
        self.eos_id = self.tokenizer.token_to_id(EOS)
        self._ids = {c: self.tokenizer.token_to_id(c) for c in ADD_SYMBOLS}

    @property
    def name(self) -> str:
        return f"add{self.digits}"

    @property
    def seq_len(self) -> int:
        """The longest sequence: "a+b=" + (digits + 1) answer digits + EOS."""
        return 2 * self.digits + 2 + self.digits + 1 + 1

    @property
    def limit(self) -> int:
        return 10 ** self.digits

    def encode(self, text: str) -> list[int]:
        return [self._ids[c] for c in text]

    def sample(self, rng: np.random.Generator, n: int, *, held_out: bool = False
               ) -> np.ndarray:
        """n problems [n, 2] drawn uniformly from the training (or the held-out) set."""
        out = np.empty((0, 2), np.int64)
        while len(out) < n:
            ab = rng.integers(0, self.limit, (max(2 * n, 64), 2))
            keep = is_held_out(ab[:, 0], ab[:, 1]) == held_out
            out = np.concatenate([out, ab[keep]])
        return out[:n]

    def batch(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        """(inputs, targets) [n, seq_len - 1]; targets are -100 except on the answer and EOS."""
        seqs = np.full((n, self.seq_len), self.pad_id, np.int64)
        loss = np.zeros((n, self.seq_len), bool)
        for r, (a, b) in enumerate(self.sample(rng, n)):
            prompt = self.encode(f"{a}+{b}=")
            answer = [*self.encode(str(a + b)), self.eos_id]
            seqs[r, :len(prompt) + len(answer)] = prompt + answer
            loss[r, len(prompt):len(prompt) + len(answer)] = True
        targets = np.where(loss[:, 1:], seqs[:, 1:], -100)
        return seqs[:, :-1], targets


def text_tokenizer(text: str, kind: str, vocab_size: int) -> Tokenizer:
    """Byte-level (256 byte tokens) or a byte-level BPE of vocab_size trained on text."""
    if kind not in ("byte", "bpe"):
        raise InputError(f"--tokenizer must be 'byte' or 'bpe', got {kind!r}")
    if kind == "byte":
        vocab_size = BYTE_VOCAB
    elif vocab_size < BYTE_VOCAB:
        raise InputError(f"--vocab-size must be at least {BYTE_VOCAB} for a BPE "
                         f"(256 bytes + {PAD} + {EOS}), got {vocab_size}")
    tok = Tokenizer(models.BPE())
    # byte kind: no regex split, so a vocabulary of exactly the 256 bytes gets no merges
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False,
                                                 use_regex=kind == "bpe")
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[PAD, EOS],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator([text], trainer=trainer)
    return tok


@dataclass
class TextTask:
    path: Path
    tokenizer_kind: str = "byte"
    vocab_size: int = 512
    seq_len: int = 64
    tokenizer: Tokenizer = field(init=False)

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise InputError(f"--text {self.path}: no such file") from None
        except IsADirectoryError:
            raise InputError(f"--text {self.path}: is a directory, expected a text file") \
                from None
        except UnicodeDecodeError as e:
            raise InputError(f"--text {self.path}: not UTF-8 text ({e.reason} at byte "
                             f"{e.start})") from None
        if isinstance(self.seq_len, bool) or not isinstance(self.seq_len, int) \
                or self.seq_len < 2:
            raise InputError(f"--seq-len must be an integer >= 2, got {self.seq_len!r}")
        self.tokenizer = text_tokenizer(text, self.tokenizer_kind, self.vocab_size)
        self.pad_id = self.tokenizer.token_to_id(PAD)
        self.eos_id = self.tokenizer.token_to_id(EOS)
        self.tokens = np.array(self.tokenizer.encode(text).ids, np.int64)
        if self.tokens.size < self.seq_len + 1:
            raise InputError(f"--text {self.path}: {self.tokens.size} tokens, fewer than "
                             f"--seq-len + 1 = {self.seq_len + 1}; give a longer text")

    @property
    def name(self) -> str:
        return f"text:{self.path.name}"

    def batch(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        """n random windows: (inputs, next-token targets) [n, seq_len]."""
        starts = rng.integers(0, self.tokens.size - self.seq_len, n)
        win = self.tokens[starts[:, None] + np.arange(self.seq_len + 1)]
        return win[:, :-1], win[:, 1:]

"""tritium: co-design toolkit for ternary (BitNet b1.58) LLM accelerators."""

__version__ = "0.1.0"

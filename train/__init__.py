"""Quantisation-aware training of BitNet b1.58 models in PyTorch (the ``train`` extra).

`loop.train` trains a `model.BitNet` on a task from `tasks` and exports the Hugging Face packed
checkpoint that `tritium.host.BitNetModel` and transformers load; `cli` is `tritium train`.
`eval_add` scores addition models on tritium's own runtime and needs no torch.

Layering: above `host` (imports golden and host); explore imports `evaluate` (torch-free) for
the sweep's accuracy metric, and nothing else of tritium's libraries imports it.
"""

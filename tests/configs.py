"""Array configurations the RTL benches run on: shapes and widths chosen so that together they
cover a 1x1 array, non-square arrays, K-chunking past act_depth, several weight slots, and
accumulators narrow enough that K at the overflow-safe limit fits in a bus-driven test."""

from tritium.golden import ArrayConfig

BENCH_CONFIGS = {
    "1x1": ArrayConfig(rows=1, cols=1, acc_bits=10, max_k=3, act_depth=4),
    "2x3": ArrayConfig(rows=2, cols=3, acc_bits=14, max_k=63, act_depth=5),
    "4x4": ArrayConfig(rows=4, cols=4, acc_bits=16, max_k=255, act_depth=8, weight_tiles=3),
    "4x8": ArrayConfig(rows=4, cols=8, act_depth=16, weight_tiles=3),
    "8x8": ArrayConfig(rows=8, cols=8, act_depth=12),
}

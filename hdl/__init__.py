"""Amaranth RTL of the adder-only ternary systolic accelerator."""

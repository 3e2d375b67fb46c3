"""cocotb benches on Verilator and the simulated device."""

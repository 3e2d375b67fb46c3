"""The bus contract (tritium.bus): what hdl, host, sim and boards agree on. Imports only golden."""

from .contract import (
    COUNTER_BITS,
    COUNTER_CSRS,
    COUNTERS,
    CTRL_CLEAR,
    CTRL_START,
    MAGIC,
    OP_READ,
    OP_WAIT,
    OP_WRITE,
    OPS,
    STATUS_BUSY,
    STATUS_DONE,
    STATUS_ERROR,
    VERSION,
    Csr,
    Device,
    DeviceError,
    Program,
    Region,
    RegMapBase,
    extend_csrs,
    log2ceil,
    pack_lanes,
    to_signed,
)

__all__ = [
    "COUNTERS", "COUNTER_BITS", "COUNTER_CSRS", "CTRL_CLEAR", "CTRL_START", "MAGIC", "OPS",
    "OP_READ", "OP_WAIT", "OP_WRITE", "STATUS_BUSY", "STATUS_DONE", "STATUS_ERROR", "VERSION",
    "Csr", "Device", "DeviceError", "Program", "Region", "RegMapBase", "extend_csrs",
    "log2ceil", "pack_lanes", "to_signed",
]

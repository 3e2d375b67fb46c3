"""Export a ternary checkpoint (any registered architecture) as a standard ONNX decoder.

    from tritium.host.onnx.export import export_onnx
    result = export_onnx("tiny-adder", "tiny-adder.onnx")

The graph (decoder.py) uses opset 17 or later standard ops only, so plain onnxruntime runs it:
every BitLinear is golden's int8 activation quantiser + `MatMulInteger` on an int8 ternary
initializer + the float rescale; everything else stays float32. Inputs and outputs are Hugging
Face Optimum's (`input_ids`, `attention_mask`, `position_ids`, `past_key_values.N.key|value` ->
`logits`, `present.N.key|value`), so a generation loop written for an Optimum export runs it.

Files are written all or nothing: the model (and, past protobuf's 2 GiB limit, its external
data file `<name>_data`, Optimum's naming) go to a temporary folder beside the target and are
renamed into place only once complete; a failed export leaves neither behind.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ... import __version__
from ...golden.checks import InputError
from ...golden.files import atomic_write
from .. import zoo
from ..weights import read_config

if TYPE_CHECKING:
    import onnx

    from .decoder import ProgressFn

# onnx is imported where it is used: the CLI reads DEFAULT_OPSET when it builds its parser, and
# importing onnx takes longer than the rest of `tritium --help`

__all__ = ["DEFAULT_OPSET", "EXTERNAL_DATA_BYTES", "ExportError", "ExportResult", "export_onnx"]

DEFAULT_OPSET = 17
# protobuf cannot serialise a message of 2 GiB or more; keep a margin for the graph itself
EXTERNAL_DATA_BYTES = 2**31 - 2**26


class ExportError(InputError):
    """An export that cannot be done as asked (bad opset, unwritable output); names the file or
    parameter."""


@dataclass(frozen=True)
class ExportResult:
    path: Path
    data_path: Path | None        # the external data file, when there is one
    model: str                    # the checkpoint folder
    model_type: str
    linear_class: str
    layers: int
    opset: int
    nodes: int
    matmul_integer: int           # one per BitLinear
    initializer_bytes: int
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return {"output": str(self.path),
                "external_data": None if self.data_path is None else str(self.data_path),
                "model": self.model, "model_type": self.model_type,
                "linear_class": self.linear_class, "layers": self.layers, "opset": self.opset,
                "nodes": self.nodes, "matmul_integer": self.matmul_integer,
                "initializer_bytes": self.initializer_bytes, "bytes": self.file_bytes,
                "seconds": round(self.seconds, 3)}

    @property
    def file_bytes(self) -> int:
        """Bytes on disk: the model file plus its external data."""
        return sum(p.stat().st_size for p in (self.path, self.data_path) if p is not None)


def data_file(out: Path) -> Path:
    """Where the external data of `out` goes: `model.onnx` -> `model.onnx_data` (Optimum's)."""
    return out.with_name(out.name + "_data")


def check_writable(out: Path) -> None:
    """Fail before the (possibly long) export if `out` cannot be written."""
    if out.is_dir():
        raise ExportError(f"cannot write {out}: it is a folder; give a file path such as "
                          f"{out / 'model.onnx'}")
    parent = out.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ExportError(f"cannot write {out}: cannot create the folder {parent} "
                          f"({exc.strerror or exc})") from None
    try:
        fd, probe = tempfile.mkstemp(dir=parent, prefix=f".{out.name}.", suffix=".probe")
    except OSError as exc:
        raise ExportError(f"cannot write {out}: cannot create files in {parent} "
                          f"({exc.strerror or exc})") from None
    os.close(fd)
    os.unlink(probe)


def _check_opset(opset: Any) -> int:
    import onnx

    newest = onnx.defs.onnx_opset_version()
    if isinstance(opset, bool) or not isinstance(opset, int) or not 17 <= opset <= newest:
        raise ExportError(f"opset must be an integer from 17 to {newest} (the newest this onnx "
                          f"{onnx.__version__} knows), got {opset!r}")
    return opset


def export_onnx(model: str | os.PathLike[str], out: str | os.PathLike[str], *,
                opset: int = DEFAULT_OPSET, external_data_bytes: int = EXTERNAL_DATA_BYTES,
                progress: ProgressFn | None = None) -> ExportResult:
    """Write the checkpoint folder (or shipped model name) `model` as an ONNX decoder to `out`.

    external_data_bytes: initializers totalling more than this go to `<out>_data` beside the
    model (ONNX external data); the default keeps under protobuf's 2 GiB limit. progress(i, n)
    is called after each of the n layers is built.
    """
    import onnx

    from .decoder import build_decoder
    from .trace import Graph

    t0 = time.perf_counter()
    opset = _check_opset(opset)
    out = Path(out)
    folder = zoo.resolve(model) or Path(model)
    ckpt, cfg = read_config(folder)    # reads config.json and the tensor index, not the weights
    try:
        check_writable(out)
        g = Graph(f"tritium {cfg.model_type} decoder")
        build_decoder(g, ckpt, cfg, opset, progress)
    finally:
        ckpt.close()
    proto = g.model(opset, "tritium", __version__,
                    f"{cfg.model_type} ({cfg.linear_class}) ternary decoder exported from "
                    f"{folder} by tritium: BitLinears as int8 MatMulInteger")
    onnx.helper.set_model_props(proto, {"tritium.model_type": cfg.model_type,
                                        "tritium.linear_class": cfg.linear_class})
    nodes = len(proto.graph.node)
    mmi = sum(n.op_type == "MatMulInteger" for n in proto.graph.node)
    external = g.initializer_bytes > external_data_bytes
    write_model(proto, out, external=external)
    return ExportResult(out, data_file(out) if external else None, str(folder), cfg.model_type,
                        cfg.linear_class, cfg.num_hidden_layers, opset, nodes, mmi,
                        g.initializer_bytes, time.perf_counter() - t0)


def write_model(proto: onnx.ModelProto, out: Path, *, external: bool) -> None:
    """Save proto to out atomically; with external, its initializers to data_file(out)."""
    import onnx

    if not external:
        atomic_write(out, [proto.SerializeToString()])
        return
    data = data_file(out)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp"))
    try:
        # the location is relative to the model file, so it names the final data file
        onnx.save_model(proto, str(tmp / out.name), save_as_external_data=True,
                        all_tensors_to_one_file=True, location=data.name, size_threshold=1024)
        mode = 0o666 & ~_umask()
        for f in (data.name, out.name):
            with open(tmp / f, "rb+") as fh:
                os.fsync(fh.fileno())
            os.chmod(tmp / f, mode)
        # data first: a reader of the new model file always finds its data complete
        os.replace(tmp / data.name, data)
        os.replace(tmp / out.name, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask

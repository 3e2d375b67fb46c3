"""Design-space exploration: sweeps over array, estimator, synthesis and numerics parameters.

The top of the library layers: it drives golden, host and hdl (through explore.adapters) and
nothing in the library imports it.
"""

from .adapters import SweepError
from .executors import PoolExecutor, RayExecutor, SerialExecutor, make_executor
from .metrics import Metric, register_metric, unregister_metric
from .pareto import Objective, pareto_front, parse_objectives
from .space import Point, Space
from .sweep import SweepResult, SweepSpec, sweep

__all__ = [
    "Metric", "Objective", "Point", "PoolExecutor", "RayExecutor", "SerialExecutor", "Space",
    "SweepError", "SweepResult", "SweepSpec", "make_executor", "pareto_front",
    "parse_objectives", "register_metric", "sweep", "unregister_metric",
]

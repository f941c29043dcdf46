"""The layer-spec: networks and recipes as validated data, their analysis, and the builder.

``from space import build, load, analyze, Conv, ...`` gives the functions and classes.
``describe(spec)`` gives the per-layer table that ``python -m space.describe FILE`` prints.
torch is imported only when a network is built.
"""

from space.analysis import Analysis, LayerInfo, Shape, analyze, count_params, format_table
from space.build import build  # after the submodule import, so the name is the function
from space.describe import describe  # likewise: the function, not the package
from space.io import dump, dumps, load, loads, write_atomic
from space.layers import KINDS, Layer, register
from space.spec import (
    ACTIVATIONS,
    GAP,
    LAYER_KINDS,
    OPTIMIZERS,
    SCHEDULERS,
    Act,
    Augment,
    BatchNorm,
    Conv,
    Dropout,
    Dropout2d,
    Flatten,
    Linear,
    MaxPool,
    NetSpec,
    Recipe,
    Residual,
    SepConv,
    SpecError,
    from_dict,
    to_dict,
)

__all__ = [
    "Analysis", "LayerInfo", "Shape", "analyze", "count_params", "format_table", "build", "describe",
    "dump", "dumps", "load", "loads", "write_atomic",
    "KINDS", "LAYER_KINDS", "Layer", "register",
    "GAP", "Act", "BatchNorm", "Conv", "Dropout", "Dropout2d", "Flatten", "Linear", "MaxPool", "Residual", "SepConv",
    "Augment", "NetSpec", "Recipe", "SpecError", "from_dict", "to_dict", "ACTIVATIONS", "OPTIMIZERS", "SCHEDULERS",
]

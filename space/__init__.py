"""The layer-spec: networks and recipes as validated data, their analysis, and the builder."""

from space.analysis import Analysis, LayerInfo, analyze, count_params, format_table
from space.io import dump, dumps, load, loads
from space.spec import (
                        GAP,
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
    "Analysis", "LayerInfo", "analyze", "count_params", "format_table", "dump", "dumps", "load", "loads",
    "GAP", "Act", "Augment", "BatchNorm", "Conv", "Dropout", "Dropout2d", "Flatten", "Linear", "MaxPool",
    "NetSpec", "Recipe", "Residual", "SepConv", "SpecError", "from_dict", "to_dict",
]

"""What several test files read from specs."""


def flat_layers(layers):
    """Every layer, in order, a residual block followed by its own layers."""
    for layer in layers:
        yield layer
        yield from flat_layers(getattr(layer, "layers", ()))

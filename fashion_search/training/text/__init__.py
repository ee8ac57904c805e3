"""Training the text encoder: words aligned with the garment vectors an index stores."""

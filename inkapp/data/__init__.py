"""Data: image decoding, preprocessing, datasets, leakage-free splits, augmentation."""

"""Data: where files come from (sources, image folders), how they load onto the device (loading), the
train/val split, batches, on-device augmentation, and the description a model is built from."""

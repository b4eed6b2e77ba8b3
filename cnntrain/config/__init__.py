"""Config: the names and choices cnntrain knows, the schema, its checks, and Hydra composition.
Nothing in this package imports torch (a test holds it to that), so `--help` and config errors stay fast."""

"""cnntrain-serve: a finished run (or a file cnntrain-export wrote) behind HTTP, on LitServe (docs/serving.md)."""

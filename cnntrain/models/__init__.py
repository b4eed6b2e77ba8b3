"""Models: the layer registry and the built-in layers, the builder that turns a layer list into a module
(inferring every size), and test-time augmentation."""

from cnntrain.models import architectures, blocks, layers  # noqa: F401 - their @register lines fill the registry

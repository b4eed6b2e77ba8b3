"""`python -m cnntrain ...` is the `cnntrain` command (as `torchrun -m cnntrain` will need)."""

from cnntrain.commands.train import main

main()

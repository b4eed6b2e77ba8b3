"""`python -m cnntrain ...` is the `cnntrain` command (as `torchrun -m cnntrain` will need)."""

from cnntrain.commands.train import main

if __name__ == "__main__":  # not when a spawned worker process imports this module
    main()

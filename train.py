"""Train LERF on one scene: `python train.py scene=demo` (the same as `lerf-train`; the program
is lerf/apps/train.py, docs/configuration.md lists every option).

`python train.py resume=<run> [trainer.max_steps=N]` continues a run with its own config; only
the keys given on the command line change it.
"""
from lerf.apps.train import main

if __name__ == "__main__":
    main()

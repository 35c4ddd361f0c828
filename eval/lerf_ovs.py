"""The lerf_ovs benchmark in one command: train (or reuse) each scene, score it with the lerf_ovs
protocol, write one table beside the published rows.

    python eval/lerf_ovs.py data_root=<folder with figurines/ ramen/ teatime/ waldo_kitchen/ and label/>

The program, with every option (scenes=, runs.<scene>=, out=, train=[...], smooth_k=, threshold=,
levels=), is lerf/apps/eval_lerf_ovs.py; `python eval/lerf_ovs.py --help` lists them.
"""
from lerf.apps.cli import run
from lerf.apps.eval_lerf_ovs import main

if __name__ == "__main__":
    run(main)

"""The lerf_ovs benchmark in one command: train (or reuse) each scene, score it with the lerf_ovs
protocol, write one table beside the published rows.

    python eval/lerf_ovs.py data_root=<folder with figurines/ ramen/ teatime/ waldo_kitchen/ and label/>
        [scenes=[teatime,ramen]] [runs.teatime=<run dir>] [out=outputs/lerf_ovs]
        [train=[trainer.max_steps=30000,model=lite]] [smooth_k=30] [threshold=0.4]
        [levels=chosen_scale|all_scales] [device=auto]

A scene without a run in `runs.` is trained as `python train.py scene=lerf_ovs scene.name=<scene>`
plus the `train=` overrides would train it, into <out>/<scene>/run; a run already there is
reused, never retrained or overwritten. Writes <out>/<scene>/{localization,segmentation}.{json,md} and
<out>/lerf_ovs.{md,json}: per scene, mean over scenes and query-weighted.
"""
# The program is lerf/apps/eval_lerf_ovs.py.
from lerf.apps.cli import run
from lerf.apps.eval_lerf_ovs import main

if __name__ == "__main__":
    run(main)

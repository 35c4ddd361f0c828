"""Localization accuracy of a trained run: for every labelled view and every labelled object,
success when the relevancy argmax falls inside the object's box.

    python eval/localization.py run=<run dir> [labels=<dir>] [protocol=lerf|lerf_ovs] [visibility_filter=false]

The program is lerf/apps/eval_language.py. Writes <run>/localization.json and localization.md.
"""
from lerf.apps.cli import run
from lerf.apps.eval_language import localization_main as main

if __name__ == "__main__":
    run(main)

"""Rule plot_copy_accuracy: copy-task accuracy vs shots with GPT-3 reference points."""
from iclab.rulelog import route_to_log

sm = snakemake  # noqa: F821 (provided by Snakemake)
route_to_log(sm)

import pandas as pd

from iclab.plots import copy_accuracy

table = pd.read_csv(sm.input.table)
copy_accuracy(table[table["task"] == "copy"], sm.output.png, sm.output.pdf)

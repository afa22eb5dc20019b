"""Write the papermill notebooks of this folder from their cells here (edit here, then run
`python notebooks/make_notebooks.py`), so they stay small, reviewable and free of stale outputs.

Each notebook has one cell tagged `parameters`; papermill inserts the values it is given after it.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent
KERNEL = {"kernelspec": {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"},
          "language_info": {"name": "python"}}


def parameters(source: str):
    return new_code_cell(source.strip(), metadata={"tags": ["parameters"]})


def code(source: str):
    return new_code_cell(source.strip())


def text(source: str):
    return new_markdown_cell(source.strip())


TRAIN = [
    text("""
# Fine-tune one ensemble member

The parameters keep the names of the original fine-tuning notebook, so existing launchers that call
`papermill.execute_notebook("train.ipynb", ..., parameters=dict(...))` work unchanged. Unlike then,
`learning_rate`, `optimizer_type` and `scheduler_type` take effect, the `batch_sizes` schedule is
applied per epoch, and `trainNlayers` keeps the new head trainable. Same as `mosquito-ast train`.
"""),
    parameters("""
SSL_pretrained_path = ""   # SSL checkpoint folder (old model.safetensors or a `pretrain` output); "" = from scratch
train_dir = "../runs/splits/independent/train"  # `mosquito-ast split ... --output runs/splits`, run from the repository root
validation_dir = None      # optional: the recipe keeps the last epoch, so a validation folder only reports
postfix = "_independentdata_seed42_adamw_cosine"
b_train_just_last = False  # True: train only the new classification head
trainNlayers = 0           # > 0: train the last N encoder layers and the head; 0: train everything
epoch_num = 10
batch_sizes = [16]         # batch size per epoch; the last one repeats
random_seed = 42
output_path = "../runs/notebook"  # the member lands in <output_path>/best/<postfix>/
learning_rate = 5e-5
optimizer_type = "adamw"   # adamw, rmsprop, sgd
scheduler_type = "cosine"  # cosine, linear, constant_with_warmup, constant
preset = "base"            # encoder size when SSL_pretrained_path is empty: tiny, small, base
clip_seconds = 1.0
precision = "auto"         # auto, 32, bf16-mixed, 16-mixed
cache_dir = None           # feature cache folder (None: the user cache directory)
progress = True
train_params = {}          # any other `train` parameter by name, e.g. {"weight_decay": 0.05}
"""),
    code("""
import json

import pandas as pd

from mosquito_ast.config import TrainParams
from mosquito_ast.commands.train import train

freeze = "head" if b_train_just_last else "last-n" if int(trainNlayers) > 0 else "none"
params = TrainParams.from_sources(None, **{
    "ssl_checkpoint": SSL_pretrained_path or None, "train_dir": train_dir, "validation_dir": validation_dir,
    "postfix": postfix, "freeze": freeze, "train_last_n_layers": int(trainNlayers), "epochs": epoch_num,
    "batch_sizes": batch_sizes, "seed": random_seed, "output": output_path, "learning_rate": learning_rate,
    "optimizer": optimizer_type, "scheduler": scheduler_type, "preset": preset, "clip_seconds": clip_seconds,
    "precision": precision, "cache_dir": cache_dir, "progress": progress, **train_params})
params
"""),
    code("""
member = train(params)
"""),
    code("""
config = json.loads((member / "config.json").read_text())
best = config["best_metric"]
scored = f"{best['name']} {best['value']:.4f}" if best["value"] is not None else "no validation side"
print(f"{member}: {config['selected']} epoch {config['best_epoch']}, {scored}")
history = pd.DataFrame(config["history"]).set_index("epoch")
history
"""),
]

LAUNCHER = [
    text("""
# Launch a sweep (the ensemble's members)

Replaces the two launcher notebooks: a sweep file (see `examples/old_launchers.yaml`) holds the
seeds × optimizers × schedulers grid and both splits. Finished members are skipped when this runs
again; every run has a log and a record in `<output>/sweep.jsonl`. The same as
`mosquito-ast sweep SWEEP_FILE --backend papermill`.

The old loop still works against `train.ipynb`, with the old parameter names:
```python
papermill.execute_notebook("train.ipynb", f"out/{postfix}.ipynb", parameters=dict(
    SSL_pretrained_path=ssl, train_dir=train, validation_dir=validation, postfix=postfix,
    b_train_just_last=False, trainNlayers=0, epoch_num=10, batch_sizes=[16], random_seed=seed,
    output_path="out", learning_rate=5e-5, optimizer_type="adamw", scheduler_type="cosine"))
```
"""),
    parameters("""
sweep_file = "../examples/old_launchers.yaml"
output = None         # default: the sweep file's `output`
backend = "papermill" # local, papermill (train.ipynb per run, executed copy kept beside the member) or ray
parallel = 1          # runs at once (each with cores // parallel threads and its own GPU)
dry_run = True        # list the runs only; set False to train
retry_failed = False  # run again the runs whose last attempt failed
evaluate = False      # afterwards compare the datasets' ensembles (independent vs random)
"""),
    code("""
from mosquito_ast.sweep import load_sweep, run_sweep

outcome = run_sweep(load_sweep(sweep_file), output, backend, parallel, dry_run, retry_failed, evaluate)
outcome.table
"""),
    code("""
outcome.comparison
"""),
]

EVALUATE = [
    text("""
# Evaluate an ensemble

Every member under `models_dir` predicts the labeled clips in `data_dir`; members and the hard and soft
votes are scored per clip and per recording, and the report (predictions.csv, recordings.csv,
metrics.json, figures, report.html) is written to `output_dir`. Labels are matched by name, never
repaired from the ground truth. The same as `mosquito-ast evaluate`.
"""),
    parameters("""
models_dir = "../runs/recipe_seeds/independent/best"  # examples/recipe_seeds.yaml's members
data_dir = "../runs/splits/independent/test"           # the test side: clips none of the members chose anything on
output_dir = "../runs/recipe_seeds/independent/test-evaluation"
labels = []          # old-notebook members only (weights without config.json): class names in the old id order
weights = None       # member weights: "0.5,1,1" or a CSV with member,weight; None = equal
bootstrap = 1000     # resamples for 95% intervals (0 = off)
cache_dir = None
progress = True
evaluate_params = {} # any other `evaluate` parameter by name
"""),
    code("""
from IPython.display import Image, display

from mosquito_ast.config import EvaluateParams
from mosquito_ast.commands.evaluate import evaluate
from mosquito_ast.evaluation.report import write_outputs

params = EvaluateParams.from_sources(None, **{
    "models": models_dir, "data": data_dir, "output": output_dir, "labels": labels, "weights": weights,
    "bootstrap": bootstrap, "cache_dir": cache_dir, "progress": progress, **evaluate_params})
evaluation = evaluate(params)
write_outputs(evaluation)
evaluation.summary
"""),
    code("""
evaluation.recording_summary
"""),
    code("""
for figure in sorted(evaluation.output.glob("*.png")):
    display(Image(filename=str(figure)))
"""),
]

PRETRAIN = [
    text("""
# Self-supervised pretraining of the encoder (done once)

Trains an AST encoder on unlabeled clips; the output folder is what `train.ipynb` takes as
`SSL_pretrained_path`. The same as `mosquito-ast pretrain`.
"""),
    parameters("""
data_dir = "../../shared/data/wingbeats"  # unlabeled clips, searched recursively (labels ignored)
output_path = "../runs/pretrain"
validation_dir = None     # None: a seeded share of data_dir
objective = "denoise"     # denoise or masked-patch
preset = "base"
init = None               # start from these encoder weights (e.g. an old SSL checkpoint)
epochs = 150              # early stopping usually ends sooner
batch_sizes = [8]
learning_rate = 1e-4
random_seed = 42
clip_seconds = 1.0
precision = "auto"
cache_dir = None
progress = True
pretrain_params = {}      # any other `pretrain` parameter by name
"""),
    code("""
import json

import pandas as pd

from mosquito_ast.config import PretrainParams
from mosquito_ast.commands.pretrain import pretrain

params = PretrainParams.from_sources(None, **{
    "data": data_dir, "output": output_path, "validation_dir": validation_dir, "objective": objective,
    "preset": preset, "init": init, "epochs": epochs, "batch_sizes": batch_sizes, "learning_rate": learning_rate,
    "seed": random_seed, "clip_seconds": clip_seconds, "precision": precision, "cache_dir": cache_dir,
    "progress": progress, **pretrain_params})
encoder = pretrain(params)
"""),
    code("""
config = json.loads((encoder / "config.json").read_text())
print(f"{encoder}: best epoch {config['best_epoch']}, validation loss {config['best_val_loss']:.4f}")
pd.DataFrame(config["history"]).set_index("epoch")
"""),
]

NOTEBOOKS = {"train.ipynb": TRAIN, "run_experiments.ipynb": LAUNCHER, "evaluate_ensemble.ipynb": EVALUATE,
             "pretrain.ipynb": PRETRAIN}


def write_all(folder: Path = HERE) -> list[Path]:
    written = []
    for name, cells in NOTEBOOKS.items():
        notebook = new_notebook(cells=cells, metadata=KERNEL)
        for number, cell in enumerate(notebook.cells):
            cell.id = f"{Path(name).stem.replace('_', '-')}-{number}"
        nbformat.validate(notebook)
        path = folder / name
        nbformat.write(notebook, path)
        written.append(path)
    return written


if __name__ == "__main__":
    for path in write_all():
        print(path)

import json

import pandas as pd

from mosquito_ast.config import DemoParams
from mosquito_ast.demo import SPLITS, run_demo
from mosquito_ast.evaluation.results import SUMMARY_SYSTEMS as SYSTEMS


def test_demo_runs_the_whole_workflow_and_leaves_a_tidy_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a relative --output, as `make demo` gives
    output = tmp_path / "demo"
    table = run_demo(DemoParams(output="demo", recordings_per_species=3, clips_per_recording=4, members=2,
                                epochs=2, pretrain_epochs=1, precision="32", progress=False))
    assert list(table.index) == list(SPLITS) and list(table.columns) == list(SYSTEMS)
    assert table.notna().all().all() and ((table >= 0) & (table <= 1)).all().all()
    assert sorted(p.name for p in output.iterdir()) == ["cache", "data", "demo_results.csv", "pretrained", "splits",
                                                        "sweep", "sweep.yaml"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo"]
    assert pd.read_csv(output / "demo_results.csv", index_col=0).shape == (2, 4)
    assert (output / "pretrained" / "model.safetensors").is_file()
    for split in SPLITS:
        report = json.loads((output / "splits" / split / "split_report.json").read_text())
        assert report["files"] == 4 * 3 * 4
        members = sorted(p.name for p in (output / "sweep" / split / "best").iterdir())
        assert members == ["seed1", "seed2", "spectrum-forest"]  # the forest fitted once for both seeds
        config = json.loads((output / "sweep" / split / "best" / "seed1" / "config.json").read_text())
        assert config["training"]["ssl_checkpoint"] == str(output / "pretrained")
        evaluation = output / "sweep" / split / "evaluation"
        for name in ("report.html", "metrics.json", "predictions.csv", "confusion_matrix.png"):
            assert (evaluation / name).is_file(), name
    independent = json.loads((output / "splits" / "independent" / "split_report.json").read_text())
    assert independent["groups"]["train"] + independent["groups"]["validation"] == 12
    ledger = [json.loads(line) for line in (output / "sweep" / "sweep.jsonl").read_text().splitlines()]
    assert sum(record["status"] == "done" for record in ledger) == 4

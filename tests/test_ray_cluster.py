"""How the Ray backend sizes and checks tasks on a cluster, without starting one."""

from __future__ import annotations

from pathlib import Path

from mosquito_ast.config import TrainParams
from mosquito_ast.sweep.backends import gpus_per_task, missing_paths, paths_runs_need, shipped_packages
from mosquito_ast.sweep.spec import Run


def test_runs_share_the_gpus_a_cluster_has():
    assert gpus_per_task(0, 4) == 0
    assert gpus_per_task(1, 4) == 0.25  # four runs on one GPU at once, not one after another
    assert gpus_per_task(8, 4) == 1


def test_every_folder_a_run_reads_or_writes_is_checked_on_the_cluster(tmp_path):
    (tmp_path / "train").mkdir()
    params = TrainParams(train_dir=str(tmp_path / "train"), validation_dir=str(tmp_path / "gone"),
                         output=str(tmp_path / "sweep" / "ds"), progress=False)
    needed = paths_runs_need([Run("ds", "m0", params, {})])
    assert str(tmp_path / "train") in needed and str(tmp_path / "sweep") in needed
    assert missing_paths(needed) == [str(tmp_path / "gone"), str(tmp_path / "sweep")]


def test_workers_get_the_tool_and_the_field_runtime_it_imports():
    shipped = [Path(folder) for folder in shipped_packages()]
    assert [folder.name for folder in shipped] == ["mosquito_ast", "mosquito_ast_lite"]
    assert all((folder / "__init__.py").is_file() for folder in shipped)

"""The field runtime reads only what its model folder holds: a model.json naming a graph outside the folder
(`../x.onnx`, an absolute path) is refused, even where that graph exists and runs."""

import json
import shutil

import pytest
import torch

from mosquito_ast.features import FeatureSettings
from mosquito_ast_lite.runtime import ModelError, load_model
from test_lite import LABELS, TinyModel, write_model_folder


@pytest.fixture
def model_folder(tmp_path):
    torch.manual_seed(0)
    return write_model_folder(tmp_path / "models" / "tiny", TinyModel(FeatureSettings(), len(LABELS)).eval(),
                              FeatureSettings(), LABELS)


@pytest.mark.parametrize("key", ["onnx", "onnx_fp32"])
def test_graph_names_that_leave_the_model_folder_are_refused(model_folder, tmp_path, key):
    outside = tmp_path / "outside.onnx"
    shutil.copyfile(model_folder / "model.onnx", outside)  # a valid graph: only where it lies is wrong
    meta = json.loads((model_folder / "model.json").read_text())
    load_model(model_folder)
    for name in ("../../outside.onnx", str(outside), "sub/../../../outside.onnx"):
        written = {**meta, key: name, **({"precision": "int8"} if key == "onnx_fp32" else {})}
        (model_folder / "model.json").write_text(json.dumps(written))
        with pytest.raises(ModelError, match=f"'{key}' is .*, outside the model folder; it must name a file in it"):
            load_model(model_folder, fp32=key == "onnx_fp32")

"""The optimizer a run builds: fused where torch has the kernel, and gradient clipping that works with it
under bf16 autocast, where Lightning's own clipping refuses fused optimizers."""

import pytest
import torch

from mosquito_ast.training.loop import EpochModule
from mosquito_ast.training.optim import build_optimizer


def test_adamw_and_sgd_are_fused_on_the_cpu_unless_a_scaler_needs_them_not_to_be():
    weights = [torch.nn.Parameter(torch.ones(3)), torch.nn.Parameter(torch.ones(2), requires_grad=False)]
    adamw = build_optimizer("adamw", weights, 1e-3, 0.01)
    assert adamw.defaults["fused"] is True
    assert len(adamw.param_groups[0]["params"]) == 1  # frozen parameters are left out
    assert build_optimizer("sgd", weights, 1e-3, 0.0).defaults["fused"] is True
    assert not build_optimizer("adamw", weights, 1e-3, 0.01, fused=False).defaults["fused"]
    assert "fused" not in build_optimizer("rmsprop", weights, 1e-3, 0.0).defaults
    with pytest.raises(ValueError, match="unknown optimizer 'adam'"):
        build_optimizer("adam", weights, 1e-3, 0.0)


def test_gradients_are_clipped_to_the_norm_asked_for():
    model = torch.nn.Linear(4, 3)
    module = EpochModule(model, params=None, total_steps=1)
    for parameter in model.parameters():
        parameter.grad = torch.full_like(parameter, 10.0)
    module.configure_gradient_clipping(build_optimizer("adamw", model.parameters(), 1e-3, 0.0), 1.0)
    norm = torch.linalg.vector_norm(torch.cat([p.grad.flatten() for p in model.parameters()]))
    assert norm == pytest.approx(1.0, rel=1e-4)
    module.configure_gradient_clipping(None, None)  # off: left as they are
    assert torch.linalg.vector_norm(torch.cat([p.grad.flatten() for p in model.parameters()])) == pytest.approx(norm)

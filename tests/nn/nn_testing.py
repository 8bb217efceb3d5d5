"""Helpers shared by the nn tests: moving values between xpgrad and the PyTorch oracle."""
from __future__ import annotations

import numpy as np

from xpgrad import autograd as ag


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def ag64(a, requires_grad: bool = False) -> ag.Tensor:
    """An xpgrad tensor (default device) holding ``a`` as float64."""
    return ag.tensor(np.asarray(a, dtype=np.float64), requires_grad=requires_grad)


def th64(torch, a, requires_grad: bool = False):
    return torch.tensor(np.asarray(a, dtype=np.float64), requires_grad=requires_grad)


def host(t) -> np.ndarray:
    """Values of an xpgrad or torch tensor as a NumPy array."""
    if isinstance(t, ag.Tensor):
        return t.numpy()
    return t.detach().numpy()


def close(a, b, rtol: float = 1e-9, atol: float = 1e-10) -> None:
    np.testing.assert_allclose(host(a), host(b), rtol=rtol, atol=atol)


def copy_params_to_torch(torch, module, torch_module) -> None:
    """Give ``torch_module`` the parameter values of ``module`` (same names), in float64."""
    ours = dict(module.named_parameters())
    with torch.no_grad():
        for name, p in torch_module.named_parameters():
            p.copy_(torch.from_numpy(ours[name].numpy().astype(np.float64)))

"""xpgrad nn: modules, layers, losses, functional ops, initialisers, clipping and (de)serialization.

    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    loss = nn.CrossEntropyLoss()(model(x), y)
    loss.backward()
"""
from . import functional, init, utils
from .layers import *  # noqa: F401,F403
from .layers import __all__ as _layers_all
from .loss import BCELoss, BCEWithLogitsLoss, CrossEntropyLoss, L1Loss, MSELoss, NLLLoss
from .module import Module, Parameter
from .serialization import load, save
from .data import DataLoader, TensorDataset, random_split_indices
from .training import History, accuracy, evaluate, fit, predict
from . import parallel

__all__ = [
    "functional", "init", "utils", "parallel", "Module", "Parameter", "save", "load",
    "MSELoss", "L1Loss", "CrossEntropyLoss", "NLLLoss", "BCELoss", "BCEWithLogitsLoss",
    "DataLoader", "TensorDataset", "random_split_indices", "History", "accuracy", "evaluate", "fit", "predict",
    *_layers_all,
]

"""Layers: modules with parameters (Linear, LayerNorm, LSTM...) and stateless ones (ReLU, Flatten...)."""
from .activation import GELU, LeakyReLU, LogSoftmax, ReLU, Sigmoid, Softmax, Tanh
from .attention import MultiheadAttention, TransformerEncoderLayer
from .conv import AdaptiveAvgPool2d, AvgPool1d, AvgPool2d, Conv1d, Conv2d, MaxPool1d, MaxPool2d
from .container import ModuleDict, ModuleList, Sequential
from .dropout import Dropout
from .embedding import Embedding
from .linear import Flatten, Identity, Linear
from .normalization import BatchNorm1d, LayerNorm
from .rnn import GRU, LSTM, RNN

__all__ = [
    "Linear", "Identity", "Flatten", "Sequential", "ModuleList", "ModuleDict", "ReLU", "LeakyReLU", "GELU",
    "Sigmoid", "Tanh", "Softmax", "LogSoftmax", "Dropout", "LayerNorm", "BatchNorm1d", "Embedding", "LSTM", "GRU", "RNN",
    "Conv1d", "Conv2d", "MaxPool1d", "MaxPool2d", "AvgPool1d", "AvgPool2d", "AdaptiveAvgPool2d",
    "MultiheadAttention", "TransformerEncoderLayer",
]

"""mlbert: multi-label text classification by fine-tuning BERT-family encoders."""

from .classifier import MultiLabelClassifier
from .config import TrainConfig
from .errors import ConfigError, DataError, MlbertError, NotFittedError
from .version import __version__

__all__ = [
    "ConfigError",
    "DataError",
    "MlbertError",
    "MultiLabelClassifier",
    "NotFittedError",
    "TrainConfig",
    "__version__",
]

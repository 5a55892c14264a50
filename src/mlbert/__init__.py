"""mlbert: multi-label text classification by fine-tuning BERT-family encoders."""

from . import threads

threads.prepare()  # before torch is imported below: it reads the thread settings once, at start

from .classifier import MultiLabelClassifier  # noqa: E402
from .config import TrainConfig  # noqa: E402
from .errors import ConfigError, DataError, MlbertError, NotFittedError  # noqa: E402
from .version import __version__  # noqa: E402

__all__ = [
    "ConfigError",
    "DataError",
    "MlbertError",
    "MultiLabelClassifier",
    "NotFittedError",
    "TrainConfig",
    "__version__",
]

"""mlbert: multi-label text classification by fine-tuning BERT-family encoders."""

__version__ = "0.1.0"

from .classifier import MultiLabelClassifier  # noqa: E402
from .config import TrainConfig  # noqa: E402
from .errors import ConfigError, DataError, MlbertError, NotFittedError  # noqa: E402

__all__ = ["MultiLabelClassifier", "TrainConfig", "MlbertError", "DataError", "ConfigError", "NotFittedError",
           "__version__"]

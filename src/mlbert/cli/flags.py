"""Flags generated from the settings classes (one flag per field, help and choices from the class),
and the flags several commands share."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from ..config import BACKENDS, THRESHOLD_MODES, Settings, base_type, field_choices, field_types, takes_auto


def add_settings_flags(parser: argparse.ArgumentParser, cls: type[Settings], title: str) -> None:
    """One flag per field of `cls` (`warmup_ratio` is `--warmup-ratio`); unset flags stay out of the
    namespace (argparse.SUPPRESS), so `settings_from_args` can tell them from defaults."""
    group = parser.add_argument_group(title)
    choices = field_choices(cls)
    types = field_types(cls)
    for f in dataclasses.fields(cls):
        flag = "--" + f.name.replace("_", "-")
        help_text = f.metadata.get("help", "")
        kind = base_type(types[f.name])
        if kind is bool:
            group.add_argument(
                flag,
                dest=f.name,
                action=argparse.BooleanOptionalAction,
                default=argparse.SUPPRESS,
                help=f"{help_text} (default: {'on' if f.default else 'off'})",
            )
            continue
        options = choices.get(f.name)
        group.add_argument(
            flag,
            dest=f.name,
            type=setting_type(types[f.name]),
            choices=options,
            default=argparse.SUPPRESS,
            metavar=None if options else f.name.split("_")[-1].upper(),
            help=f"{help_text} (default: {f.default})",
        )


def setting_type(annotation):
    """The argparse type of a setting's flag, from its annotation: a number (or "auto" where it takes one), else
    a string."""
    kind = base_type(annotation)
    return (_or_auto(kind) if takes_auto(annotation) else kind) if kind in (int, float) else str


def _or_auto(kind: type):
    """An argparse type for a number or "auto"."""

    def parse(text: str):
        return text if text == "auto" else kind(text)

    parse.__name__ = f"{kind.__name__} or auto"  # what argparse names in its error message
    return parse


def settings_from_args(cls: type[Settings], args: argparse.Namespace, config_file: str | None = None) -> Any:
    """`cls` from the settings file (if any), then the flags given on the command line, which win."""
    values: dict[str, Any] = cls.from_json(config_file).to_dict() if config_file else {}
    names = {f.name for f in dataclasses.fields(cls)}
    values.update({k: v for k, v in vars(args).items() if k in names})
    return cls.from_dict(values)


def common_parent() -> argparse.ArgumentParser:
    """Flags every subcommand takes."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--quiet", action="store_true", help="no progress output")
    return parent


def add_descriptions_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--label-descriptions",
        metavar="FILE",
        help="what each label means, in words: a JSON object {label: description} (a description may be a "
        "list of texts: the label reads as their mean) or a two-column CSV/TSV (label, description); a label "
        "not in it is read as its name in words. Saved with the model; with "
        "--label-init label-text the head starts from these texts",
    )


def add_model_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, metavar="DIR", help="model folder written by mlbert train")


def add_backend_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--backend",
        choices=BACKENDS,
        default="torch",
        help="inference path: torch (exact fp32), torch-bf16 (fast only on CPUs with native bf16), "
        "torch-int8 (dynamic quantization), onnx / onnx-int8 (after mlbert export), auto (torch-bf16 where "
        "the CPU has native bf16 and measures it faster, else torch); default torch",
    )
    p.add_argument(
        "--no-calibration",
        dest="calibrated",
        action="store_false",
        help="show the model's raw sigmoid scores (and thresholds on them) instead of its calibrated "
        "probabilities; the label sets are the same either way (README 'Calibrated scores')",
    )


def add_mode_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--mode", choices=THRESHOLD_MODES, help="which saved thresholds to use (default: the model's threshold_mode)"
    )


def add_field_flags(p: argparse.ArgumentParser, labels: bool) -> None:
    p.add_argument("--text-field", metavar="NAME", help="text field (default: the one the model was trained with)")
    if labels:
        p.add_argument("--label-field", metavar="NAME", help="labels field (default: as trained)")
        p.add_argument(
            "--label-sep", metavar="SEP", help="separator of labels written as one string (default: as trained)"
        )

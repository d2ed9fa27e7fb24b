"""One Faster R-CNN pipeline.config per detection protocol, rendered from a single template.

Protocols (Table 2 of the paper): ``ori`` trains on the real training annotations only;
``ori_pix2pix`` / ``ori_pix2pix_n`` / ``ori_stargan`` add the synthetic images of one generator.
Every protocol gets exactly the same model and training settings; only ``input_path`` differs.
``make_od_configs`` writes them with absolute paths for given folders; ``write_repo_configs`` renders
the set checked in under ``od_configs/paper/`` with repository-relative paths.
"""
from __future__ import annotations

import json
import os
from importlib import resources
from pathlib import Path
from string import Template
from typing import Dict, Mapping, Optional, Sequence, Union

from cxr_keras.config import FINDINGS, PRESETS, DetectionConfig
from cxr_keras.detection.validation import VAL_NAME, ValidationSplit, carve_validation
from cxr_keras.io_utils import atomic_write_text
from cxr_keras.paths import RecordsPaths, SynPaths

PathLike = Union[str, os.PathLike]

# protocol -> the synthetic sets (keys of ``synthetic``) added to the real training records
PROTOCOLS: Dict[str, Sequence[str]] = {
    "ori": (),
    "ori_pix2pix": ("pix2pix",),
    "ori_pix2pix_n": ("pix2pix_n",),
    "ori_stargan": ("stargan",),
}
TEMPLATE = "faster_rcnn.config"
# The configs checked in under od_configs/<preset>/: paths relative to the repository root, where
# make_tfrecords writes tfrecords/ and synthesize writes runs/syn/<generator>/ (od_configs/README.md).
REPO_RECORDS = "tfrecords"
REPO_SYN = "runs/syn"
# StarGAN sets have no boxes, hence no detection record: ori_stargan is not among them.
REPO_PROTOCOLS = ("ori", "ori_pix2pix", "ori_pix2pix_n")

# Second-stage crop geometry per backbone family, as in the OD API's own sample configs.
_CROP = {"inception": (17, 1, 1), "resnet": (14, 2, 2)}
# Anchor scales (base anchor 256 px) at a 256-pixel input: 32..256 px. Other input sizes scale them
# with the image, so the anchors cover the same fraction of the radiograph.
ANCHOR_SCALES_256 = (0.125, 0.25, 0.5, 1.0)


def anchor_scales(image_size: int) -> str:
    """The template's ``scales`` list for an input of ``image_size`` pixels."""
    return ", ".join(repr(s * int(image_size) / 256) for s in ANCHOR_SCALES_256)


class ConfigInputError(ValueError):
    """An input of make_od_configs (records folder, synthetic folder, template) is unusable."""


def template_text() -> str:
    """The pipeline template shipped in ``cxr_keras/detection/templates``."""
    return (resources.files("cxr_keras.detection") / "templates" / TEMPLATE).read_text()


def _crop_geometry(feature_extractor: str):
    for family, geometry in _CROP.items():
        if family in feature_extractor:
            return geometry
    raise ConfigInputError(f"no second-stage crop settings for feature extractor {feature_extractor!r} "
                           f"(Faster R-CNN Keras extractors with 'inception' or 'resnet' are supported)")


def render_pipeline_config(
    cfg: DetectionConfig,
    train_paths: Sequence[PathLike],
    eval_path: PathLike,
    label_map_path: PathLike,
    protocol: str = "ori",
    preset: str = "paper",
    num_classes: int = len(FINDINGS),
    steps: Optional[int] = None,
    absolute: bool = True,
    val_path: Optional[PathLike] = None,
) -> str:
    """Fill the template for one protocol (paths are made absolute unless ``absolute=False``).

    ``val_path``: a held-out validation record, added as a second ``eval_input_reader`` named
    ``val`` (the test record stays the first, which the OD API's own evaluation reads)."""
    if not train_paths:
        raise ConfigInputError(f"protocol {protocol}: no training records")
    if cfg.second_stage_batch_size > cfg.first_stage_max_proposals:
        raise ConfigInputError(
            f"second_stage_batch_size ({cfg.second_stage_batch_size}) must not exceed "
            f"first_stage_max_proposals ({cfg.first_stage_max_proposals})")
    crop, pool_kernel, pool_stride = _crop_geometry(cfg.feature_extractor)
    _abs = _absolute if absolute else _posix
    fine_tune = ""
    if cfg.fine_tune_checkpoint:
        fine_tune = (f'  fine_tune_checkpoint: "{_abs(cfg.fine_tune_checkpoint)}"\n'
                     f'  fine_tune_checkpoint_type: "{cfg.fine_tune_checkpoint_type}"\n'
                     f'  fine_tune_checkpoint_version: V2\n')
    values = {
        "protocol": protocol,
        "preset": preset,
        "num_classes": int(num_classes),
        "image_size": int(cfg.image_size),
        "anchor_scales": anchor_scales(cfg.image_size),
        "feature_extractor": cfg.feature_extractor,
        "max_proposals": int(cfg.first_stage_max_proposals),
        "second_stage_batch_size": int(cfg.second_stage_batch_size),
        "initial_crop_size": crop,
        "maxpool_kernel_size": pool_kernel,
        "maxpool_stride": pool_stride,
        "batch_size": int(cfg.batch_size),
        "num_steps": int(steps if steps is not None else cfg.steps),
        "learning_rate": repr(float(cfg.learning_rate)),
        "fine_tune": fine_tune,
        "label_map_path": _abs(label_map_path),
        "train_input_paths": "\n".join(f'    input_path: "{_abs(p)}"' for p in train_paths),
        "eval_input_path": _abs(eval_path),
        "val_eval_input": _val_reader(_abs(label_map_path), _abs(val_path)) if val_path else "",
    }
    return Template(template_text()).substitute(values)


def _val_reader(label_map_path: str, val_path: str) -> str:
    return (f'\neval_input_reader {{\n  name: "{VAL_NAME}"\n  label_map_path: "{label_map_path}"\n'
            f'  shuffle: false\n  num_epochs: 1\n  tf_record_input_reader {{\n'
            f'    input_path: "{val_path}"\n  }}\n}}\n')


def _absolute(path: PathLike) -> str:
    return Path(path).expanduser().resolve().as_posix()


def _posix(path: PathLike) -> str:
    return Path(path).as_posix()


def _detection_files(records: RecordsPaths) -> Sequence[Path]:
    return records.det("train"), records.det("test"), records.label_map


def check_records_dir(records_dir: PathLike) -> RecordsPaths:
    """The RECORDS folder, once its detection files are there, or say which one is missing."""
    records = RecordsPaths(records_dir)
    if not records.root.is_dir():
        raise ConfigInputError(f"{records.root}: records folder does not exist")
    for path in _detection_files(records):
        if not path.is_file() or path.stat().st_size == 0:
            raise ConfigInputError(f"{path}: missing or empty (run cxr-keras make_tfrecords first)")
    return records


def synthetic_record(name: str, syn_dir: PathLike, check: bool = True) -> Path:
    """The OD record of one SYN folder, with a clear error if the folder has none."""
    path = SynPaths(syn_dir).detection
    if check and (not path.is_file() or path.stat().st_size == 0):
        raise ConfigInputError(f"{path}: synthetic set {name!r} has no {path.name} "
                               f"(run cxr-keras synthesize for it first)")
    return path


def protocol_inputs(protocol: str, records: RecordsPaths, synthetic: Mapping[str, PathLike],
                    check: bool = True, split: Optional[ValidationSplit] = None) -> list:
    """Training records of one protocol: the real det_train plus its synthetic sets (with a
    validation ``split``: det_train minus the held-out images, and the synthetic sets without the
    images made from them)."""
    if protocol not in PROTOCOLS:
        raise ConfigInputError(f"unknown protocol {protocol!r}; choose from {sorted(PROTOCOLS)}")
    paths = [split.fit if split else records.det("train")]
    for name in PROTOCOLS[protocol]:
        if name not in synthetic:
            raise ConfigInputError(f"protocol {protocol} needs --synthetic {name}=SYN_DIR")
        paths.append(split.synthetic[name] if split else synthetic_record(name, synthetic[name], check))
    return paths


def _validation_split(cfg: DetectionConfig, records: RecordsPaths, out_dir: Path,
                      synthetic: Mapping[str, PathLike], protocols: Sequence[str],
                      seed: int) -> Optional[ValidationSplit]:
    """Carve the held-out validation images when ``cfg.val_fraction`` > 0 (else None)."""
    if not cfg.val_fraction:
        return None
    used = {n for p in protocols for n in PROTOCOLS.get(p, ()) if n in synthetic}
    try:
        return carve_validation(records, out_dir, {n: synthetic[n] for n in used},
                                {n: synthetic_record(n, synthetic[n]) for n in used},
                                cfg.val_fraction, seed)
    except ValueError as exc:
        raise ConfigInputError(str(exc)) from exc


def make_od_configs(
    records_dir: PathLike,
    out_dir: PathLike,
    cfg: DetectionConfig,
    synthetic: Optional[Mapping[str, PathLike]] = None,
    protocols: Optional[Sequence[str]] = None,
    preset: str = "paper",
    steps: Optional[int] = None,
    seed: int = 0,
) -> Dict[str, Path]:
    """Write ``OUT/<protocol>.config`` for each protocol and ``OUT/protocols.json``; return the paths.

    ``protocols`` defaults to ``cfg.protocols`` plus ``ori_stargan`` when a StarGAN set is given.
    With ``cfg.val_fraction`` > 0 a validation split (``seed``) is carved first (``validation.py``).
    """
    synthetic = dict(synthetic or {})
    unknown = set(synthetic) - {n for names in PROTOCOLS.values() for n in names}
    if unknown:
        raise ConfigInputError(f"unknown synthetic set(s) {sorted(unknown)}; "
                               f"use pix2pix, pix2pix_n or stargan")
    if protocols is None:
        protocols = list(cfg.protocols)
        if "stargan" in synthetic and "ori_stargan" not in protocols:
            protocols.append("ori_stargan")
    records = check_records_dir(records_dir)
    out_dir = Path(out_dir)
    for protocol in protocols:
        protocol_inputs(protocol, records, synthetic)  # every input is there before anything is written
    split = _validation_split(cfg, records, out_dir, synthetic, protocols, seed)
    written: Dict[str, Path] = {}
    summary = {}
    for protocol in protocols:
        train_paths = protocol_inputs(protocol, records, synthetic, split=split)
        text = render_pipeline_config(cfg, train_paths, records.det("test"), records.label_map,
                                      protocol=protocol, preset=preset, steps=steps,
                                      val_path=split.val if split else None)
        path = out_dir / f"{protocol}.config"
        atomic_write_text(path, text)
        written[protocol] = path
        summary[protocol] = {"config": _absolute(path), "train": [_absolute(p) for p in train_paths],
                             "test": _absolute(records.det("test")),
                             "val": _absolute(split.val) if split else None}
    atomic_write_text(out_dir / "protocols.json", json.dumps(
        {"preset": preset, "steps": int(steps if steps is not None else cfg.steps),
         "protocols": summary}, indent=2))
    return written


def repo_config_texts(preset_name: str = "paper") -> Dict[str, str]:
    """{protocol: text} of the configs checked in under ``od_configs/<preset>/``: the preset's
    settings, paths relative to the repository root (``tfrecords/…``, ``runs/syn/<generator>/…``)."""
    if preset_name not in PRESETS:
        raise ConfigInputError(f"unknown preset {preset_name!r}; choose from {sorted(PRESETS)}")
    cfg = PRESETS[preset_name]().detection
    records = RecordsPaths(REPO_RECORDS)
    synthetic = {name: f"{REPO_SYN}/{name}" for names in PROTOCOLS.values() for name in names}
    return {protocol: render_pipeline_config(
                cfg, protocol_inputs(protocol, records, synthetic, check=False), records.det("test"),
                records.label_map, protocol=protocol, preset=preset_name, absolute=False)
            for protocol in REPO_PROTOCOLS}


def write_repo_configs(out_dir: PathLike, preset_name: str = "paper") -> Dict[str, Path]:
    """Write ``repo_config_texts`` as ``OUT/<protocol>.config`` (``make od-configs``); return the paths."""
    written = {}
    for protocol, text in repo_config_texts(preset_name).items():
        written[protocol] = Path(out_dir) / f"{protocol}.config"
        atomic_write_text(written[protocol], text)
    return written


def config_preset(path: PathLike) -> Optional[str]:
    """The preset named in the header of a config rendered by this module (None if absent)."""
    import re

    try:
        head = Path(path).read_text(errors="replace")[:2000]
    except OSError:
        return None
    match = re.search(r"^#.*\bpreset:\s*(\w+)", head, re.MULTILINE)
    return match.group(1) if match else None


def load_pipeline_configs(path: PathLike) -> dict:
    """Parse a pipeline.config with the OD API (dict of model/train_config/... protos)."""
    from cxr_keras.detection import od_compat

    od_compat.require_od_api()
    from google.protobuf import text_format
    from object_detection.utils import config_util

    path = Path(path)
    if not path.is_file():
        raise ConfigInputError(f"{path}: pipeline config does not exist")
    try:
        return config_util.get_configs_from_pipeline_file(str(path))
    except text_format.ParseError as exc:
        raise ConfigInputError(f"{path}: not a valid pipeline config ({exc})") from exc


def eval_record_path(configs: dict) -> Path:
    """The (first) eval input record of parsed pipeline configs."""
    paths = list(configs["eval_input_configs"][0].tf_record_input_reader.input_path)
    if not paths:
        raise ConfigInputError("pipeline config has no eval_input_reader input_path")
    return Path(paths[0])


def val_record_path(configs: dict) -> Optional[Path]:
    """The validation record (the ``eval_input_reader`` named ``val``) of parsed configs, or None."""
    for reader in list(configs["eval_input_configs"])[1:]:
        paths = list(reader.tf_record_input_reader.input_path)
        if reader.name == VAL_NAME and paths:
            return Path(paths[0])
    return None


def real_train_record_path(configs: dict) -> Path:
    """The real training record of parsed configs (always the first training input here)."""
    paths = list(configs["train_input_config"].tf_record_input_reader.input_path)
    if not paths:
        raise ConfigInputError("pipeline config has no train_input_reader input_path")
    return Path(paths[0])

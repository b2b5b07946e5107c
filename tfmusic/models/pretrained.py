"""The separation models that ship inside the package (``tfmusic/pretrained/``).

``tfmusic separate song.wav`` with no ``--model`` uses them, as Spleeter, Demucs and Open-Unmix
separate right after install. ``registry.json`` lists each model: its file, sha256 (checked on
every load: a truncated or swapped file is refused, not half-loaded), target, architecture, whether
it is the default for its target, and its model card (``<name>.md``: data, sample sets and their
licences, training steps and wall time, scores). :func:`publish` is how a trained run becomes one.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

PRETRAINED_DIR = Path(__file__).resolve().parent.parent / "pretrained"
REGISTRY = "registry.json"
MAX_BYTES = 15 * 1024 * 1024  # what one shipped model may weigh (the package stays small)


class PretrainedError(ValueError):
    """A shipped model is missing, unknown or does not match its recorded sha256."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def registry(root: Path = PRETRAINED_DIR) -> dict[str, dict[str, Any]]:
    """``{name: entry}`` of the shipped models (empty when none ship)."""
    path = root / REGISTRY
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())["models"]
    except (ValueError, KeyError) as err:
        raise PretrainedError(f"{path}: not a model registry ({err})") from err


def info(name: str, root: Path = PRETRAINED_DIR) -> dict[str, Any]:
    models = registry(root)
    if name not in models:
        known = ", ".join(sorted(models)) or "none ship in this installation"
        raise PretrainedError(f"no shipped model named {name!r} (shipped: {known})")
    return {"name": name, **models[name]}


def model_path(name: str, root: Path = PRETRAINED_DIR) -> Path:
    """The verified file of shipped model ``name``: it exists and its sha256 is the recorded one."""
    entry = info(name, root)
    path = root / entry["file"]
    if not path.is_file():
        raise PretrainedError(f"{path}: shipped model {name!r} is missing from this installation")
    got = _sha256(path)
    if got != entry["sha256"]:
        raise PretrainedError(f"{path}: sha256 {got} does not match the registry's {entry['sha256']} "
                              f"(a damaged or replaced file; reinstall tfmusic)")
    return path


def default_models(targets: list[str] | None = None, root: Path = PRETRAINED_DIR) -> dict[str, str]:
    """``{target: model name}`` of the default shipped model per target (all targets, or ``targets``)."""
    chosen = {entry["target"]: name for name, entry in sorted(registry(root).items()) if entry.get("default")}
    if targets is None:
        return dict(sorted(chosen.items()))
    missing = [t for t in targets if t not in chosen]
    if missing:
        raise PretrainedError(f"no shipped model separates {', '.join(missing)} "
                              f"(shipped targets: {', '.join(sorted(chosen)) or 'none'}); give --model")
    return {t: chosen[t] for t in targets}


def residual_target(root: Path = PRETRAINED_DIR) -> str | None:
    """The target the shipped set gives as the mixture minus the shipped models (registry
    ``"residual"``, e.g. MUSDB's "other"), or None."""
    path = root / REGISTRY
    if not path.is_file():
        return None
    return json.loads(path.read_text()).get("residual")


def card(name: str, root: Path = PRETRAINED_DIR) -> str:
    entry = info(name, root)
    path = root / entry.get("card", f"{name}.md")
    return path.read_text() if path.is_file() else ""


def publish(model_file: str | Path, name: str, entry: dict[str, Any], card_text: str,
            root: Path = PRETRAINED_DIR, residual: str | None = None) -> dict[str, Any]:
    """Copy a trained ``model.keras`` in as shipped model ``name`` with its card; record its sha256.
    ``entry`` holds at least ``target`` and ``architecture`` (plus anything the card summarizes);
    ``residual`` names the target the shipped set gives as the mixture minus its models."""
    source = Path(model_file)
    size = source.stat().st_size
    if size > MAX_BYTES:
        raise PretrainedError(f"{source}: {size / 2**20:.1f} MB is over the {MAX_BYTES / 2**20:.0f} MB a shipped "
                              "model may weigh")
    for key in ("target", "architecture"):
        if key not in entry:
            raise PretrainedError(f"publish {name}: the entry needs {key!r}")
    root.mkdir(parents=True, exist_ok=True)
    target = root / f"{name}.keras"
    shutil.copyfile(source, target)
    (root / f"{name}.md").write_text(card_text)
    models = registry(root)
    models[name] = {**entry, "file": target.name, "card": f"{name}.md", "bytes": size, "sha256": _sha256(target)}
    document = {"models": dict(sorted(models.items()))}
    if residual or residual_target(root):
        document["residual"] = residual or residual_target(root)
    (root / REGISTRY).write_text(json.dumps(document, indent=1) + "\n")
    return models[name]

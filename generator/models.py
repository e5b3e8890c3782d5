"""Load models through TransformerLens 4 with the seed notebook's weight processing.

Accepted names: `organism` (the bundled model), a TransformerLens alias or Hugging Face id
(`gpt2-small`, `gpt2`, `attn-only-1l`, `EleutherAI/pythia-70m`), or a local folder in
Hugging Face format.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from generator import ReportError

ASSETS = Path(__file__).parent / "assets"
ORGANISM_DIR = ASSETS / "organism"
# The bundled models (trained by generator/organism), loaded by name like any other model.
BUNDLED = {"organism": ORGANISM_DIR, "organism-attn-only-1l": ASSETS / "organism-attn-only-1l"}
ACCEPTED_FORMS = (
    "`organism` or `organism-attn-only-1l` (the bundled models), a TransformerLens alias such as `gpt2-small` or "
    "`attn-only-1l`, a Hugging Face id such as `gpt2` or `EleutherAI/pythia-70m`, "
    "or a local folder in Hugging Face format"
)
# Legacy TransformerLens checkpoints (attn-only-1l, solu-1l, ...) are not in Hugging Face
# format; TransformerLens 4 boots them with its own loader.
TL_LEGACY_PREFIXES = ("NeelNanda/", "ArthurConmy/", "Baidicoot/")


@dataclass(frozen=True)
class ModelRef:
    """What a model name resolves to, known without loading any weights."""

    name: str  # as the user wrote it
    source: str  # "organism" | "local" | "hub" | "tl-legacy"
    location: str  # folder path, or the official hub id

    @property
    def slug(self) -> str:
        return slug(self.name)


def slug(name: str) -> str:
    """A model name as a file-name-safe folder name inside the results store: letters, digits,
    '-', '_' and '.', never starting with '.' (so '..' cannot climb out of the store)."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
    return "_" + safe if safe.startswith(".") or not safe else safe


def resolve(name: str) -> ModelRef:
    """Turn a user-supplied model name into a ModelRef, or say which forms are accepted."""
    if name in BUNDLED:
        return ModelRef(name, "organism", str(BUNDLED[name]))
    if Path(name).expanduser().is_dir():
        path = Path(name).expanduser().resolve()
        if not (path / "config.json").exists():
            raise ReportError(f"model folder {path} has no config.json: it is not in Hugging Face format")
        return ModelRef(name, "local", str(path))
    # imported here: the registry pulls in torch, which a fresh `status` should not need
    from transformer_lens.supported_models import OFFICIAL_MODEL_NAMES
    from transformer_lens.tools.model_registry.registry_io import resolve_model_alias

    official = resolve_model_alias(name) or name
    if official.startswith(TL_LEGACY_PREFIXES):
        return ModelRef(name, "tl-legacy", official)
    if official in OFFICIAL_MODEL_NAMES or _looks_like_hub_id(official):
        return ModelRef(name, "hub", official)
    raise ReportError(f"unknown model {name!r}: use {ACCEPTED_FORMS}")


def _looks_like_hub_id(name: str) -> bool:
    owner, _, repo = name.partition("/")
    ok = lambda s: s and all(c.isalnum() or c in "-_." for c in s)  # noqa: E731
    return bool(ok(owner) and ok(repo))


def fingerprint(ref: ModelRef) -> str:
    """Identify the weights without loading them: a hash of local weight files, or the
    hub revision in the local cache ("uncached" when it was never downloaded)."""
    if ref.source in ("organism", "local"):
        digest = hashlib.sha256()
        for f in sorted(Path(ref.location).iterdir()):
            if f.suffix in (".safetensors", ".bin", ".json") and f.is_file():
                digest.update(f.name.encode())
                digest.update(f.read_bytes())
        return digest.hexdigest()[:16]
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(ref.location, "config.json")
    if isinstance(cached, str):
        return Path(cached).parent.name[:16]  # the snapshot folder is the commit hash
    return "uncached"


def pick_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ReportError(f"device {device!r} was asked for but CUDA is not available; use --device cpu or auto")
    return device


def load_model(ref: ModelRef, device: str = "auto", dtype: str = "float32"):
    """Boot the model through TransformerBridge with the seed's processing."""
    import torch
    from transformer_lens.model_bridge import TransformerBridge

    device = pick_device(device)
    torch_dtype = getattr(torch, dtype)
    try:
        if ref.source == "tl-legacy":
            from transformer_lens.model_bridge.sources import boot_tl_legacy

            model = boot_tl_legacy(ref.location, device=device, dtype=torch_dtype)
        else:
            model = TransformerBridge.boot_transformers(ref.location, device=device, dtype=torch_dtype)
    except Exception as e:  # noqa: BLE001 - turned into one sentence below when offline
        if ref.source in ("hub", "tl-legacy") and _is_offline_error(e):
            raise ReportError(
                f"cannot load model {ref.name!r}: its weights are not in the local cache and the "
                f"Hugging Face hub cannot be reached ({type(e).__name__}); run where the hub is "
                f"reachable once to download them, or use --models organism"
            ) from None
        raise
    model.enable_compatibility_mode(
        disable_warnings=True,
        fold_ln=True,
        center_writing_weights=True,
        center_unembed=True,
        # the seed's processing; with rotary positions the QK matrix depends on the positions,
        # so TransformerLens cannot refactor it (the only step such models skip)
        refactor_factored_attn_matrices=getattr(model.cfg, "positional_embedding_type", "standard") != "rotary",
    )
    model.eval()
    return model


def _is_offline_error(e: BaseException) -> bool:
    text = f"{type(e).__name__} {e}".lower()
    markers = (
        "offline",
        "connect",
        "resolve",
        "network",
        "hub",
        "couldn't",
        "localentrynotfound",
        "timed out",
        "max retries",
        "name or service",
        "not found in cache",
    )
    return isinstance(e, (OSError, ConnectionError)) or any(m in text for m in markers)

"""Load models through TransformerLens 4 with the seed notebook's weight processing.

Accepted names: `organism` (the bundled model), a TransformerLens alias or Hugging Face id
(`gpt2-small`, `gpt2`, `attn-only-1l`, `EleutherAI/pythia-70m`), or a local folder in
Hugging Face format. Any of them may name a revision after an @: `pythia-160m@step1000` loads
that hub revision (Pythia's training checkpoints), `FOLDER@step-000100` (or `organism@...`)
the sub-folder FOLDER/step-000100, as `capcircuit organism train --checkpoints` writes them.
"""

from __future__ import annotations

import hashlib
import json
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
    revision: str | None = None  # the hub revision (or the checkpoint's sub-folder) after "@"

    @property
    def slug(self) -> str:
        return slug(self.name)


MAX_SLUG = 200  # file names may have 255 bytes; room for the experiment's name is kept elsewhere


def slug(name: str) -> str:
    """A model name as a file-name-safe folder name inside the results store: letters, digits,
    '-', '_' and '.', never starting with '.' (so '..' cannot climb out of the store, and
    the store's own dot-files are never a model's folder), at most MAX_SLUG characters."""
    safe = "".join(c if (c.isascii() and c.isalnum()) or c in "-_." else "_" for c in name)
    safe = "_" + safe if safe.startswith(".") or not safe else safe
    if len(safe) > MAX_SLUG:
        raise ReportError(
            f"model name {name[:40]!r}... is {len(name)} characters: too long for its results folder "
            f"(at most {MAX_SLUG}); use a shorter path, e.g. a symlink to the model folder"
        )
    return safe


def resolve(name: str, stored=None) -> ModelRef:
    """Turn a user-supplied model name into a ModelRef, or say which forms are accepted.
    `stored()`, if given, returns the model part of a stored result's key (or None): where
    TransformerLens is not installed (publishing stored results needs no torch), a hub or
    legacy model is what its stored results say it was."""
    if "@" in name and not Path(name).expanduser().is_dir():
        return _with_revision(name, stored)
    if name in BUNDLED:
        if not BUNDLED[name].is_dir():
            raise ReportError(
                f"the bundled model {name!r} is not in this installation ({BUNDLED[name]} is missing): "
                "reinstall capcircuit, or restore the folder (git checkout)"
            )
        check_model_folder(BUNDLED[name])
        return ModelRef(name, "organism", str(BUNDLED[name]))
    if Path(name).expanduser().is_dir():
        path = Path(name).expanduser().resolve()
        check_model_folder(path)
        return ModelRef(name, "local", str(path))
    # imported here: the registry pulls in torch, which a fresh `status` should not need
    try:
        from transformer_lens.supported_models import OFFICIAL_MODEL_NAMES
        from transformer_lens.tools.model_registry.registry_io import resolve_model_alias
    except ImportError as e:
        from generator.versions import RUN_EXTRA

        part = stored() if stored else None
        if isinstance(part, dict) and part.get("source") in ("hub", "tl-legacy") and part.get("location"):
            return ModelRef(name, part["source"], part["location"])
        raise ReportError(
            f"model {name!r} is not a local folder and has no stored results, and naming a TransformerLens or "
            f"Hugging Face model needs transformer_lens, which cannot be imported here ({e}): {RUN_EXTRA}"
        ) from None

    official = resolve_model_alias(name) or name
    if official.startswith(TL_LEGACY_PREFIXES):
        return ModelRef(name, "tl-legacy", official)
    if official in OFFICIAL_MODEL_NAMES or _looks_like_hub_id(official):
        return ModelRef(name, "hub", official)
    raise ReportError(f"unknown model {name!r}: use {ACCEPTED_FORMS}")


def _with_revision(name: str, stored=None) -> ModelRef:
    """`base@revision`: a hub model at that revision, or a local (or bundled) folder's checkpoint
    sub-folder."""
    base, _, revision = name.rpartition("@")
    folder = BUNDLED.get(base) or Path(base).expanduser()
    if folder.is_dir():
        path = (folder / revision).resolve()
        if not path.is_dir() or folder.resolve() not in path.parents:
            found = sorted(p.name for p in folder.iterdir() if (p / "config.json").is_file())
            raise ReportError(
                f"model {name!r}: {base} has no checkpoint folder {revision!r} "
                f"(its checkpoints: {', '.join(found) or 'none'})"
            )
        check_model_folder(path)
        return ModelRef(name, "local", str(path), revision)
    ref = resolve(base, stored)
    if ref.source != "hub":
        raise ReportError(
            f"model {name!r}: only Hugging Face models and local folders have revisions ({base!r} is {ref.source})"
        )
    return ModelRef(name, "hub", ref.location, revision)


WEIGHT_FILES = ("*.safetensors", "*.bin")
TOKENIZER_FILES = ("tokenizer.json", "vocab.json", "tokenizer.model", "vocab.txt")


def check_model_folder(path: Path) -> None:
    """A local model folder is in Hugging Face format: a config.json naming its model_type,
    weights and a tokenizer. Checked here, without torch, so that `status` says so too and
    `run` fails before any experiment rather than inside transformers."""
    from generator.files import read_text, shown

    where = f"model folder {shown(path)}"
    config = path / "config.json"
    if not config.is_file():
        raise ReportError(f"{where} has no config.json: it is not in Hugging Face format (save_pretrained writes one)")
    try:
        data = json.loads(read_text(config))
    except json.JSONDecodeError as e:
        raise ReportError(f"{shown(config)} is not valid JSON (line {e.lineno}, column {e.colno}): {e.msg}") from None
    if not isinstance(data, dict) or not isinstance(data.get("model_type"), str):
        raise ReportError(
            f'{shown(config)} names no model_type (e.g. "gpt2"): it is not a Hugging Face model config; '
            "write it with the model's save_pretrained"
        )
    if not any(any(path.glob(pattern)) for pattern in WEIGHT_FILES):
        raise ReportError(f"{where} holds no weights (*.safetensors or *.bin): save the model with save_pretrained")
    if not any((path / f).is_file() for f in TOKENIZER_FILES):
        raise ReportError(
            f"{where} holds no tokenizer ({' or '.join(TOKENIZER_FILES)}): save it with the tokenizer's save_pretrained"
        )


def _looks_like_hub_id(name: str) -> bool:
    owner, _, repo = name.partition("/")
    ok = lambda s: s and all(c.isalnum() or c in "-_." for c in s)  # noqa: E731
    return bool(ok(owner) and ok(repo))


_FINGERPRINTS: dict[tuple, str] = {}  # file stamps -> weights digest (see fingerprint)


def fingerprint(ref: ModelRef) -> str:
    """Identify the weights without loading them: a hash of local weight, config and tokenizer
    files (not a bundled model's training.json, a record of how it was trained, which changes
    with its training time), or the hub revision in the local cache ("uncached" when it was
    never downloaded)."""
    if ref.source in ("organism", "local"):
        files = [
            f
            for f in sorted(Path(ref.location).iterdir())
            if f.suffix in (".safetensors", ".bin", ".json") and f.is_file() and f.name != "training.json"
        ]
        # hashing reads every weight file: done once per process for files that did not change
        # (`mkdocs serve` re-plans on every rebuild), keyed by their size and modification time
        stamp = tuple((str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files)
        if stamp not in _FINGERPRINTS:
            digest = hashlib.sha256()
            for f in files:
                digest.update(f.name.encode())
                try:
                    digest.update(f.read_bytes())
                except OSError as e:
                    raise ReportError(f"cannot read {f} of model {ref.name!r}: {e.strerror or e}") from None
            _FINGERPRINTS[stamp] = digest.hexdigest()[:16]
        return _FINGERPRINTS[stamp]
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # a publishing install (no `run` extra) has no hub cache to look in
        return "uncached"
    cached = try_to_load_from_cache(ref.location, "config.json", revision=ref.revision)
    if isinstance(cached, str):
        return Path(cached).parent.name[:16]  # the snapshot folder is the commit hash
    return "uncached"


def pick_device(device: str) -> str:
    """The torch device for a config's `device` (validated there: auto, cpu, cuda[:N], mps)."""
    try:
        import torch
    except ImportError as e:
        from generator.versions import RUN_EXTRA

        raise ReportError(
            f"running experiments needs torch, which cannot be imported here ({e}): {RUN_EXTRA}; "
            "`capcircuit site` publishes stored results without it"
        ) from None

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ReportError(f"device {device!r} was asked for but CUDA is not available; use --device cpu or auto")
        index = int(device.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            raise ReportError(
                f"device {device!r}: this machine has {torch.cuda.device_count()} CUDA device(s), "
                f"cuda:0 to cuda:{torch.cuda.device_count() - 1}"
            )
    if device == "mps" and not torch.backends.mps.is_available():
        raise ReportError("device 'mps' was asked for but MPS is not available; use --device cpu or auto")
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
            revision = {"revision": ref.revision} if ref.source == "hub" and ref.revision else {}
            model = TransformerBridge.boot_transformers(ref.location, device=device, dtype=torch_dtype, **revision)
    except Exception as e:  # noqa: BLE001 - turned into one sentence below
        if ref.source in ("hub", "tl-legacy") and _is_offline_error(e):
            raise ReportError(
                f"cannot load model {ref.name!r}: its weights are not in the local cache and the "
                f"Hugging Face hub cannot be reached ({type(e).__name__}); run where the hub is "
                f"reachable once to download them, or use --models organism"
            ) from None
        if ref.source in ("organism", "local"):
            first = str(e).strip().splitlines()[0] if str(e).strip() else ""
            raise ReportError(
                f"cannot load model {ref.name!r} from {ref.location}: {type(e).__name__}: {first[:300]}; "
                "check that the folder is a complete Hugging Face checkpoint (--debug shows the traceback)"
            ) from e
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


def final_logits_only(model) -> dict:
    """Keyword arguments for a forward whose logits are read at the final position only, or not
    at all: transformers' `logits_to_keep=1`, where the loaded model's forward takes it, so the
    unembedding runs on that position alone (about a quarter of a ten-token GPT-2 small
    forward; the numbers are the same). {} elsewhere: the logits then come for every position,
    and reading [:, -1] gives the same."""
    import inspect

    forward = getattr(model.__dict__.get("original_model"), "forward", None)
    takes = forward is not None and "logits_to_keep" in inspect.signature(forward).parameters
    return {"logits_to_keep": 1} if takes else {}

"""The `capcircuit` command: a thin layer over the library (parse options, call, report)."""

from __future__ import annotations

import functools
import os
import sys
import traceback
from pathlib import Path

import click

from generator import ReportError
from generator.config import DEFAULT_CONFIG, load_config


def set_debug(ctx, param, value):
    if value:
        ctx.meta["debug"] = True  # meta is shared by every context of the command line


def common_options(f):
    """--config, --models and --device, declared once for every command that needs them."""

    @click.option(
        "--config",
        "config_path",
        default=DEFAULT_CONFIG,
        show_default=True,
        type=click.Path(dir_okay=False),
        help="Report config (YAML).",
    )
    @click.option(
        "--models", default=None, help="Comma-separated models, overriding the config (e.g. organism,gpt2-small)."
    )
    @click.option("--device", default=None, help="auto (CUDA when present), cpu, cuda, cuda:N or mps.")
    @click.option("--debug", is_flag=True, expose_value=False, callback=set_debug, help="Show tracebacks.")
    @functools.wraps(f)
    def wrapper(config_path, models, device, **kwargs):
        overrides = {"models": models.split(",") if models is not None else None, "device": device}
        return f(config=load_config(config_path, log=log, **overrides), **kwargs)

    return wrapper


def allow_stale_option(f):
    return click.option(
        "--allow-stale",
        is_flag=True,
        help="Publish results that no longer match their inputs (by default a stale result is an error).",
    )(f)


def run_options(f):
    f = click.option(
        "--address",
        default=None,
        metavar="ADDRESS",
        help="With --executor ray: the cluster's address (default: RAY_ADDRESS, or a new local cluster).",
    )(f)
    f = click.option(
        "--executor",
        default="local",
        show_default=True,
        type=click.Choice(["local", "ray"]),
        help="local: one model after another here; ray: each model a Ray task (pip install 'capcircuit[ray]').",
    )(f)
    f = click.option("--force", is_flag=True, help="Re-run even when results are fresh.")(f)
    return click.option("--only", multiple=True, metavar="NAME", help="Run only this experiment (repeatable).")(f)


def log(message: str) -> None:
    click.echo(message, err=True)


class ReportGroup(click.Group):
    """The error boundary: a ReportError is one clear line and exit code 1; any other error
    (a bug) one line naming it and exit 1; Ctrl-C exit 130. Tracebacks only with --debug."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise  # click's own: usage errors (exit 2), --help, --version
        except KeyboardInterrupt:
            if debug(ctx):
                traceback.print_exc()
            click.secho("interrupted: stored results are complete files; run again to go on", fg="red", err=True)
            ctx.exit(130)
        except ReportError as e:
            if debug(ctx):
                traceback.print_exc()
            click.secho(f"error: {e}", fg="red", err=True)
            ctx.exit(1)
        except OSError as e:  # the disk or the system, not a bug: which file, and why
            if debug(ctx):
                traceback.print_exc()
            from generator.files import shown

            where = f"{shown(e.filename)}: " if e.filename else ""
            click.secho(
                f"error: {where}{e.strerror or e} (a file or system operation failed: check the disk, "
                "its free space and the permissions)",
                fg="red",
                err=True,
            )
            ctx.exit(1)
        except Exception as e:  # noqa: BLE001 - a bug: one line, the traceback with --debug
            if debug(ctx):
                traceback.print_exc()
            first = str(e).strip().splitlines()[0] if str(e).strip() else ""
            click.secho(
                f"error: unexpected {type(e).__name__}: {first[:300]} (a bug in capcircuit: "
                "run again with --debug for the traceback)",
                fg="red",
                err=True,
            )
            ctx.exit(1)


def debug(ctx) -> bool:
    return bool(ctx.params.get("debug") or ctx.meta.get("debug") or os.environ.get("CAPCIRCUIT_DEBUG"))


@click.group(cls=ReportGroup)
@click.version_option(package_name="capcircuit")
@click.option("--debug", is_flag=True, help="Show the traceback of an error (also: CAPCIRCUIT_DEBUG=1).")
def main(debug):
    """Build the capital-letter circuit report."""
    if os.environ.get("CI") or not sys.stderr.isatty():
        os.environ.setdefault("TQDM_DISABLE", "1")  # progress bars only for a person watching
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


def _run(config, force, only, executor="local", address=None):
    from generator.pipeline import run

    summary = run(config, force=force, only=only, log=log, executor=executor, address=address)
    for row in summary:
        seconds = f"{row['seconds']:.1f}s" if row["seconds"] is not None else "-"
        log(f"  {row['status']:<7} {row['model']:<20} {row['experiment']:<22} {seconds}")
    return summary


@main.command()
@common_options
@run_options
def run(config, force, only, executor, address):
    """Run the experiments whose results are stale."""
    _run(config, force, only, executor, address)


@main.command()
@common_options
@allow_stale_option
def render(config, allow_stale):
    """Render the results store into markdown pages (no torch needed). A missing, corrupt or
    stale result is an error: nothing is written."""
    from generator.render import render as render_pages

    render_pages(config, log=log, allow_stale=allow_stale)


@main.command()
@common_options
@run_options
@allow_stale_option
def build(config, force, only, executor, address, allow_stale):
    """Run stale experiments, render pages and build the site (mkdocs build --strict)."""
    from generator.site import build_site

    _run(config, force, only, executor, address)
    build_site(config, log=log, allow_stale=allow_stale)


@main.command()
@common_options
@allow_stale_option
def site(config, allow_stale):
    """Render the stored results and build the site, running nothing (no torch needed):
    publish committed results/ from a machine without the models. The same as `mkdocs build`
    (the mkdocs hook renders the pages), with this command's --config and --models. A
    missing, corrupt or stale result is an error and site/ is left as it was."""
    from generator.site import build_site

    build_site(config, log=log, allow_stale=allow_stale)


@main.command()
@common_options
def status(config):
    """List each (model, experiment) as fresh, stale or corrupt, and why."""
    from generator.pipeline import plan

    for p in plan(config):
        click.echo(f"{p.model:<20} {p.experiment:<22} {p.state}")


@main.command()
@common_options
@click.option("--dev-addr", default="127.0.0.1:8000", show_default=True)
@allow_stale_option
def serve(config, dev_addr, allow_stale):
    """Preview the site with live reload (`mkdocs serve` with this command's options)."""
    from generator.site import serve as serve_site

    serve_site(config, dev_addr, allow_stale=allow_stale)


@main.group()
def organism():
    """The bundled model organisms."""


@organism.command()
def fetch():
    """Fetch the organisms' corpus: three Debian packages of English text (apt-get download)."""
    from generator.organism import sources

    log(f"corpus packages in {sources.fetch(log=log)}")


@organism.command()
@click.option(
    "--model",
    "which",
    default="all",
    show_default=True,
    type=click.Choice(["organism", "organism-attn-only-1l", "all"]),
    help="Which bundled organism to train; all trains both, one after the other.",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Output folder (default: the bundled checkpoint under generator/assets/). "
    "With --model all, the folder that receives one sub-folder per model.",
)
@click.option("--seed", default=0, show_default=True)
@click.option(
    "--checkpoints",
    default=0,
    show_default=True,
    type=click.IntRange(min=0, max=64),
    help="Also keep this many log-spaced checkpoints of the training run (e.g. 8), for a sweep.",
)
@click.option(
    "--checkpoint-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("checkpoints"),
    show_default=True,
    help="Where --checkpoints go: DIR/<model>/step-NNNNNN, with DIR/<model>/sweep.yaml for a report config.",
)
@click.option(
    "--verify",
    is_flag=True,
    help="Retrain into a temporary folder and check that the weights and tokenizer are byte for "
    "byte the committed ones (the bundled models are left as they are).",
)
def train(which, out, seed, checkpoints, checkpoint_dir, verify):
    """Retrain the organisms on their English corpus (about 20 minutes for both on 2 CPU cores)."""
    import tempfile
    import time

    from generator.versions import require_run_packages

    require_run_packages("training an organism")
    from generator.files import check_writable
    from generator.models import ASSETS, BUNDLED

    if not verify:  # --verify trains into a scratch folder
        check_writable(out or ASSETS, "save the trained model", "--out")  # before minutes of training
    if checkpoints:
        check_writable(checkpoint_dir, "save checkpoints", "--checkpoint-dir")
    from generator.organism.train import MODELS
    from generator.organism.train import train as train_organism

    names = list(MODELS) if which == "all" else [which]
    for name in names:
        with tempfile.TemporaryDirectory() as scratch:
            if verify:
                folder = Path(scratch) / name
            else:
                folder = BUNDLED[name] if out is None else (out / name if which == "all" else out)
            t0 = time.time()
            record = train_organism(
                folder,
                model=name,
                seed=seed,
                progress=sys.stderr.isatty() and not os.environ.get("CI"),
                checkpoints=checkpoints,
                checkpoint_dir=checkpoint_dir / name,
            )
            log(f"{name}: {folder} ({time.time() - t0:.0f}s)")
            for row in record["acceptance"]:
                log(f"  {row['metric']}: {row['value']:.4g} (needs {row['op']} {row['bound']})")
            if verify:
                for f in ("model.safetensors", "tokenizer.json"):
                    same = (folder / f).read_bytes() == (BUNDLED[name] / f).read_bytes()
                    log(f"  {f}: {'identical to' if same else 'DIFFERS from'} {BUNDLED[name] / f}")
                    if not same:
                        raise ReportError(f"retraining {name} did not reproduce {BUNDLED[name] / f} byte for byte")

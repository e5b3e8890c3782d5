"""What may be published: every configured result, validated by the store, and fresh (or let
through by --allow-stale, with a warning)."""

from __future__ import annotations

from generator import ReportError
from generator.config import Config
from generator.files import shown
from generator.store import Store


def load_results(config: Config, allow_stale: bool = False, log=print) -> dict[str, dict[str, dict]]:
    """{model name: {experiment: record}} for every configured model and experiment, each
    validated by the store. Nothing wrong reaches a page: a configured result that is missing,
    corrupt or non-finite is an error, and so is one that no longer matches its inputs (the
    config, the task, the code, the model's weights: pipeline.plan) unless `allow_stale`.
    Package versions are the exception: a result keeps the versions it ran with (its pages
    show them), and a site may be rebuilt under others."""
    from generator.pipeline import plan

    store = Store(config.path("results"))
    plans = plan(config)
    for p in plans:
        if p.corrupt:
            store.load(p.slug, p.experiment)  # raises the StoreError with the file and the fix
    missing = [p for p in plans if p.reasons == ["no stored result"]]
    if missing:
        listed = "; ".join(f"{shown(store.path(p.slug, p.experiment))} ({p.experiment} of {p.model})" for p in missing)
        raise ReportError(f"no stored result: {listed}: run `capcircuit run` (or `build`) first")
    stale = {(p.model, p.experiment): [r for r in p.reasons if r != "versions changed"] for p in plans}
    stale = {key: reasons for key, reasons in stale.items() if reasons}
    if stale:
        listed = "; ".join(
            f"{shown(store.path(p.slug, p.experiment))} ({', '.join(stale[p.model, p.experiment])})"
            for p in plans
            if (p.model, p.experiment) in stale
        )
        if not allow_stale:
            raise ReportError(
                f"stale results: {listed}: re-run them with `capcircuit run`, or publish them as they are "
                "with --allow-stale"
            )
        log(f"warning: publishing stale results (--allow-stale): {listed}")
    if any("versions changed" in p.reasons for p in plans):
        log("note: some results were computed under other package versions than this machine's; their pages say which")
    results: dict[str, dict[str, dict]] = {}
    for p in plans:
        record = store.load(p.slug, p.experiment)
        record["timing"] = store.timing(p.slug, p.experiment)
        record["experiment"] = p.experiment  # which figures module draws it
        record["stale"] = stale.get((p.model, p.experiment), [])  # what --allow-stale let through, for a page to say
        results.setdefault(p.model, {})[p.experiment] = record
    return results

"""The ``sscp-rag`` command line: a thin layer that parses options, calls the library and prints.

Errors from the library become one plain line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from sscp_rag import __version__
from sscp_rag.errors import SscpRagError
from sscp_rag.settings import Settings


def _settings(ctx: click.Context, **overrides: Any) -> Settings:
    base: Settings = ctx.obj
    return base.with_overrides(**overrides)


def corpus_index_options(f: Callable) -> Callable:
    f = click.option(
        "--index",
        "index_dir",
        type=click.Path(path_type=Path),
        help="Index folder [default: index, or SSCP_RAG_INDEX_DIR].",
    )(f)
    f = click.option(
        "--corpus",
        "corpus_dir",
        type=click.Path(path_type=Path),
        help="Corpus folder of PDFs [default: corpus/demo, or SSCP_RAG_CORPUS_DIR].",
    )(f)
    return f


def filter_options(f: Callable) -> Callable:
    f = click.option(
        "--report", "reports", multiple=True, help="Only this report (file, short title or pseudonym). Repeatable."
    )(f)
    f = click.option("--year-to", type=int, help="Only reports published in or before this year.")(f)
    f = click.option("--year-from", type=int, help="Only reports published in or after this year.")(f)
    f = click.option(
        "--theme",
        "themes",
        multiple=True,
        help="Only passages tagged with this theme (id or alias, e.g. neglect, 'toxic trio'). Repeatable.",
    )(f)
    f = click.option(
        "--type",
        "types",
        multiple=True,
        help="Only this review type (SCR, LCSPR, thematic, "
        "SUDI, DHR, '7-minute briefing', good-practice, infographic, other). Repeatable.",
    )(f)
    return f


def _filters(types, themes, year_from, year_to, reports):
    from sscp_rag.retrieval import Filters

    return Filters(tuple(types), year_from, year_to, tuple(themes), tuple(reports))


def _echo_json(data: Any) -> None:
    from sscp_rag.display import raw_stream

    # JSON escapes control characters itself, and must stay exact: around the terminal filter.
    click.echo(json.dumps(data, indent=2, ensure_ascii=False), file=raw_stream(sys.stdout))


def _load(settings: Settings):
    from sscp_rag.index import load_index
    from sscp_rag.ingest import corpus_changes

    index = load_index(settings)
    changed = corpus_changes(settings, index.manifest)
    if changed:
        click.echo(
            f"warning: the corpus has changed since the index was built ({changed}); run: sscp-rag ingest", err=True
        )
    if settings.retrieval_mode != "bm25" and index.embedder.live_needs_export():
        click.echo("Exporting the model to ONNX for fast questions (once per machine)…", err=True)
    return index


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="sscp-rag")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Search and page-cited answers over child safeguarding review documents.

    Typical use: `sscp-rag ingest` once (and after adding PDFs), then `sscp-rag ask "..."` or
    `sscp-rag search "..."`. Every setting can also be set as an environment variable
    SSCP_RAG_<NAME>; `sscp-rag settings` lists them.
    """
    ctx.obj = Settings.from_env()


@cli.command()
@corpus_index_options
@click.option("--strict", is_flag=True, help="Fail (exit 1) if any file is skipped.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.option(
    "--ray",
    "ray_address",
    is_flag=False,
    flag_value="local",
    default=None,
    metavar="[ADDRESS]",
    help="Read and embed on a Ray cluster: alone, a local Ray instance (2 CPUs); 'auto' or ray://HOST:10001 "
    "joins a running one. Needs pip install '.[ray]'.",
)
@click.option("--ray-workers", type=click.IntRange(min=1), help="Ray workers [default: one per cluster CPU].")
@click.pass_context
def ingest(ctx, corpus_dir, index_dir, strict, quiet, as_json, ray_address, ray_workers):
    """Build or update the index from the corpus PDFs (incremental, atomic and resumable).

    Unchanged files are not re-read or re-embedded; changed files are replaced; removed files are
    dropped; files finished by an interrupted run are not done again. Unreadable files (encrypted,
    corrupt, empty, not a PDF, no text layer) are skipped with a reason. Exits non-zero only when
    nothing could be ingested, or with --strict.
    """
    from sscp_rag.ingest import build_index

    s = _settings(ctx, corpus_dir=corpus_dir, index_dir=index_dir)
    producer = None
    if ray_address is not None or ray_workers:
        from sscp_rag.distributed import ray_producer

        producer = ray_producer(ray_address, workers=ray_workers or 0)
    summary = build_index(s, progress=not quiet and not as_json, strict=strict, producer=producer)
    if as_json:
        _echo_json(summary.as_dict())
        return
    d = summary.as_dict()
    if summary.up_to_date:
        click.echo(
            f"Index {s.index_dir} is up to date with {s.corpus_dir}: {d['documents']} documents, "
            f"{d['pages']} pages, {d['chunks']} chunks ({d['seconds']:.1f} s)."
        )
    else:
        click.echo(f"Indexed {s.corpus_dir} into {s.index_dir}")
        click.echo(f"  files {d['files']} · documents {d['documents']} · pages {d['pages']} · chunks {d['chunks']}")
        click.echo(
            f"  read {d['ingested']} file(s), reused {d['reused']} unchanged, removed {len(d['removed'])}, "
            f"embedded {d['embedded']} chunk(s)"
            + (f", resumed {d['resumed']} file(s) an interrupted run had finished" if d["resumed"] else "")
        )
        click.echo(f"  {d['seconds']:.1f} s · {d['pages_per_second']:.1f} pages/s read")
    if summary.skipped:
        click.echo(f"Skipped {len(summary.skipped)} file(s):")
        for f, reason in summary.skipped:
            click.echo(f"  {f}: {reason}")


def _print_hit(h, width: int = 500) -> None:
    from sscp_rag.export import clip

    head = f"{h.rank}. {h.citation}"
    if h.heading:
        head += f" — {h.heading}"
    click.echo(click.style(head, bold=True) + f"  [{h.type}, {h.year or 'n.d.'}; score {h.score:.4f}]")
    click.echo("   " + clip(h.text, width))
    if h.matched_terms:
        click.echo("   matched: " + ", ".join(h.matched_terms[:12]))
    click.echo("")


@cli.command("search")
@click.argument("query")
@corpus_index_options
@filter_options
@click.option("-k", "--k", "k", type=int, help="How many hits [default: 10].")
@click.option("--per-report", type=int, help="At most this many hits from one report.")
@click.option("--mode", type=click.Choice(["hybrid", "dense", "bm25"]), help="Retriever [default: hybrid].")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (see docs/json.md).")
@click.pass_context
def search_cmd(
    ctx, query, corpus_dir, index_dir, types, themes, year_from, year_to, reports, k, per_report, mode, as_json
):
    """Ranked passages for QUERY, with report, pages and scores."""
    from sscp_rag.export import search_to_dict
    from sscp_rag.retrieval import search

    s = _settings(ctx, corpus_dir=corpus_dir, index_dir=index_dir, max_hits_per_report=per_report, retrieval_mode=mode)
    if not query.strip():
        raise SscpRagError("the query is empty; type some words to search for")
    index = _load(s)
    filters = _filters(types, themes, year_from, year_to, reports)
    hits = search(index, query, k=k, filters=filters)
    if as_json:
        _echo_json(search_to_dict(query, filters.__dict__, hits))
        return
    if not hits:
        click.echo("No passages match (check the filters).")
    for h in hits:
        _print_hit(h)


@cli.command()
@click.argument("question")
@corpus_index_options
@filter_options
@click.option(
    "--history",
    "history",
    multiple=True,
    help="An earlier question of the conversation, for follow-ups (repeatable, oldest first).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON (see docs/json.md).")
@click.pass_context
def ask(ctx, question, corpus_dir, index_dir, types, themes, year_from, year_to, reports, history, as_json):
    """A short answer to QUESTION, quoting the reports and citing report and page."""
    from sscp_rag.answer import answer
    from sscp_rag.export import answer_to_dict, clip, source_line

    s = _settings(ctx, corpus_dir=corpus_dir, index_dir=index_dir)
    if not question.strip():
        raise SscpRagError("the question is empty; type a question about the reviews")
    index = _load(s)
    a = answer(index, question, filters=_filters(types, themes, year_from, year_to, reports), history=history)
    if as_json:
        _echo_json(answer_to_dict(a))
        return
    if a.standalone_query != a.question:
        click.echo(f"(understood as: {a.standalone_query})\n")
    if a.partial_note:
        click.echo(f"Partly covered: {a.partial_note}\n")
    click.echo(a.message)
    if a.why:
        click.echo(f"Why: {a.why}")
    if a.abstained:
        click.echo("\nPossibly related:")
        for h in a.related:
            click.echo(f"  - {h.citation}: {clip(h.text, 240)}")
        return
    if a.synthesis:
        click.echo("\nSummary (generated, checked against the sources):\n" + a.synthesis)
    for note in a.synthesis_notes:
        click.echo(f"note: {note}", err=True)
    for sec in a.sections:
        click.echo("\n" + click.style(sec.short_title, bold=True))
        for q in sec.quotes:
            click.echo(f"  \u201c{q.text}\u201d [{q.source}]")
    click.echo("\nSources:")
    for src in a.sources:
        click.echo("  " + source_line(src))


@cli.command("reports")
@corpus_index_options
@click.option("--theme", help="Only reports tagged with this theme (most passages first).")
@click.option("--type", "rtype", help="Only this review type.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (see docs/json.md).")
@click.pass_context
def reports_cmd(ctx, corpus_dir, index_dir, theme, rtype, as_json):
    """The indexed reports with type, year, pages and themes."""
    from sscp_rag.retrieval import reports

    s = _settings(ctx, corpus_dir=corpus_dir, index_dir=index_dir)
    index = _load(s)
    rows = reports(index, theme=theme, rtype=rtype)
    if as_json:
        _echo_json({"version": 1, "reports": rows})
        return
    if not rows:
        click.echo("No indexed reports match.")
    for r in rows:
        themes = ", ".join(f"{t} ({r['theme_counts'].get(t, 0)})" for t in r["themes"])
        flag = " [fictional]" if r["fictional"] else ""
        click.echo(
            click.style(r["short_title"], bold=True) + f" — {r['type']}, {r['year'] or 'n.d.'}, "
            f"{r['pages']} pages{flag}\n  {r['file']}: {r['title']}\n  themes: {themes or '-'}"
        )


@cli.command("fetch")
@click.option(
    "--url",
    "urls",
    multiple=True,
    metavar="URL",
    help="Start page to read for PDF links "
    "(repeatable) [default: the SSCP 'Learning from Local Reviews' page and its "
    "'7 Minute Briefings' page].",
)
@click.option(
    "--dest",
    type=click.Path(path_type=Path),
    default=Path("corpus/sscp"),
    show_default=True,
    help="Folder the PDFs and their manifest.json go into.",
)
@click.option(
    "--max-mb", type=click.FloatRange(min=0, min_open=True), help="Largest PDF downloaded, in MB [default: 50]."
)
@click.option(
    "--delay",
    type=click.FloatRange(min=0),
    help="Seconds between two requests to one host [default: 1; robots.txt Crawl-delay raises it].",
)
@click.option("--contact", help="URL or e-mail put in the User-Agent so site owners can reach you.")
@click.option(
    "--allow-host",
    "allow_hosts",
    multiple=True,
    metavar="HOST",
    help="Also follow links and redirects to this host, e.g. a CDN (repeatable) [default: only the start "
    "pages' hosts, plus SSCP_RAG_FETCH_ALLOW_HOSTS].",
)
@click.option(
    "--max-files",
    type=click.IntRange(min=1),
    help="Most PDFs fetched in one run [default: 500, or SSCP_RAG_FETCH_MAX_FILES].",
)
@click.option(
    "--deadline",
    type=click.FloatRange(min=0, min_open=True),
    help="Most seconds one request may take in all, however slowly the server sends "
    "[default: 300, or SSCP_RAG_FETCH_DEADLINE].",
)
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.pass_context
def fetch_cmd(ctx, urls, dest, max_mb, delay, contact, allow_hosts, max_files, deadline, quiet, as_json):
    """Download the published review PDFs into DEST and record where each came from.

    Reads each start page, follows its PDF links (and pages that hold the PDF link, one level
    deep), honours robots.txt, and writes DEST/manifest.json. Unchanged files are skipped. Only
    the start pages' hosts (and --allow-host ones) are contacted. Then run: sscp-rag ingest
    --corpus DEST. Exits 1 if a start page could not be read.
    """
    from sscp_rag.fetch import FetchOptions, fetch, summary_lines

    s = _settings(ctx, fetch_max_files=max_files, fetch_deadline=deadline)
    hosts = (*(h for h in s.fetch_allow_hosts.split(",") if h.strip()), *allow_hosts)
    given = {"max_bytes": int(max_mb * 1024 * 1024) if max_mb else None, "delay": delay, "contact": contact}
    options = FetchOptions(
        progress=not (quiet or as_json),
        max_files=s.fetch_max_files,
        deadline=s.fetch_deadline,
        allow_hosts=hosts,
        **{k: v for k, v in given.items() if v is not None},
    )
    try:
        summary = fetch(urls or None, dest, options)
    except KeyboardInterrupt:
        click.echo(
            f"Interrupted; no half-written file is left in {dest}, and files finished so far are in its manifest.",
            err=True,
        )
        sys.exit(130)
    if as_json:
        _echo_json(summary.as_dict())
    else:
        for line in summary_lines(summary):
            click.echo(line)
    if not summary.ok:
        sys.exit(1)


@cli.command("eval")
@click.argument("eval_file", required=False, type=click.Path(path_type=Path, dir_okay=False))
@corpus_index_options
@click.option(
    "--beir",
    "beir_dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Evaluate on a BEIR folder (corpus.jsonl, queries.jsonl, qrels/test.tsv) instead.",
)
@click.option(
    "--configs",
    default="bm25,dense,hybrid",
    show_default=True,
    help="Comma-separated configurations, or 'all' (see --list-configs).",
)
@click.option("--k", "k", type=click.IntRange(min=1), default=10, show_default=True, help="Hits per question.")
@click.option("--no-answers", is_flag=True, help="Skip the answer metrics (abstention, citation validity).")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON (see eval/README.md).")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Write a report folder: results.json, per_question.jsonl, summary.md, comparison.png.",
)
@click.option("--list-configs", is_flag=True, help="List the configurations and exit.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
@click.pass_context
def eval_cmd(
    ctx, eval_file, corpus_dir, index_dir, beir_dir, configs, k, no_answers, as_json, out_dir, list_configs, quiet
):
    """Measure retrieval and answers on EVAL_FILE (JSONL, see eval/README.md) or a BEIR folder.

    Builds or reuses the index of the corpus, runs each configuration and reports document- and
    page-level recall@5/@10, MRR@10 and nDCG@10, abstention precision/recall, citation validity
    and latency. With --beir, reports document-level metrics on the BEIR collection.
    """
    from sscp_rag import evaluation as ev

    if list_configs:
        for c in ev.CONFIGS.values():
            click.echo(f"{c.name:<16} {c.description}")
        return
    if (eval_file is None) == (beir_dir is None):
        raise click.UsageError("give either EVAL_FILE or --beir DIR (one of them)")
    s = _settings(ctx, corpus_dir=corpus_dir, index_dir=index_dir)
    chosen = ev.resolve_configs(configs)
    progress = not (quiet or as_json)
    if beir_dir is not None:
        from sscp_rag.beir import evaluate_beir

        run = evaluate_beir(beir_dir, s, chosen, k=k, progress=progress)
    else:
        run = ev.evaluate_corpus(eval_file, s, chosen, k=k, answers=not no_answers, progress=progress)
    if out_dir is not None:
        ev.write_report(run, out_dir)
    if as_json:
        _echo_json(run.to_dict())
        return
    click.echo(ev.format_table(run))
    if out_dir is not None:
        click.echo(f"\nReport written to {out_dir}")


@cli.command("feedback")
@click.option(
    "--path",
    "path",
    type=click.Path(path_type=Path),
    help="The app's feedback file [default: eval/feedback.jsonl, or SSCP_RAG_FEEDBACK_PATH].",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    help="Append the usable lines, cut to the eval-set fields, to this eval set (JSONL); skips ids already in it.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the counts as JSON.")
@click.pass_context
def feedback_cmd(ctx, path, out, as_json):
    """Summarise the app's feedback and turn it into eval-set lines.

    Thumbs-down lines without a "the right source was ..." correction say what was wrong, not what
    is right, so they are counted but never exported. Without --out the eval lines are printed.
    """
    from sscp_rag.feedback import append_to_eval_set, feedback_summary, load_feedback, to_eval_lines

    settings = _settings(ctx, feedback_path=path)
    records = load_feedback(settings.feedback_path)
    counts = feedback_summary(records)
    lines = to_eval_lines(records)
    added = append_to_eval_set(lines, out) if out is not None else 0
    if as_json:
        _echo_json({**counts, "path": str(settings.feedback_path), "out": str(out) if out else None, "added": added})
        return
    if not records:
        click.echo(f"No feedback yet in {settings.feedback_path}.")
        return
    click.echo(
        f"{counts['lines']} feedback line(s) in {settings.feedback_path}: {counts['up']} up, {counts['down']} down, "
        f"{counts['corrections']} with a correction; {counts['needs_review']} need review (not exported)."
    )
    if out is not None:
        click.echo(f"Added {added} eval line(s) to {out} ({len(lines) - added} were already there).")
    else:
        for line in lines:
            click.echo(json.dumps(line, ensure_ascii=False))


@cli.command("settings")
@click.option("--markdown", is_flag=True, help="Print a Markdown table (docs/settings.md is this output).")
def settings_cmd(markdown):
    """Every setting with its default and environment variable."""
    from sscp_rag.settings import settings_markdown

    if markdown:
        click.echo(settings_markdown(), nl=False)
        return
    from sscp_rag.settings import ENV_PREFIX

    for name, help_, default in Settings.describe():
        click.echo(f"{ENV_PREFIX}{name.upper()} (default {default!s}):\n    {help_}")


def _one_format(as_json: bool, as_csv: bool) -> None:
    if as_json and as_csv:
        raise SscpRagError("give --json or --csv, not both")


@cli.command("themes")
@corpus_index_options
@click.option(
    "--by",
    type=click.Choice(["review", "year"]),
    default="review",
    show_default=True,
    help="Themes by report (passage counts, strongest passage) or by year of review date (share of reports).",
)
@click.option("--theme", help="Only this theme (id, label or alias).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (see docs/json.md).")
@click.option("--csv", "as_csv", is_flag=True, help="Print CSV (themes by reports, or years by themes).")
@click.pass_context
def themes_cmd(ctx, corpus_dir, index_dir, by, theme, as_json, as_csv):
    """Which themes recur across the reviews: tagged passages per theme and report, or per year.

    By review, each cell counts the report's passages tagged with the theme, and the strongest
    passage (most alias words, then similarity to the theme) is cited by page. By year, each
    theme's share of that year's reports and its trend (rising, falling, steady).
    """
    from sscp_rag.thememap import (
        map_csv,
        map_to_dict,
        theme_map,
        themes_by_year,
        trend,
        years_csv,
        years_to_dict,
    )
    from sscp_rag.themes import THEMES_BY_ID

    _one_format(as_json, as_csv)
    index = _load(_settings(ctx, corpus_dir=corpus_dir, index_dir=index_dir))
    if by == "year":
        rows = themes_by_year(index, theme)
        if as_json:
            _echo_json(years_to_dict(rows))
        elif as_csv:
            click.echo(years_csv(rows), nl=False)
        elif not rows:
            click.echo("No indexed report has a year, so themes cannot be shown by year.")
        else:
            years = sorted({r.year for r in rows})
            click.echo(f"{'theme':<24}" + "".join(f"{y:>7}" for y in years) + "  trend")
            for t in dict.fromkeys(r.theme for r in rows):
                share = {r.year: r for r in rows if r.theme == t}
                cells = "".join(f"{share[y].reports:>3}/{share[y].reports_in_year:<3}" for y in years)
                click.echo(f"{t:<24}{cells}  {trend(rows, t)[0]}")
            click.echo("\nEach cell: reports of that year with the theme / reports of that year.")
        return
    m = theme_map(index, theme)
    if as_json:
        _echo_json(map_to_dict(m))
        return
    if as_csv:
        click.echo(map_csv(m), nl=False)
        return
    if not m.cells:
        click.echo("No passage of any indexed report is tagged with a theme.")
        return
    for t in m.themes:
        cells = sorted((c for c in m.cells if c.theme == t), key=lambda c: -c.count)
        click.echo(
            click.style(THEMES_BY_ID[t].label, bold=True)
            + f" ({t}): {m.total(t)} passages in {len(cells)} of {len(m.reports)} reports"
        )
        for c in cells:
            click.echo(f"  {c.best.short_title}: {c.count} (strongest: {c.best.citation})")


@cli.command("recommendations")
@corpus_index_options
@click.option("--theme", help="Only recommendations on this theme (id, label or alias).")
@click.option("--agency", help="Only recommendations to or led by this agency (words of its name, e.g. CCG, police).")
@click.option("--year-from", type=int, help="Only reports published in or after this year.")
@click.option("--year-to", type=int, help="Only reports published in or before this year.")
@click.option("--report", help="Only this report (file, short title or pseudonym).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (see docs/json.md).")
@click.option("--csv", "as_csv", is_flag=True, help="Print CSV.")
@click.option(
    "--out",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Write the register to FILE.docx (Word) or FILE.csv instead of printing it.",
)
@click.pass_context
def recommendations_cmd(ctx, corpus_dir, index_dir, theme, agency, year_from, year_to, report, as_json, as_csv, out):
    """The recommendations register: every recommendation of every report, verbatim, with its
    report, pages, agency and themes."""
    from sscp_rag.recommendations import (
        RecommendationFilters,
        filter_register,
        recommendation_to_dict,
        register,
        register_csv,
        register_docx,
    )

    _one_format(as_json, as_csv)
    if out is not None and out.suffix.lower() not in (".docx", ".csv"):
        raise SscpRagError(f"--out must end in .docx or .csv, not {out.name!r}")
    index = _load(_settings(ctx, corpus_dir=corpus_dir, index_dir=index_dir))
    every = register(index)
    recs = filter_register(every, RecommendationFilters(theme, agency, year_from, year_to, report), index)
    if as_json:
        _echo_json(
            {
                "version": 1,
                "total": len(every),
                "count": len(recs),
                "recommendations": [recommendation_to_dict(r) for r in recs],
            }
        )
        return
    if not recs:
        what = "match these filters" if len(every) else "were found in the indexed reports"
        raise SscpRagError(f"no recommendations {what} ({len(every)} in the register)")
    if out is not None:
        data = register_docx(recs) if out.suffix.lower() == ".docx" else register_csv(recs).encode("utf-8")
        out.write_bytes(data)
        click.echo(f"Wrote {len(recs)} recommendation(s) to {out}")
        return
    if as_csv:
        click.echo(register_csv(recs), nl=False)
        return
    for r in recs:
        click.echo(click.style(f"{r.citation}, no. {r.n}", bold=True) + f" — {r.agency or 'agency not stated'}")
        click.echo(f"  {r.text}")
        if r.themes:
            click.echo(f"  themes: {', '.join(r.themes)}")
    click.echo(f"\n{len(recs)} of {len(every)} recommendations.")


@cli.command("eval-recommendations")
@click.argument(
    "judged",
    required=False,
    type=click.Path(path_type=Path, dir_okay=False),
    default=Path("eval/recommendations.jsonl"),
)
@corpus_index_options
@click.option("--set", "corpus_set", help="Only the judged lines of this corpus (demo or real).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def eval_recommendations_cmd(ctx, judged, corpus_dir, index_dir, corpus_set, as_json):
    """Precision and recall of the recommendations register against a judged list
    (default eval/recommendations.jsonl; see eval/recommendations.md), over the judged reports
    that the index holds."""
    from sscp_rag.recommendations import MATCH_OVERLAP, load_judged, register, score_register

    index = _load(_settings(ctx, corpus_dir=corpus_dir, index_dir=index_dir))
    lines = load_judged(judged, corpus_set)
    if not lines:
        sets = sorted({str(j.get("corpus")) for j in load_judged(judged)})
        raise SscpRagError(f"no judged lines for --set {corpus_set!r} in {judged} (sets: {', '.join(sets)})")
    held = [j for j in lines if j["file"] in index.by_file]
    if not held:
        raise SscpRagError(f"none of the reports judged in {judged} is in the index {index.settings.index_dir}")
    score = score_register(register(index), held)
    if as_json:
        _echo_json({"version": 1, "judged_file": str(judged), **score.as_dict()})
        return
    n_reports = len({j["file"] for j in held})
    click.echo(
        f"{n_reports} judged report(s): precision {score.precision:.3f} ({score.matched}/{score.extracted}), "
        f"recall {score.recall:.3f} ({score.matched}/{score.judged}); agency right {score.agency_accuracy:.3f} "
        f"({score.agency_right}/{score.agency_checked})"
    )
    click.echo(f"(a match: same text, or word overlap >= {MATCH_OVERLAP}, on overlapping pages)")
    for p in score.per_report:
        click.echo(f"  {p['file']}: judged {p['judged']}, extracted {p['extracted']}, matched {p['matched']}")
    for m in score.misses:
        click.echo(f"missed  {m['file']}: {m['text'][:160]}")
    for e in score.extras:
        click.echo(f"extra   {e['file']} p. {e['pages'][0]}: {e['text'][:160]}")


@cli.command("brief")
@click.argument("topic")
@corpus_index_options
@click.option(
    "--out",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Write the briefing to FILE.docx (Word) or FILE.md (Markdown) instead of printing it.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON (see docs/json.md).")
@click.pass_context
def brief_cmd(ctx, topic, corpus_dir, index_dir, out, as_json):
    """A one- to two-page 7 minute briefing on TOPIC (a theme such as "professional curiosity", or
    a question): What happened, Why it matters, What to do, Further reading; every sentence a
    verbatim quote cited by report and page."""
    from sscp_rag.briefing import briefing_to_dict, briefing_to_docx, briefing_to_markdown, build_briefing

    if out is not None and out.suffix.lower() not in (".docx", ".md"):
        raise SscpRagError(f"--out must end in .docx or .md, not {out.name!r}")
    if not topic.strip():
        raise SscpRagError("the topic is empty; give a theme (e.g. 'professional curiosity') or a question")
    index = _load(_settings(ctx, corpus_dir=corpus_dir, index_dir=index_dir))
    b = build_briefing(index, topic)
    if as_json:
        _echo_json(briefing_to_dict(b))
        return
    if out is not None:
        data = briefing_to_docx(b) if out.suffix.lower() == ".docx" else briefing_to_markdown(b).encode("utf-8")
        out.write_bytes(data)
        click.echo(f"Wrote the briefing ({len(b.quotes)} quotes from {len(b.reading)} report(s)) to {out}")
        return
    click.echo(click.style(b.title, bold=True))
    for sec in b.sections:
        click.echo("\n" + click.style(sec.heading, bold=True))
        for q in sec.quotes:
            click.echo(f"  \u201c{q.text}\u201d ({q.citation})")
    click.echo("\n" + click.style("Further reading", bold=True))
    for r in b.reading:
        click.echo(f"  - {r.line}")


def main() -> None:
    """Entry point: run the CLI and turn errors into plain messages. Escape sequences and control
    characters in what is printed (report text, titles and file names come from PDFs) are dropped
    before they reach the terminal."""
    from sscp_rag.display import safe_terminal

    with safe_terminal():
        _main()


def _main() -> None:
    try:
        cli(standalone_mode=False, prog_name="sscp-rag")
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except SscpRagError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        click.echo("Interrupted; the previous index is unchanged.", err=True)
        sys.exit(130)
    except Exception as exc:  # noqa: BLE001 - the last line of defence: never a traceback
        if os.environ.get("SSCP_RAG_DEBUG"):
            raise
        click.echo(f"unexpected error: {type(exc).__name__}: {exc} (set SSCP_RAG_DEBUG=1 for details)", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()

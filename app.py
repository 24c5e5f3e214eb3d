"""sscp-rag web app: ask, search, browse and export the learning from safeguarding reviews.

Run: ``streamlit run app.py --server.address 127.0.0.1`` (the README's ``./run.sh`` does this).
Settings come from ``SSCP_RAG_*`` environment variables (``SSCP_RAG_INDEX_DIR``,
``SSCP_RAG_CORPUS_DIR``, ``SSCP_RAG_FEEDBACK_PATH``, ...). This file only parses input, calls the
sscp_rag library and formats; corpus text is always shown as inert, escaped Markdown.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from pathlib import Path

import streamlit as st

from sscp_rag.answer import answer, followup_history
from sscp_rag.display import highlight_md, md_escape, md_paragraphs, snippet
from sscp_rag.embedding import make_encoder
from sscp_rag.encoder import Encoder
from sscp_rag.errors import IndexCorruptError, IndexMissingError, IndexStaleError, SscpRagError
from sscp_rag.export import answer_to_docx, answer_to_markdown
from sscp_rag.feedback import feedback_record, parse_pages, save_feedback
from sscp_rag.index import Index, load_index, read_manifest
from sscp_rag.ingest import build_index, corpus_changes
from sscp_rag.records import REVIEW_TYPE_LABELS, REVIEW_TYPES, Answer, page_label
from sscp_rag.render import locate_pdf, page_png, pages_pdf
from sscp_rag.retrieval import Filters, matched_terms, reports, search
from sscp_rag.settings import Settings
from sscp_rag.themes import THEME_IDS, THEMES_BY_ID
from sscp_rag.upload import add_pdf

SEARCH_POOL = 100  # passages retrieved for a search; counted per report and paged through
PAGE_SIZE = 10
EXAMPLES = (
    "What did reviews say about neglect?",
    "What is the learning about co-sleeping on a sofa?",
    "What did reviews find about disguised compliance?",
)

st.set_page_config(page_title="Safeguarding review learning", page_icon=":material/menu_book:", layout="wide")


# --------------------------------------------------------------------------------------------
# resources (once per process)


@st.cache_resource(show_spinner="Loading the embedding model…")
def get_embedder(encoder: str, model_name: str, embed_backend: str, query_backend: str, _settings: Settings) -> Encoder:
    """The encoder, loaded and warmed once per process (one per encoder, model and runtimes). Only
    the model's question-time runtime loads here (ONNX by default, well under a second); torch
    loads only if the app re-ingests."""
    embedder = make_encoder(_settings)
    embedder.encode_query("warm-up")
    return embedder


@st.cache_resource(show_spinner="Loading the index…", max_entries=4)
def get_index(settings_key: str, data_dir: str, _settings: Settings) -> Index:
    """The index (reloaded when a build replaces its data folder). No warm-up answer: with the
    question encoder loaded, a first answer costs ~0.1 s more than later ones, while a warm-up
    run would delay the page by ~0.5 s (scripts/bench_startup.py)."""
    embedder = get_embedder(
        _settings.encoder, _settings.model_name, _settings.embed_backend, _settings.query_backend, _settings
    )
    return load_index(_settings, embedder=embedder)


@st.cache_data(show_spinner=False, max_entries=256)
def page_image(path: str, mtime: float, page: int, budget: tuple[float, int, int]) -> bytes:
    """The page as PNG, rendered within ``budget`` (render_timeout, render_memory_mb, max_pages)."""
    timeout, max_mb, max_pages = budget
    return page_png(Path(path), page, timeout=timeout, max_mb=max_mb, max_pages=max_pages)


@st.cache_data(show_spinner=False, max_entries=256)
def page_range_pdf(path: str, mtime: float, p0: int, p1: int) -> bytes:
    return pages_pdf(Path(path), p0, p1)


def open_index(settings: Settings) -> Index | None:
    """The loaded index, or None after showing why there is none and how to build one."""
    try:
        manifest = read_manifest(Path(settings.index_dir))
        data_dir = str((manifest or {}).get("data_dir", ""))
        if manifest is None:
            raise IndexMissingError(f"no index in {settings.index_dir}")
        key = repr(
            (
                str(settings.index_dir),
                settings.model_name,
                settings.embed_backend,
                settings.query_backend,
                settings.chunk_tokens,
                settings.chunk_overlap,
            )
        )
        return get_index(key, data_dir, settings)
    except (IndexMissingError, IndexStaleError, IndexCorruptError) as exc:
        no_index_screen(settings, exc)
        return None


def no_index_screen(settings: Settings, exc: SscpRagError) -> None:
    missing = isinstance(exc, IndexMissingError)
    st.warning(
        f"**No index to search yet** in `{settings.index_dir}`."
        if missing
        else f"**The index cannot be used:** {md_escape(str(exc))}",
        icon=":material/warning:",
    )
    st.markdown("Build it from the command line (about a minute for the demo corpus):")
    st.code(f"sscp-rag ingest --corpus {settings.corpus_dir} --index {settings.index_dir}", language="bash")
    st.markdown(f"or build it here from the PDFs in `{settings.corpus_dir}`:")
    if st.button("Build the index now", type="primary", key="build_now"):
        run_ingest(settings)


def run_ingest(settings: Settings) -> None:
    """Re-ingest the corpus with a progress bar, then reload the app on the new index."""
    bar = st.progress(0.0, text="Starting…")

    def on_progress(stage: str, done: int, total: int) -> None:
        share = done / total if total else 1.0
        frac = 0.4 * share if stage.startswith("Reading") else 0.4 + 0.6 * share
        bar.progress(min(frac, 1.0), text=f"{stage}: {done} of {total}")

    try:
        embedder = get_embedder(
            settings.encoder, settings.model_name, settings.embed_backend, settings.query_backend, settings
        )
        summary = build_index(settings, progress=False, embedder=embedder, on_progress=on_progress)
    except SscpRagError as exc:
        bar.empty()
        st.error(f"Ingest failed: {md_escape(str(exc))}")
        return
    bar.progress(1.0, text="Done")
    st.session_state["ingest_result"] = summary.as_dict()
    st.rerun()


# --------------------------------------------------------------------------------------------
# shared pieces


def type_label(rtype: str) -> str:
    return REVIEW_TYPE_LABELS.get(rtype, rtype)


def theme_label(tid: str) -> str:
    return THEMES_BY_ID[tid].label if tid in THEMES_BY_ID else tid


def table_height(rows: int, most: int = 20) -> int:
    """Pixels for a dataframe that shows up to ``most`` rows without scrolling."""
    return 38 + 35 * max(1, min(rows, most))


def built_label(built_at: str | None) -> str:
    try:
        return datetime.strptime(str(built_at), "%Y-%m-%dT%H:%M:%S%z").strftime("%d %b %Y, %H:%M")
    except ValueError:
        return str(built_at or "?")


def show_source(
    index: Index, settings: Settings, file: str, p0: int, p1: int, passage: str, terms: tuple[str, ...], key: str
) -> None:
    """A cited passage (query terms highlighted), the PDF page it is on, and the PDF itself."""
    left, right = st.columns([3, 2], gap="medium")
    with left:
        if passage:
            st.markdown(highlight_md(passage, terms))
        path = locate_pdf(file, settings.corpus_dir, index.manifest.get("corpus_dir"))
        if path is None:
            st.caption(f"The PDF {md_escape(file)} is not in the corpus folder any more.")
            return
        mtime = path.stat().st_mtime
        label = page_label(p0, p1)
        row = st.container(horizontal=True)
        row.download_button(
            f"Cited {label} (PDF)",
            data=lambda: page_range_pdf(str(path), mtime, p0, p1),
            file_name=f"{path.stem}-p{p0}{f'-{p1}' if p1 > p0 else ''}.pdf",
            mime="application/pdf",
            key=f"pages_{key}",
            on_click="ignore",
            icon=":material/picture_as_pdf:",
        )
        row.download_button(
            "Whole report (PDF)",
            data=lambda: path.read_bytes(),
            file_name=path.name,
            mime="application/pdf",
            key=f"pdf_{key}",
            on_click="ignore",
            icon=":material/download:",
        )
        st.caption(f"In the whole report, go to page {p0} (the page number of the PDF file).")
    with right:
        try:
            budget = (settings.render_timeout, settings.render_memory_mb, settings.max_pages)
            st.image(page_image(str(path), mtime, p0, budget), caption=md_escape(f"Page {p0} of {path.name}"))
        except SscpRagError as exc:
            st.caption(md_escape(str(exc)))


# --------------------------------------------------------------------------------------------
# Ask


def ask_tab(index: Index, settings: Settings) -> None:
    turns: list[dict] = st.session_state.setdefault("turns", [])
    history = st.container()
    prompt = st.chat_input("Ask about the reviews, or follow up on the last answer…", key="ask_input")
    with history:
        if not turns and not prompt:
            st.markdown(
                "Ask a question and get the reports' own words, each quote cited by report and page. "
                "Follow up with questions like *and in the Child G review?*"
            )
            st.caption("Try: " + " · ".join(f"*{q}*" for q in EXAMPLES))
        for i, turn in enumerate(turns):
            show_turn(index, settings, turn, i)
        if prompt:
            with st.chat_message("user"):
                st.markdown(md_escape(prompt))
            with st.chat_message("assistant"):
                try:
                    with st.spinner("Searching the reviews…"):
                        ans = answer(
                            index, prompt, history=followup_history([t["answer"] for t in turns]), settings=settings
                        )
                except SscpRagError as exc:
                    st.error(md_escape(str(exc)))
                    return
                turns.append({"answer": ans, **exports(ans), "feedback": None})
                show_answer(index, settings, turns[-1], len(turns) - 1)
    if turns and st.button("Start a new conversation", icon=":material/restart_alt:", key="clear_chat"):
        st.session_state["turns"] = []
        st.rerun()


def exports(ans: Answer) -> dict:
    """The answer's Markdown and Word exports; one that fails is left out with its reason, so the
    answer itself is never lost."""
    out: dict = {"markdown": None, "docx": None, "export_errors": []}
    for key, make in (("markdown", answer_to_markdown), ("docx", answer_to_docx)):
        try:
            out[key] = make(ans)
        except Exception as exc:  # noqa: BLE001 - an export must not cost the user the answer
            out["export_errors"].append(f"The {key} export failed ({type(exc).__name__}: {exc})")
    return out


def show_turn(index: Index, settings: Settings, turn: dict, i: int) -> None:
    with st.chat_message("user"):
        st.markdown(md_escape(turn["answer"].question))
    with st.chat_message("assistant"):
        show_answer(index, settings, turn, i)


def show_answer(index: Index, settings: Settings, turn: dict, i: int) -> None:
    """An answer: its quotes with [n] markers grouped by report, then its sources, each
    expandable to the passage, the page image and the PDF."""
    ans: Answer = turn["answer"]
    if ans.standalone_query != ans.question:
        st.caption(f"Follow-up, searched as: {md_escape(ans.standalone_query)}")

    def terms_of(text: str) -> tuple[str, ...]:
        return matched_terms(ans.standalone_query, text)

    if ans.abstained:
        st.info(md_escape(ans.message), icon=":material/search_off:")
        if ans.why:
            st.caption(md_escape(f"Why: {ans.why}"))
        if ans.related:
            st.markdown("**Possibly related**")
        for j, h in enumerate(ans.related):
            with st.expander(md_escape(f"{h.citation} — {h.title}"), icon=":material/article:"):
                show_source(index, settings, h.file, h.page_start, h.page_end, h.text, terms_of(h.text), f"{i}_r{j}")
    else:
        if ans.synthesis:
            st.markdown("**Summary** (generated, checked against the sources)")
            st.markdown(md_paragraphs(ans.synthesis))
        if ans.partial_note:
            st.warning(md_escape(ans.partial_note), icon=":material/rule:")
            st.caption(md_escape(f"Why: {ans.why}"))
        st.markdown(ans.message)
        for sec in ans.sections:
            lines = [f"**{md_escape(sec.short_title)}**", ""]
            for q in sec.quotes:
                lines += [f"> \u201c{md_escape(q.text)}\u201d \\[{q.source}\\]", ">"]
            st.markdown("\n".join(lines[:-1]))
        st.markdown("**Sources**")
        for s in ans.sources:
            label = f"[{s.n}] {s.citation} — {type_label(s.type)}{f', {s.year}' if s.year else ''}"
            with st.expander(md_escape(label), icon=":material/article:"):
                st.caption(md_escape(s.title))
                show_source(
                    index, settings, s.file, s.page_start, s.page_end, s.passage, terms_of(s.passage), f"{i}_s{s.n}"
                )
    export_and_feedback(index, settings, turn, i)


def export_and_feedback(index: Index, settings: Settings, turn: dict, i: int) -> None:
    ans: Answer = turn["answer"]
    stem = f"answer-{i + 1}"
    row = st.container(horizontal=True, vertical_alignment="center")
    row.caption("Export this answer:")
    if turn.get("markdown") is not None:
        row.download_button(
            "Markdown",
            data=turn["markdown"],
            file_name=f"{stem}.md",
            mime="text/markdown",
            key=f"md_{i}",
            on_click="ignore",
            icon=":material/description:",
        )
    if turn.get("docx") is not None:
        row.download_button(
            "Word",
            data=turn["docx"],
            file_name=f"{stem}.docx",
            key=f"docx_{i}",
            on_click="ignore",
            mime="application/vnd.openxmlformats-officedocument.wordprocessingml.document",
            icon=":material/article:",
        )
    if turn.get("markdown") is not None:
        with row.popover("Preview", icon=":material/visibility:"):
            st.code(turn["markdown"], language="markdown", wrap_lines=True)
    for problem in turn.get("export_errors", ()):
        st.caption(md_escape(problem))
    if turn.get("feedback"):
        st.caption(turn["feedback"])
        return
    with st.expander("Was this useful? Tell us", icon=":material/thumbs_up_down:"):
        with st.form(f"feedback_{i}", border=False):
            files = sorted(index.by_file, key=lambda f: index.by_file[f].meta.short_title)
            doc = st.selectbox(
                "The right source was (optional)",
                [""] + files,
                key=f"fb_doc_{i}",
                format_func=lambda f: index.by_file[f].meta.short_title if f else "—",
            )
            pages = st.text_input("on page(s)", placeholder="e.g. 12 or 12-13", key=f"fb_pages_{i}")
            notes = st.text_input("Comment (optional)", key=f"fb_notes_{i}")
            up_col, down_col = st.columns(2)
            up = up_col.form_submit_button("Helpful", icon=":material/thumb_up:", width="stretch")
            down = down_col.form_submit_button("Not helpful", icon=":material/thumb_down:", width="stretch")
        if up or down:
            try:
                record = feedback_record(
                    ans,
                    "up" if up else "down",
                    right_doc=doc or None,
                    right_pages=parse_pages(pages),
                    notes=notes,
                    doc_pages={f: d.n_pages for f, d in index.by_file.items()},
                )
                path = save_feedback(settings.feedback_path, record)
            except SscpRagError as exc:
                st.error(md_escape(str(exc)))
                return
            except OSError as exc:
                st.error(md_escape(f"feedback could not be saved in {settings.feedback_path} ({exc})"))
                return
            turn["feedback"] = f"Thank you: your feedback was saved to {md_escape(str(path))}."
            st.rerun()


# --------------------------------------------------------------------------------------------
# Search


def search_tab(index: Index, settings: Settings) -> None:
    docs = list(index.docs.values())
    query = st.text_input("Search the reviews", key="search_q", placeholder="e.g. co-sleeping on a sofa")
    types = [t for t in REVIEW_TYPES if any(d.meta.type == t for d in docs)]
    years = sorted({d.meta.year for d in docs if d.meta.year})
    themes = [t for t in THEME_IDS if any(t in d.themes for d in docs)]
    files = sorted(index.by_file, key=lambda f: index.by_file[f].meta.short_title)
    c1, c2, c3, c4 = st.columns([2, 2, 2, 3])
    sel_types = c1.multiselect("Review type", types, format_func=type_label, key="f_types")
    if len(years) > 1:
        year_range = c2.slider("Year", years[0], years[-1], (years[0], years[-1]), key="f_years")
    else:
        year_range = (years[0], years[0]) if years else (None, None)
    sel_themes = c3.multiselect("Theme", themes, format_func=theme_label, key="f_themes")
    sel_reports = c4.multiselect(
        "Report", files, format_func=lambda f: index.by_file[f].meta.short_title, key="f_reports"
    )
    if not (query or "").strip():
        st.caption("Type some words to search the passages of every indexed report; filters narrow the results.")
        return
    filters = Filters(
        types=tuple(sel_types),
        year_from=year_range[0] if years and year_range[0] > years[0] else None,
        year_to=year_range[1] if years and year_range[1] < years[-1] else None,
        themes=tuple(sel_themes),
        reports=tuple(sel_reports),
    )
    try:
        hits = search(index, query, k=SEARCH_POOL, filters=filters, settings=settings)
    except SscpRagError as exc:
        st.error(md_escape(str(exc)))
        return
    if not hits:
        st.info("No passages match this search with these filters.", icon=":material/search_off:")
        return
    signature = repr((query, filters))
    if st.session_state.get("search_sig") != signature:
        st.session_state["search_sig"] = signature
        st.session_state["search_page"] = 1
    n_pages = (len(hits) + PAGE_SIZE - 1) // PAGE_SIZE
    counts = Counter(h.short_title for h in hits)
    main, side = st.columns([3, 1], gap="large")
    with side:
        st.markdown(f"**{len(hits)} passages in {len(counts)} reports**")
        st.dataframe(
            [{"Report": r, "Hits": n} for r, n in counts.most_common()],
            hide_index=True,
            height=table_height(len(counts)),
            key="hit_counts",
        )
    with main:
        pager, _ = st.columns([1, 3])
        page = int(pager.number_input(f"Page (of {n_pages})", 1, n_pages, key="search_page"))
        for h in hits[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]:
            with st.container(border=True):
                st.markdown(
                    f"**{h.rank}. {md_escape(h.citation)}** · {md_escape(type_label(h.type))}"
                    f"{f' · {h.year}' if h.year else ''}"
                )
                if h.heading or h.themes:
                    st.caption(
                        md_escape(" · ".join([h.heading] * bool(h.heading) + [theme_label(t) for t in h.themes]))
                    )
                st.markdown(highlight_md(snippet(h.text, h.matched_terms), h.matched_terms))
                # rendered only when opened: a page of results does not render ten page images
                more = st.expander(
                    "Whole passage, page and PDF",
                    icon=":material/picture_as_pdf:",
                    key=f"more_{h.chunk_id}",
                    on_change="rerun",
                )
                if more.open:
                    with more:
                        show_source(
                            index, settings, h.file, h.page_start, h.page_end, h.text, h.matched_terms, f"h{h.rank}"
                        )


# --------------------------------------------------------------------------------------------
# Library


def library_tab(index: Index, settings: Settings) -> None:
    result = st.session_state.pop("ingest_result", None)
    if result:
        st.success(
            f"Index rebuilt: {result['documents']} documents, {result['pages']} pages, {result['chunks']} chunks "
            f"({result['ingested']} read, {result['reused']} unchanged) in {result['seconds']:.0f} s."
            if not result["up_to_date"]
            else "The index was already up to date.",
            icon=":material/check_circle:",
        )
    m = index.manifest
    counts = m.get("counts", {})
    st.subheader("Index status")
    cols = st.columns(4)
    cols[0].metric("Reports", counts.get("documents", len(index.docs)))
    cols[1].metric("Pages", counts.get("pages", 0))
    cols[2].metric("Passages", counts.get("chunks", len(index.chunks)))
    cols[3].metric("Skipped files", len(index.skipped))
    chunking = m.get("chunking", {})
    st.markdown(
        f"Model **{md_escape(str(m.get('model', '?')))}** ({m.get('dims', '?')} dimensions) · chunks of "
        f"{chunking.get('chunk_tokens', '?')} tokens, {chunking.get('chunk_overlap', '?')} overlap · built "
        f"{md_escape(built_label(m.get('built_at')))} from `{m.get('corpus_dir', '?')}` into `{settings.index_dir}` · "
        f"questions embedded with {index.embedder.live_runtime or settings.query_backend}"
    )
    try:
        changed = corpus_changes(settings, m)
    except SscpRagError:
        changed = ""
    if changed:
        st.warning(
            f"The corpus has changed since this index was built ({changed}). Re-ingest to include it.",
            icon=":material/sync_problem:",
        )
    if index.skipped:
        st.markdown("**Skipped files**")
        st.dataframe(
            [{"File": s["file"], "Reason": s["reason"]} for s in index.skipped], hide_index=True, key="skipped"
        )
    else:
        st.caption("No files were skipped.")
    if st.button("Re-ingest the corpus", icon=":material/sync:", key="reingest"):
        run_ingest(settings)

    st.subheader("Reports")
    rows = reports(index)
    st.dataframe(
        [
            {
                "Report": r["short_title"],
                "Type": type_label(r["type"]),
                "Year": r["year"],
                "Pages": r["pages"],
                "Themes": ", ".join(theme_label(t) for t in r["themes"]),
                "Title": r["title"],
                "File": r["file"],
            }
            for r in rows
        ],
        hide_index=True,
        height=table_height(len(rows)),
        key="reports_table",
    )

    st.subheader("Add a report")
    upload_form(settings)


def upload_form(settings: Settings) -> None:
    saved = st.session_state.pop("upload_result", None)
    if saved:
        st.success(saved, icon=":material/check_circle:")
    st.caption(
        f"The PDF is saved in `{settings.corpus_dir}` and described in its manifest.json; "
        "re-ingest to make it searchable."
    )
    with st.form("upload", clear_on_submit=False):
        pdf = st.file_uploader("PDF", type=["pdf"], key="up_file")
        c1, c2 = st.columns(2)
        title = c1.text_input("Title", placeholder="Serious Case Review: Child X", key="up_title")
        short = c2.text_input("Short title (used in citations)", placeholder="SCR Child X", key="up_short")
        c3, c4, c5 = st.columns(3)
        rtype = c3.selectbox("Review type", REVIEW_TYPES, format_func=type_label, key="up_type")
        year = c4.number_input("Year", min_value=1990, max_value=2100, value=None, step=1, key="up_year")
        subject = c5.text_input("Subject (pseudonym)", placeholder="Child X", key="up_subject")
        themes = st.multiselect("Themes", THEME_IDS, format_func=theme_label, key="up_themes")
        url = st.text_input("Source web address (optional)", key="up_url")
        replace = st.checkbox("Replace a report with the same file name", key="up_replace")
        submitted = st.form_submit_button("Add to the corpus", icon=":material/upload_file:")
    if submitted:
        if pdf is None:
            st.error("Choose a PDF to upload.")
            return
        entry = {
            "title": title,
            "short_title": short,
            "type": rtype,
            "year": int(year) if year else None,
            "subject": subject,
            "themes": themes,
            "source_url": url,
        }
        try:
            with st.spinner("Checking the PDF…"):
                meta = add_pdf(
                    Path(settings.corpus_dir), pdf.name, pdf.getvalue(), entry, replace=replace, settings=settings
                )
        except SscpRagError as exc:
            st.error(md_escape(str(exc)))
            return
        st.session_state["upload_result"] = (
            f"Saved {md_escape(meta.file)} ({md_escape(meta.short_title)}) in the corpus. "
            "Re-ingest to make it searchable."
        )
        st.rerun()  # so the index status shows the corpus change


# --------------------------------------------------------------------------------------------
# Across reviews: theme map, themes over the years, recommendations register, briefing builder


def across_tab(index: Index, settings: Settings) -> None:
    theme_map_section(index)
    years_section(index)
    register_section(index)
    briefing_section(index, settings)


def theme_map_section(index: Index) -> None:
    """A heatmap of themes by reports (passages tagged); a clicked cell, or the two pickers below
    it, opens that cell's passages with their page citations."""
    import altair as alt
    import pandas as pd

    from sscp_rag.thememap import cell_passages, theme_map

    st.subheader("Theme map")
    m = theme_map(index)
    if not m.cells:
        st.info("No passage of any indexed report is tagged with a theme.", icon=":material/grid_off:")
        return
    st.caption(
        "Passages tagged with each theme, report by report (reports in order of review date). "
        "Click a cell, or choose a theme and a report below, to read its passages."
    )
    rows = [
        {
            "Theme": theme_label(t),
            "theme": t,
            "Report": r.short_title,
            "file": r.file,
            "Year": r.year or "n.d.",
            "Passages": m.count(t, r.file),
        }
        for t in m.themes
        for r in m.reports
    ]
    pick = alt.selection_point(name="cell", fields=["theme", "file"], on="click")
    chart = (
        alt.Chart(pd.DataFrame(rows))
        .mark_rect(stroke="white", strokeWidth=1)
        .encode(
            x=alt.X(
                "Report:N",
                sort=[r.short_title for r in m.reports],
                title=None,
                axis=alt.Axis(labelAngle=-40, labelOverlap=False, labelLimit=180),
            ),
            y=alt.Y("Theme:N", sort=[theme_label(t) for t in m.themes], title=None, axis=alt.Axis(labelLimit=260)),
            # an empty cell is grey, so that "no passage" does not read as "a few"
            color=alt.condition(
                "datum.Passages > 0",
                alt.Color("Passages:Q", scale=alt.Scale(scheme="blues"), title="Passages"),
                alt.value("#f2f2f2"),
            ),
            opacity=alt.condition(pick, alt.value(1.0), alt.value(0.55)),
            tooltip=["Theme", "Report", "Year", "Passages"],
        )
        .add_params(pick)
        .properties(height=28 * len(m.themes) + 60)
    )
    event = st.altair_chart(chart, on_select="rerun", key="theme_heatmap", width="stretch")
    chosen = (getattr(event, "selection", None) or {}).get("cell") or []
    if chosen and chosen[0].get("theme") in m.themes and chosen[0].get("file") in index.by_file:
        pair = (chosen[0]["theme"], chosen[0]["file"])
        if st.session_state.get("heatmap_pick") != pair:  # a new click moves the pickers to it
            st.session_state["heatmap_pick"] = pair
            st.session_state["across_theme"], st.session_state["across_report"] = pair
    files = [r.file for r in m.reports]
    if "across_theme" not in st.session_state:  # open on the map's largest cell
        top = max(m.cells, key=lambda c: c.count)
        st.session_state["across_theme"], st.session_state["across_report"] = top.theme, top.file
    c1, c2 = st.columns(2)
    theme = c1.selectbox("Theme", m.themes, format_func=theme_label, key="across_theme")
    report = c2.selectbox("Report", files, format_func=lambda f: index.by_file[f].meta.short_title, key="across_report")
    passages = cell_passages(index, theme, report)
    if not passages:
        st.caption(
            md_escape(f"{index.by_file[report].meta.short_title} has no passage tagged with {theme_label(theme)}.")
        )
        return
    st.markdown(
        f"**{len(passages)} passage{'s' if len(passages) != 1 else ''}** of "
        f"{md_escape(index.by_file[report].meta.short_title)} on {md_escape(theme_label(theme))}, strongest first"
    )
    for i, p in enumerate(passages[:5]):
        with st.expander(md_escape(f"{p.citation}" + (f" — {p.heading}" if p.heading else "")), expanded=i == 0):
            st.markdown(md_paragraphs(p.text))


def years_section(index: Index) -> None:
    import altair as alt
    import pandas as pd

    from sscp_rag.thememap import themes_by_year, trend

    st.subheader("Themes over the years")
    rows = themes_by_year(index)
    if not rows or len({r.year for r in rows}) < 2:
        st.caption("The indexed reports span fewer than two years of review dates.")
        return
    totals: dict[str, int] = {}
    for r in rows:
        totals[r.theme] = totals.get(r.theme, 0) + r.passages
    themes = sorted(totals, key=lambda t: -totals[t])
    shown = st.multiselect("Themes", themes, default=themes[:5], format_func=theme_label, key="years_themes")
    data = pd.DataFrame(
        [
            {
                "Year": r.year,
                "Theme": theme_label(r.theme),
                "Share of reports": r.share,
                "Reports": r.reports,
            }
            for r in rows
            if r.theme in shown
        ]
    )
    if not data.empty:
        chart = (
            alt.Chart(data)
            .mark_line(point=True)
            .encode(
                x=alt.X("Year:O"),
                y=alt.Y("Share of reports:Q", axis=alt.Axis(format="%")),
                color=alt.Color("Theme:N"),
                tooltip=["Year", "Theme", "Reports", alt.Tooltip("Share of reports:Q", format=".0%")],
            )
            .properties(height=280)
        )
        st.altair_chart(chart, key="years_chart", width="stretch")
    st.caption(
        "Trend: the slope of each theme's share of reports a year (rising or falling by more than 2 points a year). "
        + " · ".join(f"{md_escape(theme_label(t))}: {trend(rows, t)[0]}" for t in shown)
    )


def register_section(index: Index) -> None:
    from sscp_rag.recommendations import RecommendationFilters, filter_register, register, register_csv, register_docx

    st.subheader("Recommendations register")
    every = register(index)
    if not every:
        st.info("No recommendations were found in the indexed reports.", icon=":material/checklist:")
        return
    years = sorted({r.year for r in every if r.year})
    c1, c2, c3 = st.columns([2, 2, 3])
    themes = [t for t in THEME_IDS if any(t in r.themes for r in every)]
    theme = c1.selectbox("Theme", [""] + themes, format_func=lambda t: theme_label(t) if t else "All", key="reg_theme")
    agency = c2.text_input("Agency", placeholder="e.g. CCG, police", key="reg_agency")
    if len(years) > 1:
        y0, y1 = c3.slider("Year", years[0], years[-1], (years[0], years[-1]), key="reg_years")
    else:
        y0, y1 = (years[0], years[0]) if years else (None, None)
    try:
        recs = filter_register(every, RecommendationFilters(theme or None, agency or None, y0, y1), index)
    except SscpRagError as exc:
        st.error(md_escape(str(exc)))
        return
    st.markdown(f"**{len(recs)} of {len(every)} recommendations**")
    if not recs:
        st.info("No recommendations match these filters.", icon=":material/search_off:")
        return
    st.dataframe(
        [
            {
                "Report": r.short_title,
                "Year": r.year,
                "No.": r.n,
                "Pages": page_label(r.page_start, r.page_end),
                "Agency": r.agency or "",
                "Themes": ", ".join(theme_label(t) for t in r.themes),
                "Recommendation": r.text,
            }
            for r in recs
        ],
        hide_index=True,
        height=table_height(len(recs), 12),
        key="register_table",
    )
    row = st.container(horizontal=True)
    row.download_button(
        "CSV",
        data=register_csv(recs),
        file_name="recommendations.csv",
        mime="text/csv",
        key="reg_csv",
        on_click="ignore",
        icon=":material/table:",
    )
    row.download_button(
        "Word",
        data=lambda: register_docx(recs),
        file_name="recommendations.docx",
        mime="application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        key="reg_docx",
        on_click="ignore",
        icon=":material/article:",
    )


def briefing_section(index: Index, settings: Settings) -> None:
    from sscp_rag.briefing import HEADINGS, briefing_to_docx, briefing_to_markdown, build_briefing

    st.subheader("Briefing builder")
    st.caption(
        "A one- to two-page 7 minute briefing on a theme or a question: every sentence is a quote from a "
        "report, cited by report and page."
    )
    with st.form("briefing_form", border=False):
        topic = st.text_input("Theme or question", placeholder="e.g. professional curiosity", key="brief_topic")
        go = st.form_submit_button("Build the briefing", icon=":material/summarize:")
    if go:
        try:
            with st.spinner("Building the briefing…"):
                b = build_briefing(index, topic, settings)
        except SscpRagError as exc:
            st.error(md_escape(str(exc)))
            return
        st.session_state["briefing"] = {"briefing": b, "markdown": briefing_to_markdown(b), "docx": None}
    saved = st.session_state.get("briefing")
    if not saved:
        return
    b = saved["briefing"]
    with st.container(border=True):
        st.markdown(f"#### {md_escape(b.title)}")
        for sec in b.sections:
            st.markdown(f"**{sec.heading}**")
            if sec.quotes:
                st.markdown(
                    "\n>\n".join(f"> \u201c{md_escape(q.text)}\u201d ({md_escape(q.citation)})" for q in sec.quotes)
                )
        st.markdown(f"**{HEADINGS[3]}**")
        st.markdown("\n".join(f"- {md_escape(r.line)}" for r in b.reading))
    row = st.container(horizontal=True)
    row.download_button(
        "Word",
        data=lambda: briefing_to_docx(b),
        file_name="briefing.docx",
        mime="application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        key="brief_docx",
        on_click="ignore",
        icon=":material/article:",
    )
    row.download_button(
        "Markdown",
        data=saved["markdown"],
        file_name="briefing.md",
        mime="text/markdown",
        key="brief_md",
        on_click="ignore",
        icon=":material/description:",
    )


# --------------------------------------------------------------------------------------------


def main() -> None:
    try:
        settings = Settings.from_env()
    except SscpRagError as exc:
        st.error(f"The settings are invalid: {md_escape(str(exc))}")
        return
    st.title("Safeguarding review learning")
    st.caption(
        "Answers quote the reviews in their own words, cited by report and page. "
        "Where the reviews say nothing, the app says so."
    )
    index = open_index(settings)
    if index is None:
        return
    ask, find, across, library = st.tabs(["Ask", "Search", "Across reviews", "Library"])
    try:
        with ask:
            ask_tab(index, settings)
        with find:
            search_tab(index, settings)
        with across:
            across_tab(index, settings)
        with library:
            library_tab(index, settings)
    except SscpRagError as exc:  # never a traceback for a domain error
        st.error(md_escape(str(exc)))


main()

"""Pages → chunks that know their document, page span and section heading.

The pages of a document are joined into one text (a paragraph that runs over a page break is
joined with a space, so a chunk or sentence across the break cites both pages). The text is split
with langchain-text-splitters' recursive splitter, sized in the embedding model's own tokens, and
each chunk's character offsets map it back to its pages and the heading above it.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sscp_rag.records import Chunk, DocumentMeta, Page, content_id

if TYPE_CHECKING:  # imported where used: a process that only answers questions never splits text
    from langchain_text_splitters import RecursiveCharacterTextSplitter

_SEPARATORS = ["\n\n", "\n", ". ", "; ", ", ", " ", ""]


@dataclass(frozen=True)
class DocText:
    """A document's cleaned text with page boundaries and heading positions."""

    text: str
    page_starts: tuple[int, ...]  # char offset where each page (1-based: index+1) begins
    headings: tuple[tuple[int, str], ...]  # (char offset, heading), sorted

    def page_at(self, offset: int) -> int:
        """The 1-based page that holds the character at ``offset``."""
        return max(1, bisect.bisect_right(self.page_starts, offset))

    def span(self, start: int, end: int) -> tuple[int, int]:
        """Pages covering text[start:end] (end exclusive)."""
        return self.page_at(start), self.page_at(max(start, end - 1))

    def heading_at(self, offset: int) -> str:
        i = bisect.bisect_right([h[0] for h in self.headings], offset) - 1
        return self.headings[i][1] if i >= 0 else ""

    def page_text(self, page: int) -> str:
        start = self.page_starts[page - 1]
        end = self.page_starts[page] if page < len(self.page_starts) else len(self.text)
        return self.text[start:end]


def join_pages(pages: Sequence[Page]) -> DocText:
    parts: list[str] = []
    starts: list[int] = []
    headings: list[tuple[int, str]] = []
    pos = 0
    prev_page: Page | None = None
    for page in pages:
        if prev_page is not None and page.text:
            sep = " " if _runs_on(prev_page) else "\n\n"
            parts.append(sep)
            pos += len(sep)
        starts.append(pos)
        search_from = 0
        for h in page.headings:
            at = page.text.find(h, search_from)
            if at >= 0:
                headings.append((pos + at, h))
                search_from = at + len(h)
        parts.append(page.text)
        pos += len(page.text)
        if page.text:
            prev_page = page
    return DocText("".join(parts), tuple(starts), tuple(headings))


def _runs_on(page: Page) -> bool:
    """Whether the page's last paragraph continues on the next page (no end punctuation)."""
    last = page.text.rstrip().rsplit("\n\n", 1)[-1]
    return bool(last) and not last.endswith((".", "?", "!", ":")) and last not in page.headings


def make_splitter(tokenizer: Any, chunk_tokens: int, chunk_overlap: int) -> RecursiveCharacterTextSplitter:
    """A recursive splitter that measures chunks in the embedding model's tokens."""
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    return RecursiveCharacterTextSplitter.from_huggingface_tokenizer(
        tokenizer,
        chunk_size=chunk_tokens,
        chunk_overlap=chunk_overlap,
        separators=_SEPARATORS,
        keep_separator="end",
        add_start_index=True,
        strip_whitespace=True,
    )


def section_blocks(doc: DocText, n_tokens: Any, max_tokens: int) -> list[tuple[int, int]]:
    """(start, end) character ranges of the document that never cross a section heading, except
    to pack short neighbouring sections together up to ``max_tokens`` (measured by
    ``n_tokens(text)``): a heading and its one-line section are not worth a chunk of their own."""
    cuts = sorted({0, *(at for at, _ in doc.headings if 0 < at < len(doc.text)), len(doc.text)})
    blocks: list[tuple[int, int]] = []
    start, size = 0, 0
    for a, b in zip(cuts, cuts[1:]):
        n = n_tokens(doc.text[a:b])
        if a > start and size + n > max_tokens:
            blocks.append((start, a))
            start, size = a, 0
        size += n
    if start < len(doc.text):
        blocks.append((start, len(doc.text)))
    return blocks


def chunk_document(
    meta: DocumentMeta, doc: DocText, splitter: RecursiveCharacterTextSplitter, by_section: bool = False
) -> list[Chunk]:
    """Split one document's text into chunks with page spans and headings. With ``by_section``,
    chunks stay within a section (see :func:`section_blocks`); otherwise the splitter runs over
    the whole text."""
    if by_section:
        # langchain keeps the length function it was built with; counting tokens the same way
        # keeps the packing and the splitting in one unit.
        blocks = section_blocks(doc, splitter._length_function, splitter._chunk_size)
        texts = [t for a, b in blocks for t in splitter.split_text(doc.text[a:b])]
    else:
        texts = splitter.split_text(doc.text)
    chunks: list[Chunk] = []
    prev_start = -1
    for seq, text in enumerate(texts):
        # Chunks come in document order, each starting after the previous one. (langchain's own
        # start_index guesses the search point from the overlap, which is in tokens here, not
        # characters, and may land past the chunk.)
        start = doc.text.find(text, prev_start + 1)
        if start < 0:
            start = doc.text.find(text)
        if start < 0:
            raise ValueError(f"chunk {seq} of {meta.file} is not a slice of its document text")
        prev_start = start
        end = start + len(text)
        p0, p1 = doc.span(start, end)
        chunks.append(
            Chunk(
                id=content_id("chunk", meta.file, start, end, text),
                doc_id=meta.doc_id,
                file=meta.file,
                seq=seq,
                page_start=p0,
                page_end=p1,
                char_start=start,
                char_end=end,
                heading=doc.heading_at(start + 1) or doc.heading_at(end - 1),
                text=text,
            )
        )
    return chunks

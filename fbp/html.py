"""An HTML view of predictions: one page per essay (predicted and true spans side by side) and an index.

Each class has its own colour, with a legend on every page. Pages are plain static HTML with inline
CSS, so the directory can be opened from disk, zipped, or attached to a Kaggle notebook output.
"""

from __future__ import annotations

import hashlib
import html
import re
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Tuple

from .atomic import write_dir_atomically
from .errors import FbpError
from .labels import CLASSES

# Colour-blind-friendly palette (Okabe-Ito plus one), one colour per class in CLASSES order.
CLASS_COLOURS = dict(zip(CLASSES, ("#E69F00", "#56B4E9", "#009E73", "#F0E442", "#CC79A7", "#0072B2", "#D55E00")))
WORD = re.compile(r"\S+")  # the same words as str.split()
# An empty file in every report folder: the mark that fbp wrote it, so a later --html may replace it (and nothing else).
REPORT_MARK = ".fbp-html-report"
INDEX = "index.html"

STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
.legend span { display: inline-block; padding: 0.1em 0.5em; margin: 0 0.3em 0.3em 0; border-radius: 3px; }
.columns { display: flex; gap: 2em; }
.column { flex: 1; min-width: 0; }
.essay { white-space: pre-wrap; line-height: 1.7; font-size: 15px; }
mark { border-radius: 3px; padding: 0.05em 0; color: #111; }
mark .tag { font-size: 10px; font-weight: bold; text-transform: uppercase; margin-right: 0.3em; opacity: 0.75; }
table { border-collapse: collapse; } td, th { padding: 0.2em 0.8em; border-bottom: 1px solid #ddd; text-align: right; }
td:first-child, th:first-child { text-align: left; }
"""


def _legend() -> str:
    items = "".join(f'<span style="background:{colour}66">{html.escape(name)}</span>' for name, colour in CLASS_COLOURS.items())
    return f'<div class="legend">{items}</div>'


def _spans_by_essay(spans: Optional["pd.DataFrame"]) -> Dict[str, List[Tuple[str, List[int]]]]:  # noqa: F821
    grouped: Dict[str, List[Tuple[str, List[int]]]] = {}
    if spans is None:
        return grouped
    for essay_id, class_name, words in spans[["id", "class", "predictionstring"]].itertuples(index=False):
        indices = [int(word) for word in str(words).split()]
        grouped.setdefault(str(essay_id), []).append((class_name, indices))
    return grouped


def render_essay_text(text: str, spans: List[Tuple[str, List[int]]]) -> str:
    """The essay as HTML, its original whitespace kept, each span a coloured ``<mark>`` tagged with its class."""
    words = list(WORD.finditer(text))
    span_of_word = [-1] * len(words)
    for number, (_, indices) in enumerate(spans):
        for index in indices:
            if 0 <= index < len(words):
                span_of_word[index] = number
    parts, position, open_span = [], 0, -1
    for index, match in enumerate(words):
        gap = html.escape(text[position : match.start()])
        current = span_of_word[index]
        if current != open_span:
            if open_span >= 0:
                parts.append("</mark>")
            parts.append(gap)
            if current >= 0:
                class_name = spans[current][0]
                colour = CLASS_COLOURS.get(class_name, "#999999")
                parts.append(f'<mark style="background:{colour}55" title="{html.escape(class_name)}"><span class="tag">{html.escape(class_name)}</span>')
            open_span = current
        else:
            parts.append(gap)
        parts.append(html.escape(match.group()))
        position = match.end()
    if open_span >= 0:
        parts.append("</mark>")
    parts.append(html.escape(text[position:]))
    return f'<div class="essay">{"".join(parts)}</div>'


def render_essay_page(essay_id: str, text: str, predicted: List[Tuple[str, List[int]]], truth: Optional[List[Tuple[str, List[int]]]]) -> str:
    """One essay's page: predicted spans, and the true spans beside them when the truth is known."""
    columns = [("Predicted", predicted)] + ([("Truth", truth)] if truth is not None else [])
    body = "".join(
        f'<div class="column"><h2>{title} ({len(spans)} spans)</h2>{render_essay_text(text, spans)}</div>' for title, spans in columns
    )
    return _page(f"essay {essay_id}", f'<p><a href="{INDEX}">&larr; all essays</a></p><h1>{html.escape(essay_id)}</h1>{_legend()}<div class="columns">{body}</div>')


def _page(title: str, body: str) -> str:
    return f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{html.escape(title)}</title><style>{STYLE}</style></head><body>{body}</body></html>\n'


def is_report(directory: Path) -> bool:
    """Whether ``directory`` is an HTML report fbp wrote (it holds :data:`REPORT_MARK`)."""
    return (Path(directory) / REPORT_MARK).is_file()


def check_report_dir(directory: Path) -> None:
    """Fail now, before any work, if ``directory`` cannot become a report: a file, or a folder fbp did not write."""
    from .atomic import check_output_location

    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise FbpError(f"{directory} is a file; the HTML report needs a folder")
    if directory.is_dir() and any(directory.iterdir()) and not is_report(directory):
        raise FbpError(
            f"{directory} is a folder that fbp did not write (no {REPORT_MARK} in it); refusing to replace it "
            "and everything in it. Give a new or empty folder"
        )
    check_output_location(directory / INDEX, "HTML report")


class PageNames:
    """A safe, unique file name for each essay's page: letters, digits, ``-`` and ``_`` only (never a URL scheme,
    ``#`` or ``?``), never ``index.html``, unique even on case-insensitive disks. An id that is already safe keeps
    its name (``3841A54B2F00.html``); any other gets a readable part and a hash of the id."""

    def __init__(self) -> None:
        self.taken = {INDEX}
        self.names: Dict[str, str] = {}

    def __call__(self, essay_id: str) -> str:
        if essay_id in self.names:
            return self.names[essay_id]
        readable = re.sub(r"[^A-Za-z0-9_-]+", "-", essay_id).strip("-")[:80] or "essay"
        name = f"{readable}.html"
        digest = hashlib.sha1(essay_id.encode("utf-8")).hexdigest()
        if readable != essay_id or name.lower() in self.taken:
            name = f"{readable}-{digest[:10]}.html"
        number = 2
        while name.lower() in self.taken:
            name = f"{readable}-{digest[:10]}-{number}.html"
            number += 1
        self.taken.add(name.lower())
        self.names[essay_id] = name
        return name


def write_html_report(
    directory: Path,
    essays: Iterable[Tuple[str, str]],
    predictions: "pd.DataFrame",  # noqa: F821
    truth: Optional["pd.DataFrame"] = None,  # noqa: F821
) -> Path:
    """Write ``index.html`` and one page per essay (named by :class:`PageNames`) into ``directory``, atomically.

    ``essays`` yields ``(essay_id, text)``; ``predictions`` and ``truth`` are span frames
    (``id, class, predictionstring``). With the truth, the index shows each essay's F1 (worst first).
    """
    from .metric import score

    directory = Path(directory)
    check_report_dir(directory)
    page_name = PageNames()
    predicted_spans, true_spans = _spans_by_essay(predictions), _spans_by_essay(truth)
    predicted_frames = {str(key): frame for key, frame in predictions.groupby("id")}
    true_frames = {str(key): frame for key, frame in truth.groupby("id")} if truth is not None else {}
    def write(staging: Path) -> None:
        rows = []
        for essay_id, text in essays:
            predicted = predicted_spans.get(essay_id, [])
            true = true_spans.get(essay_id, []) if truth is not None else None
            (staging / page_name(essay_id)).write_text(render_essay_page(essay_id, text, predicted, true), encoding="utf-8")
            essay_f1 = None
            if true:  # an essay with no true span has no F1; one with no predicted span scores 0
                essay_f1 = score(predicted_frames[essay_id], true_frames[essay_id]).f1 if essay_id in predicted_frames else 0.0
            rows.append((essay_id, page_name(essay_id), len(text.split()), len(predicted), None if true is None else len(true), essay_f1))
        (staging / INDEX).write_text(_index_page(rows, truth is not None), encoding="utf-8")
        (staging / REPORT_MARK).write_text("")

    write_dir_atomically(directory, write, replaceable=is_report)
    return directory


def _index_page(rows: List[Tuple[str, str, int, int, Optional[int], Optional[float]]], with_truth: bool) -> str:
    if with_truth:  # worst essays first: that is where to look
        rows = sorted(rows, key=lambda row: (row[5] is None, row[5] if row[5] is not None else 0.0))
    header = "<tr><th>essay</th><th>words</th><th>predicted spans</th>" + ("<th>true spans</th><th>F1</th>" if with_truth else "") + "</tr>"
    lines = []
    for essay_id, page, n_words, n_predicted, n_true, essay_f1 in rows:
        cells = f'<td><a href="{html.escape(page)}">{html.escape(essay_id)}</a></td><td>{n_words}</td><td>{n_predicted}</td>'
        if with_truth:
            cells += f"<td>{n_true}</td><td>{'' if essay_f1 is None else f'{essay_f1:.3f}'}</td>"
        lines.append(f"<tr>{cells}</tr>")
    note = ("<p>F1: the competition F1 of each essay's predicted spans (decoded as for the submission) against the truth "
            "given with --truth. Sorted by F1, worst first.</p>") if with_truth else ""
    return _page("fbp predictions", f"<h1>Predictions: {len(rows)} essays</h1>{_legend()}{note}<table>{header}{''.join(lines)}</table>")

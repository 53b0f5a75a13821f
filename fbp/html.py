"""An HTML view of predictions: one page per essay (predicted and true spans side by side) and an index.

Each class has its own colour, with a legend on every page. Pages are plain static HTML with inline
CSS, so the directory can be opened from disk, zipped, or attached to a Kaggle notebook output.
"""

from __future__ import annotations

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
    return _page(f"essay {essay_id}", f'<p><a href="index.html">&larr; all essays</a></p><h1>{html.escape(essay_id)}</h1>{_legend()}<div class="columns">{body}</div>')


def _page(title: str, body: str) -> str:
    return f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{html.escape(title)}</title><style>{STYLE}</style></head><body>{body}</body></html>\n'


def write_html_report(
    directory: Path,
    essays: Iterable[Tuple[str, str]],
    predictions: "pd.DataFrame",  # noqa: F821
    truth: Optional["pd.DataFrame"] = None,  # noqa: F821
) -> Path:
    """Write ``index.html`` and one ``<essay id>.html`` per essay into ``directory``, atomically.

    ``essays`` yields ``(essay_id, text)``; ``predictions`` and ``truth`` are span frames
    (``id, class, predictionstring``). With the truth, the index shows each essay's F1 (worst first).
    """
    from .metric import score

    directory = Path(directory)
    if directory.exists() and any(directory.iterdir()) and not (directory / "index.html").exists():
        raise FbpError(f"{directory} exists and is not an fbp HTML report (no index.html); choose another directory for the HTML view")
    predicted_spans, true_spans = _spans_by_essay(predictions), _spans_by_essay(truth)
    predicted_frames = {str(key): frame for key, frame in predictions.groupby("id")}
    true_frames = {str(key): frame for key, frame in truth.groupby("id")} if truth is not None else {}
    def write(staging: Path) -> None:
        rows = []
        for essay_id, text in essays:
            predicted = predicted_spans.get(essay_id, [])
            true = true_spans.get(essay_id, []) if truth is not None else None
            (staging / f"{essay_id}.html").write_text(render_essay_page(essay_id, text, predicted, true), encoding="utf-8")
            essay_f1 = None
            if true:  # an essay with no true span has no F1; one with no predicted span scores 0
                essay_f1 = score(predicted_frames[essay_id], true_frames[essay_id]).f1 if essay_id in predicted_frames else 0.0
            rows.append((essay_id, len(text.split()), len(predicted), None if true is None else len(true), essay_f1))
        (staging / "index.html").write_text(_index_page(rows, truth is not None), encoding="utf-8")

    write_dir_atomically(directory, write, replaceable=lambda existing: (existing / "index.html").exists())
    return directory


def _index_page(rows: List[Tuple[str, int, int, Optional[int], Optional[float]]], with_truth: bool) -> str:
    if with_truth:  # worst essays first: that is where to look
        rows = sorted(rows, key=lambda row: (row[4] is None, row[4] if row[4] is not None else 0.0))
    header = "<tr><th>essay</th><th>words</th><th>predicted spans</th>" + ("<th>true spans</th><th>F1</th>" if with_truth else "") + "</tr>"
    lines = []
    for essay_id, n_words, n_predicted, n_true, essay_f1 in rows:
        cells = f'<td><a href="{html.escape(essay_id)}.html">{html.escape(essay_id)}</a></td><td>{n_words}</td><td>{n_predicted}</td>'
        if with_truth:
            cells += f"<td>{n_true}</td><td>{'' if essay_f1 is None else f'{essay_f1:.3f}'}</td>"
        lines.append(f"<tr>{cells}</tr>")
    note = "<p>Sorted by F1, worst first.</p>" if with_truth else ""
    return _page("fbp predictions", f"<h1>Predictions: {len(rows)} essays</h1>{_legend()}{note}<table>{header}{''.join(lines)}</table>")

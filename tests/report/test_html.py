"""The report page: well-formed, self-contained, escaped, written atomically."""

from __future__ import annotations

import base64
import io
from html.parser import HTMLParser
from pathlib import Path

import pytest
from PIL import Image

from tpopk.report import html
from tpopk.report.html import write_html

from .conftest import HOSTILE

#: Elements that have no end tag in HTML.
VOID = {"meta", "img", "br", "hr", "link", "input", "source", "col", "wbr"}


class PageCheck(HTMLParser):
    """Record tags, nesting errors, attributes, text and table cells of a page."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.tags: list[str] = []
        self.links: list[tuple[str, str, str]] = []  # (tag, attribute, value)
        self.images: list[str] = []
        self.text: list[str] = []
        self.cells: list[str] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        for name, value in attrs:
            if name in ("src", "href", "action", "poster", "data"):
                self.links.append((tag, name, value or ""))
            if tag == "img" and name == "src":
                self.images.append(value or "")
        if tag in ("td", "th"):
            self._cell = []
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self.cells.append("".join(self._cell))
            self._cell = None
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:]} at {self.getpos()}")
            return
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._cell is not None:
            self._cell.append(data)


def parse(path: Path) -> PageCheck:
    page = PageCheck()
    page.feed(path.read_text(encoding="utf-8"))
    page.close()
    return page


def check_self_contained(page: PageCheck, n_figures: int) -> None:
    assert page.errors == []
    assert page.stack == []
    assert page.tags[:3] == ["html", "head", "meta"]
    assert not {"script", "link", "iframe", "object", "embed"} & set(page.tags)
    for tag, attribute, value in page.links:
        assert value.startswith(("#", "data:image/png;base64,")), (tag, attribute, value[:40])
    assert len(page.images) == n_figures
    for src in page.images:
        data = base64.b64decode(src.removeprefix("data:image/png;base64,"), validate=True)
        assert data.startswith(b"\x89PNG\r\n\x1a\n")
        assert min(Image.open(io.BytesIO(data)).size) > 0


def test_page_is_well_formed_and_self_contained(small_payload, tmp_path: Path) -> None:
    path = write_html(small_payload, tmp_path / "report.html")
    page = parse(path)
    check_self_contained(page, len(small_payload.figures))
    sections = [key for _, key in html.SECTIONS]
    hrefs = [value for tag, _, value in page.links if tag == "a"]
    assert hrefs == [f"#{key}" for key in sections]


def test_text_is_escaped_not_interpreted(small_payload, tmp_path: Path) -> None:
    page = parse(write_html(small_payload, tmp_path / "report.html"))
    text = "".join(page.text)
    # the hostile text appears verbatim as text (title, description, source, warning, captions)
    assert text.count(HOSTILE) >= 5 + len(small_payload.figures)
    assert "script" not in page.tags
    assert page.tags.count("b") == len(small_payload.figures)  # only the captions' own bold


def test_loo_warnings_are_listed_under_the_loo_table(small_payload, tmp_path: Path) -> None:
    text = "".join(parse(write_html(small_payload, tmp_path / "report.html")).text)
    (warning,) = small_payload.loo_warnings
    assert warning in text
    assert text.index("PSIS-LOO") < text.index(warning)
    calm = small_payload.model_copy(update={"loo_warnings": ()})
    calm_text = "".join(parse(write_html(calm, tmp_path / "calm.html")).text)
    assert "Every Pareto k is below its threshold." in calm_text
    assert warning not in calm_text


def test_tables_show_the_payload_numbers(small_payload, tmp_path: Path) -> None:
    page = parse(write_html(small_payload, tmp_path / "report.html"))
    row = small_payload.parameters.rows[0]
    cells = page.cells
    start = cells.index(row.parameter)
    assert cells[start : start + 12] == [
        "pop_cl",
        "L/h",
        "2.75",
        "0.2",
        "2.4",
        "2.74",
        "3.1",
        "–",  # no %CV: not a log-normal SD
        "12%",
        "812.4",
        "790",
        "1.001",
    ]
    omega = cells.index("omega_cl")
    assert cells[omega + 1] == "SD of log"
    assert cells[omega + 7 : omega + 9] == ["30.7 (19.8–48.9)", "48% mainly prior"]
    assert cells[cells.index("sd") + 1 : cells.index("sd") + 4] == ["5%", "median", "95%"]
    for table in small_payload.comparison:
        for column in table.columns:
            assert column in cells
    assert "LogNormal(mu=1.6, sigma=1.2)" in cells


@pytest.mark.parametrize(
    ("value", "text"),
    [(None, "–"), (float("nan"), "–"), (3, "3"), (0.000123456, "0.0001235"), ("a<b", "a&lt;b")],
)
def test_cell_text(value, text) -> None:
    assert html._text(value) == text


def test_failed_render_leaves_the_earlier_report(small_payload, tmp_path, monkeypatch) -> None:
    path = write_html(small_payload, tmp_path / "report.html")
    before = path.read_bytes()

    def broken(payload):
        raise RuntimeError("formatting failed half-way")

    # LOO comes after the data, model and convergence sections have been written out
    monkeypatch.setattr(html, "_loo", broken)
    with pytest.raises(RuntimeError, match="half-way"):
        write_html(small_payload.model_copy(update={"title": "new"}), path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html"]


def test_write_creates_folder_and_replaces(small_payload, tmp_path: Path) -> None:
    path = tmp_path / "deeper" / "report.html"
    write_html(small_payload, path)
    write_html(small_payload.model_copy(update={"title": "second"}), path)
    assert "<title>second</title>" in path.read_text(encoding="utf-8")
    assert sorted(p.name for p in path.parent.iterdir()) == ["report.html"]
    assert path.stat().st_mode & 0o777 == 0o644

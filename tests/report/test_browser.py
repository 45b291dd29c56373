"""The report opened in headless Chromium: every figure decodes and every table lays out.

Chromium comes from Debian's package, installed by ``make browser`` (a prerequisite of
``make test``). Where it cannot be installed, this test skips and says why.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from tpopk.report.comparison import Table
from tpopk.report.html import write_html
from tpopk.report.payload import ReportPayload

from .test_html import check_self_contained, parse

CHROMIUM = Path("/usr/bin/chromium")
INSTALL_LOG = Path(__file__).parents[2] / ".cache" / "chromium-install.log"
FLAGS = [
    "--headless",
    "--no-sandbox",  # root in a container has no user namespaces for the sandbox
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--virtual-time-budget=10000",  # let the load event fire before the DOM is dumped
]

#: Width of the browser window the layout is checked at (a laptop screen).
WIDTH = 1400

# Written into a copy of the report: what the browser made of each image and table, and
# where its layout fails: content wider than its box (clipped or spilling), elements whose
# text boxes overlap, a page wider than the window.
PROBE = """<script>
window.addEventListener("load", () => {
  const box = (e) => e.getBoundingClientRect();
  const name = (e) => e.tagName + ": " + e.textContent.trim().slice(0, 60) + (e.alt || "");
  // a table may be wider than the page only inside a container that scrolls it sideways
  const scrolled = (e) => e.closest(".scroll") !== null
                          && getComputedStyle(e.closest(".scroll")).overflowX === "auto";
  const overflowing = [...document.querySelectorAll(
      "table, th, td, caption, figure, img, p, li, .scroll")]
    .filter((e) => e.scrollWidth > e.clientWidth + 1 && !e.matches(".scroll, table")
                   || box(e).right > box(e.closest("section, body")).right + 1 && !scrolled(e))
    .map(name);
  const blocks = [...document.querySelectorAll(
    "h1, h2, h3, p, li, caption, th, td, img, figcaption, nav")];
  const overlapping = [];
  for (let i = 0; i < blocks.length; i++) {
    for (let j = i + 1; j < blocks.length; j++) {
      const [a, b] = [blocks[i], blocks[j]];
      if (a.contains(b) || b.contains(a)) continue;
      const [p, q] = [box(a), box(b)];
      const width = Math.min(p.right, q.right) - Math.max(p.left, q.left);
      const height = Math.min(p.bottom, q.bottom) - Math.max(p.top, q.top);
      if (width > 1 && height > 1) overlapping.push([name(a), name(b)]);
    }
  }
  const result = {
    width: window.innerWidth,
    page_width: document.documentElement.scrollWidth,
    overflowing: overflowing,
    overlapping: overlapping,
    images: [...document.images].map((i) => [i.complete, i.naturalWidth, i.naturalHeight,
                                             box(i).width, box(i).height]),
    tables: [...document.querySelectorAll("table")].map((t) => [t.rows.length,
                                                                box(t).width, box(t).height]),
  };
  const out = document.createElement("pre");
  out.id = "render-check";
  out.textContent = JSON.stringify(result);
  document.body.appendChild(out);
});
</script>
"""


def chromium_or_skip() -> Path:
    """The browser, or a skip that says exactly why it is not there."""
    if CHROMIUM.is_file():
        return CHROMIUM
    if os.geteuid() != 0:
        reason = f"not root (uid {os.geteuid()}), so apt-get cannot install chromium"
    elif shutil.which("apt-get") is None:
        reason = "no apt-get on this system to install Debian's chromium"
    elif INSTALL_LOG.is_file():
        tail = " | ".join(INSTALL_LOG.read_text(errors="replace").strip().splitlines()[-3:])
        reason = f"'make browser' ran apt-get install chromium and it failed: {tail}"
    else:
        reason = "'make browser' has not been run (it installs chromium with apt-get)"
    pytest.skip(f"{CHROMIUM} is missing: {reason}")


def run_chromium(browser: Path, profile: Path, *arguments: str) -> str:
    result = subprocess.run(
        [str(browser), *FLAGS, f"--user-data-dir={profile}", *arguments],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def rendered_layout(browser: Path, report: Path, tmp_path: Path) -> dict[str, Any]:
    """Open the report at :data:`WIDTH` px and return what :data:`PROBE` measured."""
    probed = tmp_path / "probed.html"
    probed.write_text(
        report.read_text(encoding="utf-8").replace("</body>", PROBE + "</body>"), encoding="utf-8"
    )
    window = f"--window-size={WIDTH},2400"
    dom = run_chromium(browser, tmp_path / "profile", window, "--dump-dom", probed.as_uri())
    found = re.search(r'<pre id="render-check">(.*?)</pre>', dom, re.DOTALL)
    assert found, dom[-2000:]
    rendered: dict[str, Any] = json.loads(found.group(1))
    return rendered


def check_layout(rendered: dict[str, Any]) -> None:
    """Nothing clipped, spilling or overlapping, and no sideways scrolling, at WIDTH px."""
    assert rendered["width"] == WIDTH
    assert rendered["page_width"] <= WIDTH
    assert rendered["overflowing"] == []
    assert rendered["overlapping"] == []


def wide_payload(payload: ReportPayload) -> ReportPayload:
    """The small payload with what used to break the layout: unbreakable words, wide tables."""
    # underscores give no line break: a token as a file name or variable list can hold
    url = "doi_10.1000_" + "a_long_unbroken_name_" * 8 + "label.pdf"
    card = payload.cards[0]
    row = card.parameters[0].model_copy(update={"source": f"label via {url}", "prior": url})
    wide = Table(
        title="contrasts by pair",
        columns=tuple(f"difference_responder_at_week_{w}_of_treatment median" for w in range(16)),
        rows=((*(0.123456 * w for w in range(16)),),),
    )
    return payload.model_copy(
        update={
            "cards": (card.model_copy(update={"parameters": (row,) * 3}),),
            "comparison": (*payload.comparison, wide),
        }
    )


def test_wide_tables_fit_the_window(small_payload: ReportPayload, tmp_path: Path) -> None:
    browser = chromium_or_skip()
    report = write_html(wide_payload(small_payload), tmp_path / "report.html")
    check_layout(rendered_layout(browser, report, tmp_path))


def test_layout_check_sees_a_clipped_table(small_payload: ReportPayload, tmp_path: Path) -> None:
    browser = chromium_or_skip()
    report = write_html(wide_payload(small_payload), tmp_path / "report.html")
    # the report's style as it was: unbreakable words widen tables past the page, and the
    # model tables (no scroll container) spill out of their section
    page = report.read_text(encoding="utf-8").replace("overflow-wrap: anywhere", "")
    report.write_text(page.replace("max-width: 100%", ""), encoding="utf-8")
    rendered = rendered_layout(browser, report, tmp_path)
    overflowing = rendered["overflowing"]
    assert any(item.startswith("TABLE: Parameters and priors") for item in overflowing), overflowing


@pytest.mark.slow
@pytest.mark.xdist_group("fits")
def test_report_renders_in_chromium(theophylline_payload, tmp_path: Path) -> None:
    browser = chromium_or_skip()
    report = write_html(theophylline_payload, tmp_path / "report.html")
    check_self_contained(parse(report), len(theophylline_payload.figures))
    rendered = rendered_layout(browser, report, tmp_path)
    check_layout(rendered)

    expected_sizes = [
        Image.open(io.BytesIO(base64.b64decode(f.png_base64))).size
        for f in theophylline_payload.figures
    ]
    assert len(rendered["images"]) == len(expected_sizes)
    for (complete, width, height, shown_w, shown_h), size in zip(
        rendered["images"], expected_sizes, strict=True
    ):
        assert complete
        assert (width, height) == size  # the browser decoded the PNG at its true size
        assert shown_w > 100
        assert shown_h > 50

    n_tables = report.read_text(encoding="utf-8").count("<table>")
    assert len(rendered["tables"]) == n_tables >= 10
    for rows, width, height in rendered["tables"]:
        assert rows >= 2  # a heading row and at least one row of values
        assert width > 50
        assert height > 10 * rows  # each row has a line of text

    screenshot = tmp_path / "report.png"
    run_chromium(
        browser,
        tmp_path / "profile",
        "--window-size=1280,2400",
        f"--screenshot={screenshot}",
        report.as_uri(),
    )
    image = Image.open(screenshot).convert("RGB")
    assert image.size == (1280, 2400)
    colours = image.getcolors(maxcolors=1 << 20) or []
    assert len(colours) > 50  # text, table shading and figures, not a blank page


def test_missing_browser_skips_saying_why(tmp_path: Path, monkeypatch) -> None:
    module = sys.modules[__name__]
    monkeypatch.setattr(module, "CHROMIUM", tmp_path / "no-chromium")
    monkeypatch.setattr(module, "INSTALL_LOG", tmp_path / "install.log")
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(shutil, "which", lambda name: "/usr/bin/apt-get")
    with pytest.raises(pytest.skip.Exception, match="'make browser' has not been run"):
        chromium_or_skip()
    (tmp_path / "install.log").write_text("Reading lists\nE: Unable to locate package chromium\n")
    with pytest.raises(pytest.skip.Exception, match=r"failed: .*Unable to locate package chromium"):
        chromium_or_skip()
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(pytest.skip.Exception, match=r"missing: not root \(uid 1000\)"):
        chromium_or_skip()

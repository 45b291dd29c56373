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

import pytest
from PIL import Image

from tpopk.report.html import write_html

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

# Written into a copy of the report: what the browser made of each image and table.
PROBE = """<script>
window.addEventListener("load", () => {
  const box = (e) => e.getBoundingClientRect();
  const result = {
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


@pytest.mark.slow
@pytest.mark.xdist_group("fits")
def test_report_renders_in_chromium(theophylline_payload, tmp_path: Path) -> None:
    browser = chromium_or_skip()
    report = write_html(theophylline_payload, tmp_path / "report.html")
    check_self_contained(parse(report), len(theophylline_payload.figures))
    probed = tmp_path / "probed.html"
    probed.write_text(
        report.read_text(encoding="utf-8").replace("</body>", PROBE + "</body>"), encoding="utf-8"
    )
    dom = run_chromium(browser, tmp_path / "profile", "--dump-dom", probed.as_uri())
    found = re.search(r'<pre id="render-check">(.*?)</pre>', dom, re.DOTALL)
    assert found, dom[-2000:]
    rendered = json.loads(found.group(1))

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

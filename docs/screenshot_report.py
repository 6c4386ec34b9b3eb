"""Screenshot of a run report for the README: `python docs/screenshot_report.py OUT docs/report-ner.png`.

Writes OUT/report.html (`nlpfit report OUT`), opens it in Debian's chromium through Playwright, takes
the full page 1200 px wide and saves it as a 256-colour PNG (a third of the size, same look)."""

import shutil
import sys
from pathlib import Path

from PIL import Image
from playwright.sync_api import sync_playwright

from nlpfit.report.html import write_report


def main(out_dir: str, png: str, width: int = 1200) -> None:
    page_file = write_report(out_dir).resolve()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=shutil.which("chromium"), args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": width, "height": 900})
            page.goto(page_file.as_uri())
            page.screenshot(path=png, full_page=True)
        finally:
            browser.close()
    image = Image.open(png).convert("RGB")
    image.quantize(colors=256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE).save(png, optimize=True)
    print(f"{png}: {Path(png).stat().st_size // 1024} KB, {image.width}x{image.height}")


if __name__ == "__main__":
    main(*sys.argv[1:3])

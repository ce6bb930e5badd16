"""Writes the demo's small Wikipedia sample, page views and WordNet directory (deterministic).

Run from the repository root: ``python openwit/demo/data/make_demo_dump.py``. The articles
are written around the demo world's vocabulary (``openwit.demo.world``: colours, shapes,
backgrounds) and the words of its captions, in realistic wikitext (infoboxes, references,
tables, images, categories), with a redirect, a disambiguation page and a talk page among
them, so the demo's funnel shows every outcome.
"""

from __future__ import annotations

import random
from pathlib import Path

from openwit.demo.world import BACKGROUNDS, COLOURS, SHAPES
from openwit.queries.export_xml import DumpPage, write_dump, write_pageviews, write_wndb

HERE = Path(__file__).resolve().parent
SENTENCES = (
    "A {colour} {shape} on a {background} background is easy to see.",
    "The photo of a {colour} {shape} was taken in the middle of the day.",
    "Artists often painted a large {colour} {shape} on a {background} wall.",
    "A close-up of a {colour} {shape} sign shows the paint in detail.",
    "In the picture, the {colour} {shape} sits in the middle of a {background} field.",
    "Many a photo of a {shape} uses a {background} background for contrast.",
)


def article(colour: str, shape: str, rng: random.Random) -> str:
    backgrounds = list(BACKGROUNDS)
    body = " ".join(
        rng.choice(SENTENCES).format(colour=colour, shape=shape, background=rng.choice(backgrounds))
        for _ in range(8)
    )
    return (
        f"{{{{Infobox shape\n| name = {colour} {shape}\n| colour = {colour}\n}}}}\n"
        f"A '''{colour} {shape}''' is a [[{shape.title()}|{shape}]] drawn in [[{colour}]] paint. "
        f"{body}<ref>{{{{cite book |title=Shapes and colours |year=1990}}}}</ref>\n"
        "== Use ==\n"
        f"Road signs use the primary colours; a {colour} {shape} on a sign means a warning.\n"
        '{| class="wikitable"\n! Colour !! Shape\n|-\n'
        f"| {colour} || {shape}\n|}}\n"
        f"[[File:{colour}_{shape}.jpg|thumb|A {colour} {shape}]]\n"
        f"[[Category:{shape.title()}s]]\n"
    )


def pages() -> list[DumpPage]:
    rng = random.Random(0)
    result = []
    for colour in COLOURS:
        for shape in SHAPES:
            title = f"{colour.title()} {shape}"
            result.append(DumpPage(title, article(colour, shape, rng), page_id=len(result) + 1))
    result += [
        DumpPage("Red circles", "#REDIRECT [[Red circle]]", page_id=900, redirect_to="Red circle"),
        DumpPage(
            "Star (disambiguation)",
            "'''Star''' may refer to:\n* [[Star (shape)]]\n* [[Star]], a sun\n{{disambiguation}}",
            page_id=901,
        ),
        DumpPage("Talk:Red circle", "Is the red circle red? ~~~~", ns=1, page_id=902),
    ]
    return result


def main() -> None:
    # Named as Wikimedia names them, with the dump date (the dataset card reads it).
    write_dump(HERE / "demowiki-20260101-pages-articles.xml.bz2", pages(), multistream=True)
    views = [("en", f"{c.title()}_{s}", 40 + 7 * i) for i, (c, s) in
             enumerate((c, s) for c in COLOURS for s in SHAPES)]  # fmt: skip
    views += [("en", "Primary_color", 120), ("en", "Talk:Red_circle", 300), ("de", "Kreis", 500)]
    write_pageviews(HERE / "pageviews-20260101-000000.gz", views)
    write_wndb(
        HERE / "wordnet",
        {
            "noun": [[s] for s in SHAPES] + [["background", "ground"], ["primary_colour"]],
            "adj": [[c] for c in COLOURS] + [["wooden"], ["grey", "gray"]],
        },
    )


if __name__ == "__main__":
    main()

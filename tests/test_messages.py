"""Errors on pages show what people typed, character for character (markdown-it stands in for the browser's
markdown; it comes with Keras, through rich)."""

import html

import pytest
from markdown_it import MarkdownIt

from dashboard.messages import literal

MARKDOWN = MarkdownIt("commonmark").enable(["strikethrough", "table"])


def shown(markdown: str) -> str:
    """The text a reader sees: the rendered paragraph without its tags."""
    rendered = MARKDOWN.render(markdown).strip()
    assert rendered.startswith("<p>") and rendered.endswith("</p>"), rendered
    return html.unescape(rendered[3:-4])


@pytest.mark.parametrize(
    "text",
    [
        "The folder photos/beagle/*.jpg has no images.",
        "my_dogs_2/_best_ and **bold** [a](b) <b>hi</b> $x$ ~~s~~ :red[x] &amp; C:\\Users\\me",
        "# not a heading\n1. not a list\n- nor this\n> nor a quote\n===",
        "2) still text, and 10. so is this",
    ],
)
def test_literal_text_is_shown_exactly_as_written(text):
    assert shown(literal(text)) == text


def test_code_spans_in_messages_stay_code():
    markdown = literal("run `python -m core.data --download stanford_dogs` for 'stanford_dogs'")
    assert MARKDOWN.render(markdown).strip() == (
        "<p>run <code>python -m core.data --download stanford_dogs</code> for 'stanford_dogs'</p>"
    )

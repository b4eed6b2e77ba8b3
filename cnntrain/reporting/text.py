"""Text that came from data or files (class names, config values, paths, overrides), made safe to show.

A class name is whatever a folder, a label file or a checkpoint says. Printed as it is, `[/bold]` is rich
markup (rich raises on a closing tag it did not open), an ESC byte starts a terminal escape sequence, and
U+202E turns the rest of a line around. Every such piece of text goes through one of the three functions
here before it reaches the console, train.log, a table, an error line or an HTML page; nothing else in
cnntrain escapes text on its own. No rich or torch import at module level: error lines use it too.
"""

from __future__ import annotations

import html
import re
from typing import Any

BIDI = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
"""The bidirectional formatting characters (marks, embeddings, overrides, isolates): the Trojan Source set."""
SURROGATES = "\ud800-\udfff"
"""Lone UTF-16 surrogates (a file name's undecodable byte, a JSON `\\ud800`): no encoding can write them."""
_UNSAFE = re.compile(f"[\x00-\x1f\x7f-\x9f{BIDI}\u2028\u2029{SURROGATES}]")
_UNSAFE_KEEP_LINES = re.compile(f"[\x00-\x08\x0b-\x1f\x7f-\x9f{BIDI}\u2028\u2029{SURROGATES}]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\x1b": "\\x1b"}


def plain(value: Any, *, keep_lines: bool = False) -> str:
    """`value` as one line of visible text: control characters (C0, DEL, C1; ESC among them), bidi formatting
    characters and lone surrogates are shown as escapes (`\\x1b`, `\\u202e`, `\\udc80`), so what a file holds
    is seen, never obeyed, and always encodable. With keep_lines, line breaks and tabs stay (a config shown in a
    <pre> block)."""
    pattern = _UNSAFE_KEEP_LINES if keep_lines else _UNSAFE
    return pattern.sub(_escape_char, str(value))


def markup(value: Any) -> str:
    """`value` as text inside rich markup: plain(), then every `[` that could open a tag escaped."""
    from rich.markup import escape  # rich only for markup: plain() alone (the figures) does not need it

    return escape(plain(value))


def html_text(value: Any, *, keep_lines: bool = False) -> str:
    """`value` as HTML text: plain(), then HTML-escaped (quotes too, so it is safe in an attribute)."""
    return html.escape(plain(value, keep_lines=keep_lines), quote=True)


def _escape_char(match: re.Match[str]) -> str:
    char = match.group()
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"

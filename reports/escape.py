"""Escaping of user-provided text (file names, dataset roots, error messages) for MyST pages.

Report pages are markdown that Sphinx turns into HTML, so a file named ``*x*_[a](b)<b>.png``
would otherwise become emphasis, a link or raw HTML. Every ASCII punctuation character that
CommonMark, GFM tables or MyST give a meaning to in that position is backslash-escaped
(CommonMark allows a backslash before any ASCII punctuation), so the text renders as written.
"""

from __future__ import annotations

import hashlib
import re

__all__ = ["MyST", "escape_note", "escape_text", "fence", "slug"]

# Escaped wherever they occur: inline syntax of CommonMark/GFM tables (`|`), MyST roles (`{}`),
# math (`$`), HTML (`<>`, `&` entities). Escaped only as the first visible character (all text is
# folded onto one line, so that is the only line start): list markers, headings made by
# underlines, colon fences, MyST comments (`%`), ordered-list numbers ("1." / "1)").
_ALWAYS = frozenset("\\`*_{}[]()<>#|~&$")
_LEADING = frozenset("-+=:%.!^")
_ORDERED = re.compile(r"^(\d{1,9})\.(?=\s|$)")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class MyST(str):
    """A string that is already valid markdown: templates insert it without escaping."""


def escape_text(value: object) -> MyST:
    """Inline-safe text: markdown/HTML metacharacters escaped, line breaks folded to spaces."""
    # Leading spaces would make an indented code block inside a list item; HTML drops them anyway.
    text = str(value).replace("\r\n", " ").replace("\n", " ").replace("\t", " ").strip(" ")
    text = _CONTROL.sub(lambda m: repr(m.group())[1:-1], text)
    text = "".join("\\" + ch if ch in _ALWAYS else ch for ch in text)
    text = _ORDERED.sub(r"\1\\.", text)
    if text[:1] in _LEADING and text:
        text = "\\" + text
    return MyST(text)


_CODE = re.compile(r"`([^`]+)`")
_TOKEN = re.compile("\ue000(\\d+)\ue001")


def escape_note(value: object) -> MyST:
    """:func:`escape_text`, except that a note's `backticked` spans (commands to run, flags) show as
    inline code: a code span shows its content literally, so nothing in it needs escaping."""
    spans: list[str] = []

    def hold(match: re.Match[str]) -> str:
        spans.append(match.group(1))
        return f"\ue000{len(spans) - 1}\ue001"

    text = escape_text(_CODE.sub(hold, str(value).replace("\ue000", "")))
    return MyST(_TOKEN.sub(lambda m: f"`{spans[int(m.group(1))]}`", text))


def fence(text: object, language: str = "text") -> MyST:
    """A fenced code block that shows ``text`` literally, whatever backticks it contains."""
    body = str(text).rstrip("\n")
    longest = max((len(run) for run in re.findall(r"`+", body)), default=0)
    ticks = "`" * max(3, longest + 1)
    return MyST(f"{ticks}{language}\n{body}\n{ticks}")


def slug(name: str) -> str:
    """A file-name-safe form of a run id or method name (page names, figure files).

    Names already made of ``[A-Za-z0-9._-]`` (every run id and registered method) are kept as
    they are; anything else is replaced and a short hash added so two names never collide.
    """
    safe = re.sub(r"[^A-Za-z0-9._-]", "-", name).strip(".-") or "x"
    if safe == name:
        return name
    return f"{safe}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"

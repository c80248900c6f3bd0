"""Untrusted text (retrieved passages, image findings, tool results) made inert inside a prompt.

:func:`neutralise_untrusted` is the one neutraliser behind both prompt fences: the
``<evidence>`` blocks of ``tools.literature.render_evidence`` and the ``<untrusted_data>`` blocks
of ``graphs.safety.fence_untrusted``. A fence can only be closed, or a role marker faked, by
something a reader takes for a tag: a ``<``-like bracket followed by a name, a ``/``, ``|``,
``!`` or ``?``. The check looks at the text as a tokenizer or a reader would see it: each
character in its Unicode NFKC form (fullwidth ``＜`` is ``<``, ``ｅ`` is ``e``), with invisible
characters (format characters such as U+2062 INVISIBLE TIMES or U+200B, combining marks,
variation selectors, fillers) and whitespace between bracket, slash and name skipped. Every such
bracket is replaced; the rest of the text, numbers such as ``p < 0.05`` or ``10⁹/L`` included,
is kept as it was.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

BRACKET_LOOKALIKES = "\u2329\u27e8\u3008\u02c2\u1438\u276e\u276c\u2770\u29fc"
"""Brackets that read like "<" but that NFKC does not map to it."""
_BRACKET_LOOKALIKES = frozenset(BRACKET_LOOKALIKES)
_SLASH_LOOKALIKES = frozenset("\u2044\u2215\u29f8\u2571\u27cb")
_TAG_SIGNS = frozenset("/|!?")
# Default-ignorable characters outside the Cf/Mn/Me categories (fillers, Mongolian selectors).
_IGNORABLE = frozenset("\u115f\u1160\u3164\uffa0\u180b\u180c\u180d\u180f\u17b4\u17b5")
_INVISIBLE_CATEGORIES = frozenset({"Cf", "Mn", "Me", "Zl", "Zp"})

_LONE_SURROGATE = re.compile(r"[\ud800-\udfff]")
_LINE_BREAKS = re.compile(r"\r\n|[\r\u2028\u2029\x85\x0b\x0c]")
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0e-\x1f\x7f-\x84\x86-\x9f]")
_SPECIAL_CLOSE = re.compile(r"\|>")


@lru_cache(maxsize=4096)
def _seen_as(char: str) -> str:
    """How a reader sees ``char``: "" when invisible or blank, else its NFKC form."""
    if char.isspace() or char in _IGNORABLE:
        return ""
    if unicodedata.category(char) in _INVISIBLE_CATEGORIES:
        return ""
    return unicodedata.normalize("NFKC", char)


def _is_bracket(char: str) -> bool:
    return char in _BRACKET_LOOKALIKES or _seen_as(char).startswith("<")


def _next_visible(text: str, start: int) -> tuple[int, str]:
    """The index and NFKC form of the first visible character at or after ``start``."""
    for index in range(start, len(text)):
        seen = _seen_as(text[index])
        if seen:
            return index, seen
    return len(text), ""


def _starts_tag(text: str, bracket: int) -> bool:
    """Whether the bracket at ``bracket`` opens something tag-like (see the module)."""
    index, seen = _next_visible(text, bracket + 1)
    if not seen:
        return False
    first = seen[0]
    return (
        text[index] in _SLASH_LOOKALIKES or first in _TAG_SIGNS or first.isalpha() or first == "_"
    )


# An ASCII character other than "<" is its own NFKC form and no look-alike: only "<" and
# non-ASCII characters can be brackets, so only they are looked at (in C, by the regex).
_BRACKET_CANDIDATE = re.compile("[<\x80-\U0010ffff]")


def tag_brackets(text: str) -> list[int]:
    """Indexes of the brackets in ``text`` that open something tag-like."""
    return [
        match.start()
        for match in _BRACKET_CANDIDATE.finditer(text)
        if _is_bracket(match.group()) and _starts_tag(text, match.start())
    ]


def neutralise_untrusted(text: str, bracket: str) -> str:
    """``text`` that cannot close or open a fence, or fake a role marker, in a prompt.

    Lone surrogates become U+FFFD (the prompt must encode), line breaks become ``\\n``, control
    characters other than tab and newline are dropped, every tag-opening bracket (see the module)
    becomes ``bracket`` (``"&lt;"`` or ``"‹"``, say), and a ``|>`` (the end of special tokens
    such as ``<|im_end|>``) becomes ``|›``.
    """
    text = _LONE_SURROGATE.sub("\ufffd", text)
    text = _LINE_BREAKS.sub("\n", text)
    text = _CONTROL_CHARACTERS.sub("", text)
    positions = tag_brackets(text)
    if positions:
        pieces = []
        last = 0
        for position in positions:
            pieces.append(text[last:position])
            pieces.append(bracket)
            last = position + 1
        pieces.append(text[last:])
        text = "".join(pieces)
    # Without its "<" a special token cannot form; its "|>" end is marked as well.
    return _SPECIAL_CLOSE.sub("|\u203a", text)


def reader_view(text: str) -> str:
    """``text`` as :func:`tag_brackets` reads it: NFKC per character, invisible characters and
    whitespace removed, look-alike brackets and slashes as ``<`` and ``/`` (for checks)."""
    seen = []
    for char in text:
        if char in _BRACKET_LOOKALIKES:
            seen.append("<")
        elif char in _SLASH_LOOKALIKES:
            seen.append("/")
        else:
            seen.append(_seen_as(char))
    return "".join(seen)

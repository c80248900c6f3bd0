"""Untrusted text made safe to print on a terminal.

Ingested literature and model output can hold terminal control sequences (OSC window titles and
hyperlinks, CSI cursor and colour codes, BEL) that a terminal would act on. :func:`terminal_text`
removes them before the CLI prints such text.
"""

from __future__ import annotations

import re

# ESC-introduced sequences: OSC ... (BEL | ST), DCS/SOS/PM/APC ... ST, CSI ... final byte, and
# two-character escapes; the 8-bit C1 forms of OSC, DCS and CSI too.
_ESCAPE_SEQUENCE = re.compile(
    r"""
    (?:\x1b\]|\x9d) .*? (?:\x07|\x1b\\|\x9c|$)        # OSC, ended by BEL or ST
  | (?:\x1b[P X^_]|[\x90\x98\x9e\x9f]) .*? (?:\x1b\\|\x9c|$)  # DCS, SOS, PM, APC
  | (?:\x1b\[|\x9b) [0-?]* [ -/]* [@-~]?             # CSI
  | \x1b [ -/]* [0-~]?                                # other escapes (and a lone ESC)
    """,
    re.VERBOSE | re.DOTALL,
)
# What is left of C0 (but tab and newline), DEL and C1.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")


def terminal_text(text: str) -> str:
    """``text`` without control sequences or control characters (tab and newline are kept);
    lone surrogates, which no terminal encoding can print, become U+FFFD."""
    text = _ESCAPE_SEQUENCE.sub("", text)
    text = _CONTROL.sub("", text)
    return _SURROGATE.sub("\ufffd", text)

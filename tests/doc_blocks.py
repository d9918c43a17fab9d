"""The python code blocks of README.md and docs/*.md, as tests/test_docs.py runs them.

Every ```python block of a page runs, in page order, in one fresh process (the blocks share
one namespace, as a reader pasting them into one session would), in a scratch directory.
A comment line right before a block (blank lines between are allowed) changes that:

- ``<!-- fragment: why -->`` skips the block. ``why`` is required and says what it is (e.g. a
  part of a program shown whole elsewhere, or the program launch/x.py that the suite runs).
  tests/test_docs.py counts the fragments of every page, so one cannot appear silently.
- ``<!-- test: replace "old" "new" -->`` (one or more on consecutive lines) runs the block with
  ``old`` replaced by ``new``, e.g. ``epochs=20`` by ``epochs=1``: the page shows the real
  program, the test its reduced-size run. ``old`` must occur in the block.

Any other HTML comment line is an error (a misspelt marker must not silently run or skip a
block). Nothing else is rewritten, and the library is not told it is being tested.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

_FENCE = re.compile(r"^(\s*)```+\s*([A-Za-z0-9_+-]*)")
_FRAGMENT = re.compile(r"^<!--\s*fragment\s*:(.*?)-->\s*$")
_REPLACE = re.compile(r'^<!--\s*test:\s*replace\s+"((?:[^"\\]|\\.)*)"\s+"((?:[^"\\]|\\.)*)"\s*-->\s*$')
# Every HTML comment is read as a marker, so a misspelt one fails instead of being ignored.
_MARKER = re.compile(r"^<!--")


@dataclasses.dataclass
class Block:
    """One fenced code block of a page."""

    page: Path
    line: int  # 1-based line of the opening fence
    language: str
    source: str
    fragment: str | None = None  # the reason given, when marked as a fragment
    replacements: list[tuple[str, str]] = dataclasses.field(default_factory=list)

    def runnable_source(self) -> str:
        """The source the test runs: with the page's replacements applied."""
        source = self.source
        for old, new in self.replacements:
            if old not in source:
                raise ValueError(f"{self.page.name}:{self.line}: the test replacement "
                                 f"{old!r} does not occur in the block.")
            source = source.replace(old, new)
        return source


def _unescape(text: str) -> str:
    return text.replace('\\"', '"').replace("\\\\", "\\")


def blocks(page: Path) -> list[Block]:
    """The fenced code blocks of ``page`` with their markers; a malformed marker raises."""
    lines = page.read_text().splitlines()
    found: list[Block] = []
    markers: list[tuple[int, str]] = []  # (line, text) of the marker comments since the last block
    i = 0
    while i < len(lines):
        text = lines[i].strip()
        fence = _FENCE.match(lines[i])
        if fence:
            indent, language = fence.group(1), fence.group(2).lower()
            start = i
            body: list[str] = []
            i += 1
            while i < len(lines) and not lines[i].strip().startswith("```"):
                body.append(lines[i][len(indent):] if lines[i].startswith(indent) else lines[i])
                i += 1
            block = Block(page, start + 1, language, "\n".join(body) + "\n")
            for line, marker in markers:
                if (m := _FRAGMENT.match(marker)):
                    if not m.group(1).strip():
                        raise ValueError(f"{page.name}:{line}: a fragment marker needs a reason: "
                                         "<!-- fragment: why it does not run -->")
                    block.fragment = m.group(1).strip()
                elif (m := _REPLACE.match(marker)):
                    block.replacements.append((_unescape(m.group(1)), _unescape(m.group(2))))
                else:
                    raise ValueError(f"{page.name}:{line}: unknown test marker {marker!r}")
            if markers and language != "python":
                raise ValueError(f"{page.name}:{markers[0][0]}: a test marker before a "
                                 f"{language or 'plain'} block (only python blocks run)")
            found.append(block)
            markers = []
        elif _MARKER.match(text):
            markers.append((i + 1, text))
        elif text and markers:
            raise ValueError(f"{page.name}:{markers[0][0]}: a test marker must come right before "
                             f"a code block, found {text!r} first")
        i += 1
    if markers:
        raise ValueError(f"{page.name}:{markers[0][0]}: a test marker after the last block")
    return found


def page_script(page: Path) -> tuple[str, list[Block], list[Block]]:
    """(a python program running the page's runnable blocks in order, the blocks it runs,
    the fragments it skips). The program prints ``BLOCK <line> OK`` after each block, so a
    failure names the block's line in the page."""
    python = [b for b in blocks(page) if b.language in ("python", "py", "python3")]
    run = [b for b in python if b.fragment is None]
    skipped = [b for b in python if b.fragment is not None]
    parts = ["import sys as _sys", "_namespace = {'__name__': '__main__'}"]
    for block in run:
        code = block.runnable_source()
        compile(code, f"{page.name}:{block.line}", "exec")  # a syntax error names the block
        parts.append(f"print('BLOCK {block.line} START', flush=True)")
        parts.append(f"exec(compile({code!r}, {f'{page.name}:{block.line}'!r}, 'exec'), "
                     "_namespace)")
        parts.append(f"print('BLOCK {block.line} OK', flush=True)")
    return "\n".join(parts) + "\n", run, skipped

"""The README's code blocks, as a reader copies them: which ones the snippet test runs, and the text of each.

Every ```python block runs. A shell block runs only when the line just before its fence is
`<!-- snippet: run -->`; the others (installs, AWS deploys, long-running servers, `scripts/lambda-local.sh`) are
documentation the test does not execute.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"
RUN_MARK = "<!-- snippet: run -->"
_FENCE = re.compile(r"^```(\w*)\s*$")


@dataclass(frozen=True, slots=True)
class Snippet:
    language: str
    code: str
    line: int  # 1-based line of the opening fence
    marked: bool

    @property
    def runs(self) -> bool:
        return self.language == "python" or (self.marked and self.language in ("bash", "sh", "shell"))


def snippets(text: str | None = None) -> list[Snippet]:
    lines = (README.read_text(encoding="utf-8") if text is None else text).splitlines()
    found: list[Snippet] = []
    i = 0
    while i < len(lines):
        match = _FENCE.match(lines[i])
        if match is None:
            i += 1
            continue
        start = i
        i += 1
        body: list[str] = []
        while i < len(lines) and lines[i].rstrip() != "```":
            body.append(lines[i])
            i += 1
        marked = start > 0 and lines[start - 1].strip() == RUN_MARK
        found.append(Snippet(language=match.group(1), code="\n".join(body) + "\n", line=start + 1, marked=marked))
        i += 1
    return found

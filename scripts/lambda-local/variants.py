"""Variants of the template for the smoke run, each one change away from what is deployed.

- `native`: the zip functions (API, ingest, callback, dead-letter, requeue) and their layer on x86_64 instead of
  arm64, so they run at this machine's native speed and their init durations mean something; everything else is
  template.yaml's.
  Paths become absolute, so the copy builds from anywhere.
- `emulated`: the arm64 build as deployed, with the zip functions' Timeout raised to 300 s, because qemu-user runs
  Python ~10-40x slower than the hardware it emulates and a 29 s API timeout measures the emulator, not the function.

    python3 variants.py native template.yaml OUT          python3 variants.py emulated .aws-sam/build/template.yaml OUT
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ZIP_FUNCTIONS = ("ApiFunction", "IngestFunction", "CallbackFunction", "JobsDeadLetterFunction", "JobsRequeueFunction")
EMULATED_TIMEOUT_S = 300


def native(text: str, root: Path) -> str:
    text = re.sub(r"^(\s+)(Compatible)?Architectures: \[arm64\]", r"\1\2Architectures: [x86_64]", text, flags=re.M)
    text = re.sub(r"^(\s+)BuildArchitecture: arm64", r"\1BuildArchitecture: x86_64", text, flags=re.M)
    text = re.sub(r"^(\s+)(CodeUri|ContentUri): (?!/)(\S+)", lambda m: f"{m[1]}{m[2]}: {root / m[3]}/", text,
                  flags=re.M)
    return re.sub(r"^(\s+)DockerContext: \.(\s|$)", rf"\1DockerContext: {root}\2", text, flags=re.M)


def emulated(text: str) -> str:
    for function in ZIP_FUNCTIONS:
        block = re.search(rf"^  {function}:\n.*?(?=^  \S|\Z)", text, flags=re.M | re.S)
        if block is None:
            raise SystemExit(f"{function} not in the template")
        body, count = re.subn(r"^(\s+)Timeout: \d+", rf"\g<1>Timeout: {EMULATED_TIMEOUT_S}", block[0], count=1,
                              flags=re.M)
        if count != 1:
            raise SystemExit(f"{function} has no Timeout")
        text = text[: block.start()] + body + text[block.end() :]
    return text


def main(argv: list[str]) -> None:
    kind, src, dst = argv
    text = Path(src).read_text()
    out = native(text, Path.cwd().resolve()) if kind == "native" else emulated(text)
    Path(dst).write_text(out)


if __name__ == "__main__":
    main(sys.argv[1:])

"""Which README blocks the snippet test runs: every python block, and shell blocks only when marked."""

from __future__ import annotations

import ast

from tests.readme_snippets import RUN_MARK, snippets

SAMPLE = f"""# Title

```python
x = 1
```

```bash
bash scripts/lambda-local.sh   # documentation only
```

{RUN_MARK}
```bash
echo run me
```

```
plain text
```
"""


def test_python_blocks_run_shell_blocks_only_when_marked() -> None:
    found = snippets(SAMPLE)
    assert [(s.language, s.runs, s.line) for s in found] == [
        ("python", True, 3), ("bash", False, 7), ("bash", True, 12), ("", False, 16)]
    assert found[2].code == "echo run me\n"


def test_the_readmes_python_blocks_parse_and_define_every_name_they_use() -> None:
    # The cheap half of the integration test (which runs them against `serve`): `S3` used but never defined made
    # the boto3 snippet fail verbatim with a NameError.
    import builtins

    blocks = [s for s in snippets() if s.language == "python"]
    assert blocks
    for block in blocks:
        tree = ast.parse(block.code)
        bound = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
        imports = [n for n in ast.walk(tree) if isinstance(n, ast.Import | ast.ImportFrom)]
        bound |= {(a.asname or a.name).split(".")[0] for n in imports for a in n.names}
        used = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
        assert used - bound - set(dir(builtins)) == set(), f"README.md line {block.line}"

"""The README's code runs as shown."""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING

from tests.guests import ROOT

if TYPE_CHECKING:
    from pathlib import Path


def test_readme_python_snippets_run(tmp_path: Path) -> None:
    """Every ```python block of the README executes (its database redirected to a temp dir)."""
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.DOTALL)
    assert blocks
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        for block in blocks:
            code = block.replace('"state.db"', repr(str(tmp_path / "state.db")))
            if "anyio.run(main)" in code:
                tmp_path.joinpath("state.db").unlink(missing_ok=True)
            exec(compile(code, "README.md", "exec"), {})
    finally:
        os.chdir(cwd)

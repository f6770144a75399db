"""The README's Python snippets run as written."""

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_blocks_run():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "README has no python example"
    for code in blocks:
        exec(compile(code, str(README), "exec"), {"__name__": "readme"})


def test_readme_bench_tables_come_from_the_bench_json():
    """Every README bench table is what scripts/readme_tables.py renders from benches/results."""
    script = README.parent / "scripts" / "readme_tables.py"
    res = subprocess.run([sys.executable, str(script), "--check"], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    text = README.read_text()
    for name in ("sampling", "splat", "knn", "projection"):
        block = re.search(rf"<!-- bench:{name} -->\n(.*?)<!-- /bench:{name} -->", text, flags=re.S)
        assert block and f"benches/{name}.py --json benches/results/{name}.json" in block.group(1), name

"""`make lint`: every `# noqa` and `# type: ignore` names what it silences and says why, on its line.

    # noqa: BLE001 - the broker is down; the client reconnects
    x = f(y)  # type: ignore[arg-type]  # torch's stubs want a Tensor; an int is accepted

A bare marker (no code) or one without a reason is reported as `path:line: ...`; exit status 1.
"""

from __future__ import annotations

import io
import re
import subprocess
import sys
import tokenize
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOQA = re.compile(r"#\s*noqa(?::\s*(?P<codes>[A-Z]+[0-9]+(?:\s*,\s*[A-Z]+[0-9]+)*))?(?P<rest>.*)", re.IGNORECASE)
IGNORE = re.compile(r"#\s*type:\s*ignore(?P<codes>\[[a-z0-9-]+(?:\s*,\s*[a-z0-9-]+)*\])?(?P<rest>.*)")
WORD = re.compile(r"[A-Za-z]{2,}")


def problems(path: Path) -> list[str]:
    out = []
    source = path.read_text(encoding="utf-8")
    # comments only: a marker quoted inside a string (like this module's docstring) is not a suppression
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type != tokenize.COMMENT:
            continue
        where = f"{path.relative_to(ROOT)}:{tok.start[0]}"
        for kind, marker, example in (
            ("noqa", NOQA, "# noqa: E402"),
            ("type: ignore", IGNORE, "# type: ignore[arg-type]"),
        ):
            m = marker.search(tok.string)
            if m is None:
                continue
            if not m["codes"]:
                out.append(f"{where}: `{kind}` must name the codes it silences, e.g. `{example}`")
            elif len(WORD.findall(m["rest"])) < 2:
                out.append(
                    f"{where}: `{kind} {m['codes']}` must say why on its line (`... - reason` or `...  # reason`)"
                )
    return out


def tracked_python() -> list[Path]:
    listed = subprocess.run(["git", "ls-files", "*.py"], cwd=ROOT, capture_output=True, text=True, check=True)
    return [ROOT / p for p in listed.stdout.split()]


def main() -> int:
    found = [p for path in tracked_python() if path.exists() for p in problems(path)]
    for line in found:
        print(line)
    print(f"{len(found)} unexplained suppressions" if found else "every noqa and type: ignore says why")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())

"""Reads pip-audit's JSON report (.ci/run): exit 1 on any known vulnerability; say loudly what could
not be audited (no database reachable), without failing the run for that."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(report_path: str) -> int:
    path = Path(report_path)
    if not path.is_file():
        print("WARNING: pip-audit wrote no report; dependencies NOT checked for known vulnerabilities")
        return 0
    dependencies = json.loads(path.read_text()).get("dependencies", [])
    vulnerable = [d for d in dependencies if d.get("vulns")]
    skipped = [d for d in dependencies if d.get("skip_reason")]
    for dependency in vulnerable:
        ids = ", ".join(v.get("id", "?") for v in dependency["vulns"])
        fixes = sorted({fix for v in dependency["vulns"] for fix in v.get("fix_versions", [])})
        print(f"VULNERABLE {dependency['name']} {dependency.get('version', '')}: {ids} (fixed in {', '.join(fixes) or '?'})")
    audited = len(dependencies) - len(skipped)
    print(f"pip-audit: {audited} of {len(dependencies)} locked packages audited, {len(vulnerable)} vulnerable")
    if skipped:
        print(
            f"WARNING: {len(skipped)} package(s) NOT audited (the vulnerability database could not be reached "
            f"from this machine), e.g. {skipped[0]['name']}: {skipped[0]['skip_reason']}"
        )
    return 1 if vulnerable else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))

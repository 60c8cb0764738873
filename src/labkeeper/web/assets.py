"""Copy the front-end libraries the pages use from node_modules/ into static/vendor/.

`make assets` runs `npm install` (package.json at the repository root pins the versions) and then
`python -m labkeeper.web.assets`. static/vendor/ is git-ignored: libraries are never committed.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from labkeeper.web.render import VENDOR_DIR

# file in static/vendor/ -> file inside node_modules/
FILES: dict[str, str] = {
    "htmx.min.js": "htmx.org/dist/htmx.min.js",
    "cytoscape.min.js": "cytoscape/dist/cytoscape.min.js",
}


def default_node_modules() -> Path:
    """node_modules/ of the repository this package is checked out in, else of the cwd."""
    repo = Path(__file__).resolve().parents[3] / "node_modules"
    return repo if repo.is_dir() else Path.cwd() / "node_modules"


def copy(node_modules: Path, target: Path = VENDOR_DIR) -> list[Path]:
    """Copy every needed file; FileNotFoundError names the first one missing."""
    missing = [src for src in FILES.values() if not (node_modules / src).is_file()]
    if missing:
        raise FileNotFoundError(
            f"{node_modules / missing[0]} is missing; run `npm install` at the repository root"
        )
    target.mkdir(parents=True, exist_ok=True)
    copied = []
    for name, src in FILES.items():
        destination = target / name
        shutil.copyfile(node_modules / src, destination)
        copied.append(destination)
    return copied


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--node-modules", type=Path, default=None, help="where npm installed")
    args = parser.parse_args(argv)
    node_modules = args.node_modules or default_node_modules()
    try:
        copied = copy(node_modules)
    except FileNotFoundError as exc:
        print(f"labkeeper assets: {exc}", file=sys.stderr)
        return 1
    for path in copied:
        print(f"labkeeper assets: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

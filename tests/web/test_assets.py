"""`python -m labkeeper.web.assets`: copies the pinned libraries out of node_modules/."""

from __future__ import annotations

import json
from pathlib import Path

from labkeeper.web import assets

ROOT = Path(__file__).resolve().parents[2]


def test_copies_every_vendored_file_and_names_a_missing_one(tmp_path):
    modules = tmp_path / "node_modules"
    target = tmp_path / "vendor"
    assert assets.main(["--node-modules", str(modules)]) == 1  # nothing installed yet
    for src in assets.FILES.values():
        (modules / src).parent.mkdir(parents=True, exist_ok=True)
        (modules / src).write_text(f"/* {src} */")
    copied = assets.copy(modules, target)
    assert sorted(p.name for p in copied) == sorted(assets.FILES)
    assert (target / "htmx.min.js").read_text() == "/* htmx.org/dist/htmx.min.js */"


def test_package_files_pin_versions_and_name_no_registry_host():
    package = json.loads((ROOT / "package.json").read_text())
    lock = (ROOT / "package-lock.json").read_text()
    for name, version in package["dependencies"].items():
        assert version[0].isdigit(), f"{name} must be pinned to an exact version"
        assert json.loads(lock)["packages"][f"node_modules/{name}"]["version"] == version
    assert "http" not in lock and "resolved" not in lock

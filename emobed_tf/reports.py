"""Writing a result as JSON plus a markdown twin (reports, comparisons, sweeps)."""

from __future__ import annotations

import json
import os


def write_json_and_markdown(folder: str, stem: str, obj: dict, markdown: str) -> None:
    """``folder/stem.json`` and ``folder/stem.md``, each written to a temp file and renamed."""
    os.makedirs(folder, exist_ok=True)
    for ext, text in (("json", json.dumps(obj, indent=1)), ("md", markdown)):
        path = os.path.join(folder, f"{stem}.{ext}")
        with open(path + ".tmp", "w") as fh:
            fh.write(text)
        os.replace(path + ".tmp", path)

"""The GPU session's verdict: ``python -m benchmarks.gpu_summary OUT_DIR`` reads the JSON files the session wrote
(``bench-256.json``, ``bench-512.json``, ``concurrency.json``, ``tool-server.json``, ``marigold.json``) and writes
``summary.json`` and ``summary.md``: every target of the GPU issue with its measured median, min–max, goal and
met / missed / not measured. A part that did not finish is reported as not measured, never guessed.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

# (label, file, path to a {"median", "min", "max"} ratio or a number, operator, goal); "*" in a path takes the
# file's one suite (sd15-256 / sd15-512 on the GPU, the tiny latent suite in the CPU dry run)
TARGETS: list[tuple[str, str, tuple[str, ...], str, float]] = [
    ("one round vs stock (fast path)", "bench-256.json", ("suites", "*", "ratios", "fast_round_speedup"), ">=", 8.0),
    ("one round vs stock (fast path)", "bench-512.json", ("suites", "*", "ratios", "fast_round_speedup"), ">=", 8.0),
    ("3-round corrected session in stock rounds", "bench-256.json",
     ("suites", "*", "ratios", "session3_in_baseline_rounds"), "<=", 0.35),
    ("3-round corrected session in stock rounds", "bench-512.json",
     ("suites", "*", "ratios", "session3_in_baseline_rounds"), "<=", 0.35),
    ("16 concurrent requests, throughput vs stock", "bench-256.json",
     ("suites", "*", "ratios", "throughput16_ratio"), ">=", 15.0),
    ("16 concurrent requests, throughput vs stock", "bench-512.json",
     ("suites", "*", "ratios", "throughput16_ratio"), ">=", 15.0),
    ("tool server: segment p95 at 16 clients / one client's p50", "tool-server.json",
     ("p95_concurrent_over_p50_single", "segment"), "<=", 3.0),
    ("tool server: refine p95 at 16 clients / one client's p50", "tool-server.json",
     ("p95_concurrent_over_p50_single", "refine"), "<=", 3.0),
    ("depth, ensemble 10 vs stock Marigold (its default batch_size 1)", "marigold.json",
     ("ratios", "ensemble10_speedup"), ">=", 3.0),
]


def _dig(document: Any, path: tuple[str, ...]) -> tuple[Any, list[str]]:
    """The value at ``path`` and the keys "*" resolved to."""
    chosen = []
    for key in path:
        if key == "*" and isinstance(document, dict) and len(document) == 1:
            key = next(iter(document))
            chosen.append(key)
        if not isinstance(document, dict) or key not in document:
            return None, chosen
        document = document[key]
    return document, chosen


def verdicts(out: Path) -> list[dict[str, Any]]:
    rows = []
    cache: dict[str, Any] = {}
    for label, file, path, op, goal in TARGETS:
        if file not in cache:
            source = out / file
            cache[file] = json.loads(source.read_text()) if source.exists() else None
        value, chosen = _dig(cache[file], path)
        row: dict[str, Any] = {"target": label + "".join(f", {c}" for c in chosen), "goal": f"{op} {goal:g}",
                               "file": file}
        if value is None:
            row.update(status="not measured")
        else:
            spread = value if isinstance(value, dict) else {"median": value, "min": value, "max": value}
            median = float(spread["median"])
            met = median >= goal if op == ">=" else median <= goal
            row.update(median=median, min=float(spread["min"]), max=float(spread["max"]),
                       status="met" if met else "missed")
        rows.append(row)
    return rows


def devices(out: Path) -> list[str]:
    """The devices the parts ran on, as their JSON files name them."""
    names = set()
    for file in ("bench-256.json", "bench-512.json", "concurrency.json", "marigold.json"):
        path = out / file
        if path.exists():
            document = json.loads(path.read_text())
            name = _dig(document, ("meta", "device"))[0] or document.get("device_name") or document.get("device")
            if name:
                names.add(str(name))
    return sorted(names)


def markdown(rows: list[dict[str, Any]], names: list[str]) -> str:
    lines = [f"Device: {', '.join(names) or 'unknown'}.", "", "| target | file | median [min–max] | goal | |",
             "|---|---|---|---|---|"]
    for r in rows:
        value = "–" if "median" not in r else f"{r['median']:.2f} [{r['min']:.2f}–{r['max']:.2f}]"
        lines.append(f"| {r['target']} | {r['file']} | {value} | {r['goal']} | {r['status']} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or not Path(args[0]).is_dir():
        raise SystemExit("usage: python -m benchmarks.gpu_summary OUT_DIR (the folder the session wrote)")
    out = Path(args[0])
    rows, names = verdicts(out), devices(out)
    (out / "summary.json").write_text(json.dumps({"devices": names, "targets": rows}, indent=1))
    (out / "summary.md").write_text(markdown(rows, names))
    print(markdown(rows, names), end="")
    return rows


if __name__ == "__main__":
    main()

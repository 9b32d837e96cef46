"""Table 5 of the paper at the default model's scale: the stage-3 ablations, each trained with several seeds
(``scripts/gpu_distill.sh`` with VARIANTS and SEEDS), judged by ``evaluate_world``. Prints per variant the
mean ± standard deviation over seeds of every judged figure beside the full method, and writes them as JSON.

python benchmarks/distill_ablations.py JUDGED_FOLDER --out results/distill_ablations.json
(JUDGED_FOLDER holds VARIANT_seedN.json files)
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

FIGURES = ("present", "color", "shape", "size", "direction", "speed")
COLUMNS = (*FIGURES, "exact", "clean clips", "stray", "I2V ≤ 8 px", "I2V nearer", "V2V")


def figures(result: dict) -> dict:
    """The judged figures of one run, in percent."""
    adherence, conditioning = result["adherence"], result["conditioning"]
    row = {name: adherence["model"][name] for name in FIGURES}
    row["exact"] = adherence["exact_object_count"]["model"]
    row["clean clips"] = adherence["clean_background"]["model"]["clips"]
    row["stray"] = adherence["clean_background"]["model"]["stray"]
    row["I2V ≤ 8 px"] = conditioning["i2v_start_within_8px"]
    row["I2V nearer"] = conditioning.get("i2v_nearer_input_than_mirrored")
    row["V2V"] = conditioning["v2v_direction_kept"]
    return {name: None if value is None else 100 * value for name, value in row.items()}


def summarise(folder: Path) -> dict:
    runs: dict[str, dict[str, dict]] = {}
    for path in sorted(folder.glob("*_seed*.json")):
        variant, seed = path.stem.rsplit("_seed", 1)
        runs.setdefault(variant, {})[seed] = figures(json.loads(path.read_text()))
    if not runs:
        raise SystemExit(f"distill_ablations: no VARIANT_seedN.json files in {folder}")
    summary = {}
    for variant, seeds in runs.items():
        stats = {}
        for column in COLUMNS:
            values = [row[column] for row in seeds.values() if row[column] is not None]
            stats[column] = {
                "mean": statistics.mean(values) if values else None,
                "sd": statistics.stdev(values) if len(values) > 1 else None,
            }
        summary[variant] = {"seeds": sorted(seeds), "figures": stats, "per_seed": seeds}
    return summary


def table(summary: dict) -> str:
    lines = ["| variant (seeds) | " + " | ".join(COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
    full = summary.get("full", {}).get("figures", {})
    for variant, entry in summary.items():
        cells = []
        for column in COLUMNS:
            stat = entry["figures"][column]
            cell = (
                "–"
                if stat["mean"] is None
                else f"{stat['mean']:.1f}" + (f" ± {stat['sd']:.1f}" if stat["sd"] is not None else "")
            )
            if variant != "full" and full.get(column, {}).get("mean") is not None and stat["mean"] is not None:
                cell += f" ({stat['mean'] - full[column]['mean']:+.1f})"
            cells.append(cell)
        lines.append(f"| {variant} ({len(entry['seeds'])}) | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--out", default="distill_ablations.json")
    args = parser.parse_args()
    summary = summarise(args.folder)
    print(table(summary))
    Path(args.out).write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()

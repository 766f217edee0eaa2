"""Split the shared half of the SQuAD 2.0 dev set by article into train/dev files.

    python benchmarks/squad2_split.py [SRC] [OUT_DIR] [--dev Normans,Packet_switching]

Whole articles go to one side, so no paragraph is seen in training and asked about in dev.
"""
import argparse
import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SRC = REPO.parent / "shared" / "data" / "squad2" / "squad2-dev-half-A.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("src", nargs="?", default=str(SRC))
    parser.add_argument("out", nargs="?", default="runs/squad2_split")
    parser.add_argument("--dev", default="Normans,Packet_switching",
                        help="comma-separated article titles that form the dev file")
    args = parser.parse_args()
    data = json.loads(Path(args.src).read_text())
    dev_titles = set(args.dev.split(","))
    unknown = dev_titles - {a["title"] for a in data["data"]}
    if unknown:
        raise SystemExit(f"error: no article titled {sorted(unknown)} in {args.src}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name, keep in (("train", lambda t: t not in dev_titles), ("dev", lambda t: t in dev_titles)):
        part = {"version": data.get("version", "v2.0"),
                "data": [a for a in data["data"] if keep(a["title"])]}
        n = sum(len(p["qas"]) for a in part["data"] for p in a["paragraphs"])
        (out / f"{name}.json").write_text(json.dumps(part))
        print(f"{out / (name + '.json')}: {len(part['data'])} articles, {n} questions")


if __name__ == "__main__":
    main()

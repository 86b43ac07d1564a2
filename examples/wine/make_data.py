"""Write scikit-learn's wine data set as a mongoexport file (Extended JSON Lines) with nested fields.

The documents are shaped the way a lab's MongoDB collection might hold them: measurements grouped
in sub-documents, the cultivar as a string label. Run once; the output is committed.
"""

import json
from pathlib import Path

from sklearn.datasets import load_wine

GROUPS = {
    "alcohol": ("alcohol",),
    "malic_acid": ("acidity", "malic_acid"),
    "ash": ("acidity", "ash"),
    "alcalinity_of_ash": ("acidity", "alcalinity_of_ash"),
    "magnesium": ("magnesium",),
    "total_phenols": ("phenols", "total"),
    "flavanoids": ("phenols", "flavanoids"),
    "nonflavanoid_phenols": ("phenols", "nonflavanoid"),
    "proanthocyanins": ("phenols", "proanthocyanins"),
    "color_intensity": ("color", "intensity"),
    "hue": ("color", "hue"),
    "od280/od315_of_diluted_wines": ("od280_od315",),
    "proline": ("proline",),
}


def main() -> None:
    wine = load_wine()
    out = Path(__file__).parent / "data" / "wine.jsonl"
    with out.open("w", encoding="utf-8") as stream:
        for index, (row, label) in enumerate(zip(wine.data, wine.target)):
            document: dict = {"_id": {"$oid": f"{index + 1:024x}"}}
            for name, value in zip(wine.feature_names, row):
                *parents, leaf = GROUPS[name]
                node = document
                for parent in parents:
                    node = node.setdefault(parent, {})
                node[leaf] = int(value) if name in ("magnesium", "proline") else float(value)
            document["cultivar"] = str(wine.target_names[label])
            stream.write(json.dumps(document) + "\n")


if __name__ == "__main__":
    main()

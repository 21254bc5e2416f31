"""Peak memory and time of reading a large KB in the real E-VQA JSON shape (issue 15).

Writes a synthetic KB (default 200,000 entries) in the schema of ``encyclopedic_kb_wiki.json``
(one JSON object ``url -> {title, section_titles, section_texts, image_urls,
image_reference_descriptions, image_section_indices, url}``, on a single line like the
released file), then reads it with :func:`region_rerank.eval.kb_readers.load_kb` in a fresh
child process and prints the child's peak RSS and wall time. The figures are measured on
each run, nothing is cached::

    python scripts/measure_kb_stream.py --entries 200000 --path /tmp/kb200k.json

Entry sizes follow the released KB on average (about 2M entries in ~15 GB): several
sections of a few hundred to a few thousand characters and a handful of image URLs.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import time
from pathlib import Path

WORDS = ("the", "of", "and", "in", "to", "a", "is", "was", "for", "on", "as", "by", "with", "from")


def _text(rng: random.Random, n_chars: int) -> str:
    out: list[str] = []
    size = 0
    while size < n_chars:
        word = rng.choice(WORDS) if rng.random() < 0.7 else f"w{rng.randrange(10**6)}"
        out.append(word)
        size += len(word) + 1
    return " ".join(out)


def generate(path: Path, entries: int, seed: int) -> None:
    """Write ``entries`` KB entries as one JSON object, one entry at a time."""
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("{")
        for i in range(entries):
            title = f"Entry {i} {_text(rng, 12)}"
            url = f"https://en.wikipedia.org/wiki/Entry_{i}"
            n_sec = rng.randint(2, 10)
            n_img = rng.randint(0, 10)
            value = {
                "title": title,
                "section_titles": [title] + [_text(rng, 15) for _ in range(n_sec - 1)],
                "section_texts": [_text(rng, rng.randint(100, 2000)) for _ in range(n_sec)],
                "image_urls": [
                    f"https://upload.wikimedia.org/wikipedia/commons/{i % 16:x}/{i % 256:02x}/"
                    f"Entry_{i}_{j}.jpg"
                    for j in range(n_img)
                ],
                "image_reference_descriptions": [_text(rng, 40) for _ in range(n_img)],
                "image_section_indices": [rng.randrange(n_sec) for _ in range(n_img)],
                "url": url,
            }
            fh.write(("" if i == 0 else ", ") + json.dumps(url) + ": " + json.dumps(value))
        fh.write("}")


def load(path: Path) -> None:
    """Child process: read the KB, print entries, seconds and peak RSS as JSON."""
    from region_rerank.eval.kb_readers import load_kb

    start = time.perf_counter()
    kb = load_kb(path, kb_format="evqa")
    seconds = time.perf_counter() - start
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"entries": len(kb), "seconds": seconds, "peak_rss_mib": peak_kib / 1024}))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=200_000)
    parser.add_argument("--path", type=Path, default=Path("/tmp/kb_stream_measure.json"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", action="store_true", help="reuse an existing file")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        load(args.path)
        return 0
    if not (args.keep and args.path.exists()):
        start = time.perf_counter()
        generate(args.path, args.entries, args.seed)
        print(f"generated {args.path} in {time.perf_counter() - start:.0f} s")
    size = args.path.stat().st_size
    cmd = [sys.executable, __file__, "--child", "--path", str(args.path)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    fig = json.loads(out.strip().splitlines()[-1])
    print(
        f"KB {size / 2**30:.2f} GiB, {fig['entries']} entries: read in {fig['seconds']:.1f} s, "
        f"peak RSS {fig['peak_rss_mib']:.0f} MiB (whole reading process)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

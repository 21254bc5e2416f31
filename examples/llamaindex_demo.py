"""region-rerank inside a LlamaIndex query engine, on the offline demo world.

What it does (offline, about 20-30 s on 2 CPU cores):

1. Generates a small demo world: 40 knowledge-base entities (a made-up name, an encyclopedic
   paragraph, a reference image each) and a handful of cluttered query scenes, each with a
   question about one object and its ground-truth box.
2. Indexes the entities as ``ImageNode``s in a ``VectorStoreIndex`` (``MockEmbedding`` and
   ``MockLLM``: no network, no API key) and retrieves the whole KB as the pool.
3. Re-ranks with ``RegionRerankPostprocessor`` inside a ``RetrieverQueryEngine``, using the
   embedded ``DemoScorer`` (real MiniLM text tower + small trained image tower).
4. Prints the rank of the right entity before (retriever) and after re-ranking, with the
   full image and with the crop, and saves the first query with its crop box drawn.

Which cropper, and why: an *oracle* cropper that returns each scene's ground-truth box
(``FakeCropper`` with scripted boxes, keyed by the query id carried by ``ImageQueryBundle``).
The oracle shows the mechanism the method relies on. Offline, ``cropper="proposal"`` (the
light learned policy shipped in the wheel, trained on the default demo world, whose scenes
differ from this example's) also runs; in production use ``cropper="grounding"`` or a
``VLMCropper``. Install: ``pip install "region-rerank[llamaindex,demo]"``.

Run: ``python examples/llamaindex_demo.py --out out/llamaindex_demo``.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Any

from llama_index.core import VectorStoreIndex
from llama_index.core.embeddings import MockEmbedding
from llama_index.core.llms import MockLLM
from llama_index.core.query_engine import RetrieverQueryEngine
from llama_index.core.schema import ImageNode, NodeWithScore
from llama_index.postprocessor.region_rerank import (
    DECISION_KEY,
    ImageQueryBundle,
    RegionRerankPostprocessor,
)
from llama_index.retrievers.region_rerank import RegionRetriever
from PIL import Image, ImageDraw

from region_rerank import CoordFrame, CroppedReranker, FullImageCropper
from region_rerank.demo.scorer import DemoScorer
from region_rerank.demo.world import make_world
from region_rerank.testing import FakeCropper


def load_world(
    out: Path, n_queries: int
) -> tuple[Path, list[dict[str, Any]], list[dict[str, Any]]]:
    """Generate (once) the demo world under ``out/world``; return its root, KB and queries."""
    root = out / "world"
    make_world(
        root, n_train=0, n_val=0, n_test=n_queries, n_entities=40, kb_images=1, distractors=(3, 3)
    )
    kb = [json.loads(line) for line in (root / "kb.jsonl").open()]
    queries = [json.loads(line) for line in (root / "test" / "queries.jsonl").open()]
    return root, kb, queries


def rank_of(entity_id: str, nodes: list[NodeWithScore]) -> int | None:
    """1-based rank of ``entity_id`` in ``nodes`` (``None`` when absent)."""
    ids = [n.node.node_id for n in nodes]
    return ids.index(entity_id) + 1 if entity_id in ids else None


def draw_box(image_path: Path, box: list[float] | None, out_path: Path) -> Path:
    """Save the query image with the crop box drawn in red."""
    image = Image.open(image_path).convert("RGB")
    if box is not None:
        ImageDraw.Draw(image).rectangle(box, outline=(255, 0, 0), width=3)
    image.save(out_path)
    return out_path


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("out/llamaindex_demo"))
    parser.add_argument("--n-queries", type=int, default=8)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    started = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)

    root, kb, queries = load_world(args.out, args.n_queries)
    nodes = [
        ImageNode(
            id_=rec["id"],
            text=rec["text"],
            image_path=str(root / rec["images"][0]),
            metadata={"title": rec["title"]},
        )
        for rec in kb
    ]
    index = VectorStoreIndex(nodes, embed_model=MockEmbedding(embed_dim=8))
    retriever = index.as_retriever(similarity_top_k=len(nodes))  # the whole KB is the pool

    scorer = DemoScorer()
    boxes = {q["id"]: q["box"] for q in queries}
    oracle = FakeCropper(lambda query: boxes[query.id], frame=CoordFrame.PIXELS)
    full_reranker = CroppedReranker(FullImageCropper(), scorer)
    crop_reranker = CroppedReranker(oracle, scorer, cache=full_reranker.cache)  # embed KB once
    full_image = RegionRerankPostprocessor(full_reranker, top_n=5)
    cropped = RegionRerankPostprocessor(crop_reranker, top_n=5)
    engine = RetrieverQueryEngine.from_args(retriever, llm=MockLLM(), node_postprocessors=[cropped])

    rows = []
    for q in queries:
        image_path = root / "test" / q["image"]
        bundle = ImageQueryBundle(q["question"], image_path=str(image_path), query_id=q["id"])
        positive = q["positives"][0]
        before = retriever.retrieve(bundle)
        after_full = full_image.postprocess_nodes(before, bundle)
        response = engine.query(bundle)  # retrieve -> RegionRerankPostprocessor -> MockLLM
        after_crop = list(response.source_nodes)
        rows.append(
            {
                "id": q["id"],
                "question": q["question"],
                "answer": positive,
                "rank_retriever": rank_of(positive, before),
                "rank_full_image": rank_of(positive, after_full),
                "rank_cropped": rank_of(positive, after_crop),
                "top5_retriever": [n.node.node_id for n in before[:5]],
                "top5_cropped": [n.node.node_id for n in after_crop],
                "decision": after_crop[0].node.metadata[DECISION_KEY],
            }
        )

    print(f"{'query':<11} {'answer':<8} {'retriever':>9} {'full img':>8} {'cropped':>8}  question")
    for r in rows:
        ranks = [r[k] or ">5" for k in ("rank_retriever", "rank_full_image", "rank_cropped")]
        print(
            f"{r['id']:<11} {r['answer']:<8} {ranks[0]!s:>9} {ranks[1]!s:>8} {ranks[2]!s:>8}  "
            f"{r['question']}"
        )
    hits = {
        k: sum(r[k] == 1 for r in rows)
        for k in ("rank_retriever", "rank_full_image", "rank_cropped")
    }
    print(f"top-1 hits out of {len(rows)}: {hits}")

    first = rows[0]
    print(f"\n{first['id']}: {first['question']!r}")
    print("  before (retriever):", first["top5_retriever"])
    print("  after  (cropped)  :", first["top5_cropped"])
    print("  crop decision     :", first["decision"])
    crop_png = draw_box(
        root / "test" / queries[0]["image"], first["decision"]["box"], args.out / "crop.png"
    )
    print(f"  query with the crop box drawn: {crop_png}")

    # Region-aware retrieval: the shipped light policy decides once, the index is searched
    # with the full image ("full") or with both the full image and the chosen view ("fused"),
    # and the hits are re-ranked with the same decision. No oracle here.
    policy = CroppedReranker("proposal", scorer, cache=full_reranker.cache)
    found = {}
    for mode in ("full", "fused"):
        search = RegionRetriever(nodes, policy, mode=mode, similarity_top_k=5, top_n=5)
        found[mode] = 0
        for q in queries:
            image_path = root / "test" / q["image"]
            bundle = ImageQueryBundle(q["question"], image_path=str(image_path), query_id=q["id"])
            found[mode] += rank_of(q["positives"][0], search.retrieve(bundle)) is not None
    print(
        f"answer among the first 5 search results, learned policy: {found['full']}/{len(rows)} "
        f"searching with the full image, {found['fused']}/{len(rows)} fused with its view"
    )

    summary = {"rows": rows, "top1_hits": hits, "search_top5": found, "crop_png": str(crop_png)}
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"done in {time.perf_counter() - started:.1f}s; summary in {args.out / 'summary.json'}")
    return summary


if __name__ == "__main__":
    main()

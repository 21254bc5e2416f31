"""Cold start: a fresh process to the first LlamaIndex re-ranking result, offline.

Imports LlamaIndex and the postprocessor, builds the offline components (the demo scorer
and the shipped light cropper), re-ranks five image nodes for one query and prints the
seconds from interpreter start to the first result (and the import share).

Run: ``python scripts/cold_start.py`` (several times; report the median).
"""

from __future__ import annotations

import time

START = time.perf_counter()

from llama_index.core.schema import ImageNode, NodeWithScore, TextNode  # noqa: E402
from llama_index.postprocessor.region_rerank import (  # noqa: E402
    ImageQueryBundle,
    RegionRerankPostprocessor,
)
from PIL import Image  # noqa: E402

from region_rerank import CroppedReranker  # noqa: E402

IMPORTED = time.perf_counter()
colours = [(220, 30, 30), (30, 30, 220), (30, 200, 30), (240, 200, 20), (90, 90, 90)]
nodes = [
    NodeWithScore(node=TextNode(text=f"entity {i}: a thing of colour {c}"), score=1.0 - i / 10)
    for i, c in enumerate(colours)
]
nodes[0] = NodeWithScore(node=ImageNode(text="a red bridge", image=None), score=0.9)
scene = Image.new("RGB", (224, 224), (30, 30, 220))
scene.paste((220, 30, 30), (20, 20, 100, 100))
post = RegionRerankPostprocessor(reranker=CroppedReranker("proposal", "demo"), top_n=3)
out = post.postprocess_nodes(nodes, query_bundle=ImageQueryBundle("what is the red thing?", scene))
DONE = time.perf_counter()
print(
    f"first result after {DONE - START:.2f} s (imports {IMPORTED - START:.2f} s); top: {len(out)}"
)

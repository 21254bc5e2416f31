"""Small files shaped like the released E-VQA / InfoSeek files, built at test time.

Every builder names the public source its schema was taken from (read, not copied); what
could not be verified against the released files themselves is said so. docs/datasets.md
lists the same sources.

E-VQA (google-research/google-research, ``encyclopedic_vqa/README.md``):
- the CSV fields and their meaning; ``answer`` alternatives from several annotators are
  joined by ``|``, the parts of a ``multi_answer`` answer by ``&&``; ``wikipedia_url`` is
  one URL, except on ``2_hop`` rows where it is the two consecutive URLs joined by ``|``
  (``evidence_section_id`` / ``evidence_section_title`` likewise).
- ``encyclopedic_vqa/evaluation_utils.py``: ``evaluate_example`` scores against each
  ``|`` alternative; ``multianswer_exact_match`` splits a reference on ``&&``.
- The KB: one JSON object ``wikipedia_url -> {title, section_titles, section_texts,
  image_urls, image_reference_descriptions, image_section_indices, url}``,
  ``section_titles[0] == title``.
- ``dataset_name`` values ``landmarks`` / ``inaturalist``: Go2Heart/EchoSight
  ``utils/test_utils.py`` ``get_image`` (and ChaoLinAViy/OMGM ``utils/utils.py``).
- GLDv2 ids are 16 hex characters stored as ``a/b/c/<id>.jpg``: cvdfoundation/google-landmark
  ``README.md``. iNaturalist 2021 image ids are integers with a ``file_name``
  (visipedia/inat_comp ``2021/README.md``); EchoSight maps them through
  ``{val,train}_id2name.json`` (``id -> file name`` under the iNaturalist folder).
- Column order: not verifiable (the CSVs are not in any public repository). ``OBSERVED_ORDER``
  is the order a third-party tool that rewrites E-VQA subsets uses (found through the code
  index, repository unnamed there); ``README_ORDER`` is the README's field order. The
  loaders read columns by name and are tested with both.

InfoSeek (open-vision-language/infoseek ``README.md`` and edchengg/infoseek_eval):
- ``infoseek_{split}.jsonl``: ``data_id, image_id, question, answer (list), answer_eval,
  data_split``; numerical ``answer_eval`` is ``[{"wikidata": x, "range": [lo, hi]}]``
  (``infoseek_eval.py`` comment in ``prepare_qid2example``).
- ``infoseek_{split}_withkb.jsonl``: ``data_id, entity_id, entity_text`` only (an OpenReview
  supplementary ``utils/infoseek/preprocess_order`` note; TIGER-AI-Lab/UniIR
  ``src/data/preprocessing/infoseek_data_preprocessor.py`` reads ``data_id`` / ``entity_id``).
- ``infoseek_val_qtype.jsonl``: ``data_id, question_type`` (``infoseek_eval.py``
  ``prepare_qid2example``; UniIR). The case of the values is not verified.
- Wiki6M (``Wiki6M_ver_1_0.jsonl[.gz]``): JSON Lines with ``wikidata_id, wikipedia_title,
  wikipedia_content, wikipedia_image_url`` (UniIR ``load_oven_wiki6m_file_as_dict``).
- OVEN images: ``oven_images/<first two digits of the number>/<image_id><ext>``, ext as in the
  source dataset (``.jpg``, ``.JPEG`` for ImageNet): edchengg/oven_eval
  ``image_downloads/merge_oven_images.py``; EchoSight / OMGM also look for flat
  ``<image_id>.jpg`` / ``.JPEG``.

Published pools:
- EchoSight ``test/test_reranker.py``: ``{data_id: {"retrieved_entries": [url],
  "retrieval_similarities": [float], "reranked_entries": [url], ...}}``, ``data_id`` =
  ``E-VQA_{i}`` with ``i`` the row index after keeping question types templated /
  automatic / multi_answer / infoseek (``utils/test_utils.py`` ``load_csv_data``), or the
  ``data_id`` column for InfoSeek rows.
- OMGM ``test/step1_img2sum.py``: ``{data_id: {"retrieved_entities": [{"url", "title"}],
  "retrieval_similarities": [float]}}``, same keys.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

README_ORDER = (
    "question",
    "answer",
    "dataset_image_ids",
    "dataset_name",
    "dataset_category_id",
    "question_type",
    "wikipedia_url",
    "wikipedia_title",
    "evidence",
    "evidence_section_id",
    "evidence_section_title",
    "encyclopedic_vqa_split",
    "question_original",
    "wikipedia_url_used_in_train",
)
OBSERVED_ORDER = (
    "wikipedia_title",
    "wikipedia_url",
    "question_original",
    "question",
    "question_type",
    "answer",
    "evidence",
    "evidence_section_id",
    "evidence_section_title",
    "dataset_name",
    "dataset_category_id",
    "wikipedia_url_used_in_train",
    "encyclopedic_vqa_split",
    "dataset_image_ids",
)

WIKI = "https://en.wikipedia.org/wiki/"
EIFFEL, GUSTAVE, MONARCH, OAK, BIGBEN = (
    WIKI + "Eiffel_Tower",
    WIKI + "Gustave_Eiffel",
    WIKI + "Monarch_butterfly",
    WIKI + "Quercus_robur",
    WIKI + "Big_Ben",
)
GLD_A, GLD_B, GLD_C = "0123456789abcdef", "fedcba9876543210", "a1b2c3d4e5f60718"
INAT_A, INAT_B = "2686843", "2686844"
INAT_FILES = {
    INAT_A: "val/04205_Animalia_Arthropoda_Insecta_Lepidoptera_Nymphalidae_Danaus_plexippus/"
    "3f1c8a52-6d2e-4c55-9b1f-0d6f3c2e8a11.jpg",
    INAT_B: "val/06114_Plantae_Tracheophyta_Magnoliopsida_Fagales_Fagaceae_Quercus_robur/"
    "9b7e2c10-55aa-4f0e-8d3b-2c1e7f6a9d42.jpg",
}


def _row(**kw: str) -> dict[str, str]:
    row = dict.fromkeys(README_ORDER, "")
    row.update(wikipedia_url_used_in_train="True", encyclopedic_vqa_split="test")
    row.update(kw)
    return row


#: Data rows of a test.csv: one per question type, the 2_hop row in the middle so that the
#: index after filtering differs from the raw row index.
EVQA_ROWS: list[dict[str, str]] = [
    _row(
        question="In which year was this tower finished?",
        answer="1889|in 1889",
        dataset_image_ids=f"{GLD_A}|{GLD_B}",
        dataset_name="landmarks",
        dataset_category_id="185325",
        question_type="templated",
        wikipedia_url=EIFFEL,
        wikipedia_title="Eiffel Tower",
        evidence="The tower was completed in 1889,\nin time for the World's Fair.",
        evidence_section_id="2",
        evidence_section_title="History",
        question_original="In which year was the Eiffel Tower finished?",
    ),
    _row(
        question="What do the larvae of this insect eat?",
        answer="milkweed",
        dataset_image_ids=f"{INAT_A}|{INAT_B}",
        dataset_name="inaturalist",
        dataset_category_id="4205",
        question_type="automatic",
        wikipedia_url=MONARCH,
        wikipedia_title="Monarch butterfly",
        question_original="What do the larvae of the monarch butterfly eat?",
        wikipedia_url_used_in_train="False",
    ),
    _row(
        question="Who designed the structure in this picture?",
        answer="Gustave Eiffel",
        dataset_image_ids=GLD_A,
        dataset_name="landmarks",
        dataset_category_id="185325",
        question_type="2_hop",
        wikipedia_url=f"{EIFFEL}|{GUSTAVE}",
        wikipedia_title="Eiffel Tower|Gustave Eiffel",
        evidence_section_id="2|0",
        evidence_section_title="History|Gustave Eiffel",
    ),
    _row(
        question="Which animals eat the acorns of this tree?",
        answer="jays&&pigeons&&squirrels|jays&&squirrels",
        dataset_image_ids=INAT_B,
        dataset_name="inaturalist",
        dataset_category_id="6114",
        question_type="multi_answer",
        wikipedia_url=OAK,
        wikipedia_title="Quercus robur",
    ),
    _row(
        question="How tall is the clock tower shown here?",
        answer="96 m",
        dataset_image_ids=GLD_C,
        dataset_name="landmarks",
        dataset_category_id="47378",
        question_type="templated",
        wikipedia_url=BIGBEN,
        wikipedia_title="Big Ben",
        evidence="The tower is 96 m tall.",
        evidence_section_id="1",
        evidence_section_title="Structure",
    ),
]


def write_evqa_csv(path: Path, rows: list[dict[str, str]], order: tuple[str, ...]) -> Path:
    """Write rows with a header in ``order`` (csv module quoting, like pandas' to_csv)."""
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(order))
        writer.writeheader()
        for row in rows:
            writer.writerow({k: row.get(k, "") for k in order})
    return path


def kb_entry(title: str, sections: list[tuple[str, str]], images: int = 2) -> dict[str, Any]:
    """One KB value in the E-VQA schema (``section_titles[0] == title``)."""
    name = title.replace(" ", "_")
    urls = [
        f"https://upload.wikimedia.org/wikipedia/commons/{i}/{i}{i}/{name}_{i}.jpg"
        for i in range(images)
    ]
    return {
        "title": title,
        "section_titles": [t for t, _ in sections],
        "section_texts": [s for _, s in sections],
        "image_urls": urls,
        "image_reference_descriptions": [f"{title}, view {i}" for i in range(images)],
        "image_section_indices": [0] * images,
        "url": WIKI + title.replace(" ", "_"),
    }


LONG_SECTION = "The wrought-iron lattice tower is named after the engineer. " * 12  # 720 chars
EVQA_KB: dict[str, dict[str, Any]] = {
    EIFFEL: kb_entry(
        "Eiffel Tower",
        [
            ("Eiffel Tower", "The Eiffel Tower is a lattice tower in Paris."),
            ("History", LONG_SECTION),
            ("Design", "It was designed by the company of Gustave Eiffel."),
            ("Tourism", "It is the most visited monument with an entrance fee."),
        ],
    ),
    GUSTAVE: kb_entry(
        "Gustave Eiffel",
        [("Gustave Eiffel", "A French civil engineer."), ("Early life", "Born in Dijon.")],
        images=1,
    ),
    MONARCH: kb_entry(
        "Monarch butterfly",
        [
            ("Monarch butterfly", "A milkweed butterfly."),
            ("Taxonomy", ""),
            ("Description", "Wingspan 8.9-10.2 cm."),
            ("Life cycle", "Larvae feed on milkweed."),
            ("Migration", "It migrates to Mexico."),
        ],
    ),
    OAK: kb_entry("Quercus robur", [("Quercus robur", "The pedunculate oak.")], images=0),
    BIGBEN: kb_entry(
        "Big Ben", [("Big Ben", "The nickname of the Great Bell."), ("Structure", "")]
    ),
}


def write_evqa_kb(path: Path, kb: dict[str, dict[str, Any]] = EVQA_KB) -> Path:
    """The KB as one JSON object on one line (``json.dump`` defaults)."""
    path.write_text(json.dumps(kb), encoding="utf-8")
    return path


def tiny_jpeg(color: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (8, 6), color).save(buf, format="JPEG")
    return buf.getvalue()


@dataclass
class EVQAFiles:
    root: Path
    csv: Path
    kb: Path
    images: Path
    id_map: Path
    image_paths: dict[str, Path] = field(default_factory=dict)


def make_evqa(root: Path, order: tuple[str, ...] = OBSERVED_ORDER) -> EVQAFiles:
    """test.csv + KB JSON + images in the released layouts: GLDv2 ``landmarks/a/b/c/<id>.jpg``,
    iNaturalist 2021 ``inaturalist/<file_name>`` with ``val_id2name.json``."""
    root.mkdir(parents=True, exist_ok=True)
    images = root / "images"
    paths = {
        gld: images / "landmarks" / gld[0] / gld[1] / gld[2] / f"{gld}.jpg"
        for gld in (GLD_A, GLD_B, GLD_C)
    }
    paths.update({i: images / "inaturalist" / name for i, name in INAT_FILES.items()})
    for p in paths.values():
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(tiny_jpeg())
    id_map = root / "val_id2name.json"
    id_map.write_text(json.dumps(INAT_FILES), encoding="utf-8")
    return EVQAFiles(
        root=root,
        csv=write_evqa_csv(root / "test.csv", EVQA_ROWS, order),
        kb=write_evqa_kb(root / "encyclopedic_kb_wiki.json"),
        images=images,
        id_map=id_map,
        image_paths=paths,
    )


# ---------------------------------------------------------------- InfoSeek

OVEN_A, OVEN_B, OVEN_C, OVEN_D = "oven_04990048", "oven_01963180", "oven_05101234", "oven_00057589"
INFOSEEK_VAL: list[dict[str, Any]] = [
    {
        "data_id": "infoseek_val_00000000",
        "image_id": OVEN_A,
        "question": "What is the primary use of this machine?",
        "answer": ["work"],
        "answer_eval": ["work", "mechanical work"],
        "data_split": "val_unseen_question",
    },
    {
        "data_id": "infoseek_val_00000001",
        "image_id": OVEN_B,
        "question": "Which place is this animal endemic to?",
        "answer": ["People's Republic of China"],
        "answer_eval": ["cn", "People's Republic of China", "China", "PRC", "\U0001f1e8\U0001f1f3"],
        "data_split": "val_unseen_entity",
    },
    {
        "data_id": "infoseek_val_00000002",
        "image_id": OVEN_C,
        "question": "What is the maximum speed of this aircraft?",
        "answer": ["950"],
        "answer_eval": [{"wikidata": 950.0, "range": [855.0, 1045.0]}],
        "data_split": "val_unseen_entity",
    },
    {
        # no *_withkb record (like every infoseek_test.jsonl record)
        "data_id": "infoseek_val_00000003",
        "image_id": OVEN_D,
        "question": "What is this place named after?",
        "answer": ["Spain"],
        "answer_eval": ["Kingdom of Spain", "ESP", "ES", "Spain"],
        "data_split": "val_unseen_question",
    },
]
INFOSEEK_WITHKB = [
    {"data_id": "infoseek_val_00000000", "entity_id": "Q178185", "entity_text": "Heat engine"},
    {"data_id": "infoseek_val_00000001", "entity_id": "Q30574", "entity_text": "Giant panda"},
    {"data_id": "infoseek_val_00000002", "entity_id": "Q208196", "entity_text": "Boeing 747"},
]
INFOSEEK_QTYPE = [
    {"data_id": "infoseek_val_00000000", "question_type": "String"},
    {"data_id": "infoseek_val_00000001", "question_type": "String"},
    {"data_id": "infoseek_val_00000002", "question_type": "Numerical"},
    {"data_id": "infoseek_val_00000003", "question_type": "String"},
]
WIKI6M = [
    {
        "wikidata_id": "Q178185",
        "wikipedia_title": "Heat engine",
        "wikipedia_content": "A heat engine is a system that converts heat to mechanical energy. "
        * 10,
        "wikipedia_image_url": "https://upload.wikimedia.org/wikipedia/commons/2/25/Heat_engine.png",
    },
    {
        "wikidata_id": "Q30574",
        "wikipedia_title": "Giant panda",
        "wikipedia_content": "The giant panda is a bear species endemic to China.",
        "wikipedia_image_url": "https://upload.wikimedia.org/wikipedia/commons/0/0f/Panda.jpg",
    },
    {
        "wikidata_id": "Q208196",
        "wikipedia_title": "Boeing 747",
        "wikipedia_content": "The Boeing 747 is a wide-body airliner.",
        "wikipedia_image_url": "",
    },
    {
        "wikidata_id": "Q90",
        "wikipedia_title": "Paris",
        "wikipedia_content": "Paris is the capital of France.",
        "wikipedia_image_url": "https://upload.wikimedia.org/wikipedia/commons/4/4b/Paris.jpg",
    },
]


def write_jsonl(path: Path, rows: list[dict[str, Any]], gz: bool = False) -> Path:
    text = "".join(json.dumps(r) + "\n" for r in rows)
    if gz:
        with gzip.open(path, "wt", encoding="utf-8") as fh:
            fh.write(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


@dataclass
class InfoSeekFiles:
    root: Path
    questions: Path
    withkb: Path
    qtype: Path
    wiki6m: Path
    kb100k: Path
    images: Path
    image_paths: dict[str, Path] = field(default_factory=dict)


def make_infoseek(root: Path, gz_kb: bool = False) -> InfoSeekFiles:
    """infoseek_val.jsonl + _withkb + _qtype, Wiki6M (JSONL, optionally .gz), a KB in the
    E-VQA schema keyed by Wikipedia URL (the EchoSight 100K KB's schema), and OVEN images
    under two-digit subfolders with ``.jpg`` / ``.JPEG``."""
    root.mkdir(parents=True, exist_ok=True)
    images = root / "oven_images"
    exts = {OVEN_A: ".jpg", OVEN_B: ".JPEG", OVEN_C: ".jpg", OVEN_D: ".jpg"}
    paths = {}
    for oid, ext in exts.items():
        p = images / oid.split("_")[-1][:2] / f"{oid}{ext}"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(tiny_jpeg((30, 30, 200)))
        paths[oid] = p
    kb100k = {
        WIKI + r["wikipedia_title"].replace(" ", "_"): kb_entry(
            r["wikipedia_title"], [(r["wikipedia_title"], r["wikipedia_content"])], images=1
        )
        for r in WIKI6M
    }
    wiki_name = "Wiki6M_ver_1_0.jsonl" + (".gz" if gz_kb else "")
    return InfoSeekFiles(
        root=root,
        questions=write_jsonl(root / "infoseek_val.jsonl", INFOSEEK_VAL),
        withkb=write_jsonl(root / "infoseek_val_withkb.jsonl", INFOSEEK_WITHKB),
        qtype=write_jsonl(root / "infoseek_val_qtype.jsonl", INFOSEEK_QTYPE),
        wiki6m=write_jsonl(root / wiki_name, WIKI6M, gz=gz_kb),
        kb100k=write_evqa_kb(root / "infoseek_100k_wiki.json", kb100k),
        images=images,
        image_paths=paths,
    )


# ---------------------------------------------------------------- published pools


def echosight_pools(entries: dict[str, list[tuple[str, float]]], reranked: bool = False) -> str:
    """A retrieval result file as EchoSight's ``--save_result`` writes it (indent 4)."""
    out: dict[str, Any] = {}
    for qid, pool in entries.items():
        out[qid] = {
            "retrieved_entries": [u for u, _ in pool],
            "retrieval_similarities": [s for _, s in pool],
        }
        if reranked:
            out[qid]["reranked_entries"] = [u for u, _ in reversed(pool)]
            out[qid]["reranked_sections"] = ["# Wiki Article: ...\n## Section Title: ..."]
    return json.dumps(out, indent=4)


def omgm_pools(entries: dict[str, list[tuple[str, float]]]) -> str:
    """A step-1 result file as OMGM writes it (indent 4)."""
    out = {
        qid: {
            "retrieved_entities": [{"url": u, "title": u.rsplit("/", 1)[-1]} for u, _ in pool],
            "retrieval_similarities": [s for _, s in pool],
        }
        for qid, pool in entries.items()
    }
    return json.dumps(out, indent=4)

"""Each adapter extra, installed alone into a clean virtual environment, imports its adapter.

The environment gets the region-rerank wheel without dependencies plus exactly the
requirements the wheel declares for the extra, resolved from the local wheelhouse that
`make wheelhouse` downloads at setup time (tests themselves never touch the network).
"""

from __future__ import annotations

import os
import re
import subprocess
import zipfile
from pathlib import Path

import pytest

from tests.wheels import ROOT, build_wheel, fresh_venv

WHEELHOUSE = Path(os.environ.get("REGION_RERANK_WHEELHOUSE", ROOT / ".wheelhouse"))

pytestmark = [
    pytest.mark.venv,
    pytest.mark.skipif(
        not WHEELHOUSE.is_dir(),
        reason=f"needs the offline wheelhouse {WHEELHOUSE} (run `make wheelhouse`; CI does)",
    ),
]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_wheel(tmp_path_factory.mktemp("wheel"))


def extra_requirements(wheel: Path, extra: str) -> list[str]:
    with zipfile.ZipFile(wheel) as zf:
        name = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        metadata = zf.read(name).decode()
    reqs = []
    for line in metadata.splitlines():
        m = re.match(r"Requires-Dist: (.+?); extra == \"(\w+)\"", line)
        if m and m.group(2) == extra:
            reqs.append(m.group(1).strip())
    return reqs


@pytest.mark.parametrize(
    "extra,code",
    [
        (
            "llamaindex",
            "from llama_index.postprocessor.region_rerank import RegionRerankPostprocessor\n"
            "from llama_index.core.postprocessor.types import BaseNodePostprocessor\n"
            "assert issubclass(RegionRerankPostprocessor, BaseNodePostprocessor)\n",
        ),
        (
            "langchain",
            "from langchain_region_rerank import RegionRerankCompressor, RegionRerankRetriever\n"
            "from langchain_core.documents import BaseDocumentCompressor\n"
            "assert issubclass(RegionRerankCompressor, BaseDocumentCompressor)\n",
        ),
    ],
)
def test_extra_installs_alone_and_imports_its_adapter(
    wheel: Path, tmp_path: Path, extra: str, code: str
) -> None:
    reqs = extra_requirements(wheel, extra)
    assert reqs, f"the wheel declares no requirements for [{extra}]"
    py = fresh_venv(tmp_path / "venv")
    pip = [py, "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, "--no-deps", str(wheel)], check=True, capture_output=True, timeout=300)
    done = subprocess.run(
        [*pip, "--no-index", "--find-links", str(WHEELHOUSE), *reqs],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    check = code + "import sys\nassert 'torch' not in sys.modules, 'adapter import pulled torch'\n"
    out = subprocess.run([py, "-c", check], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]

"""deploy/image_size.py reads the Dockerfile and .dockerignore as Docker does (the parts it relies on)."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "deploy"))
import image_size  # noqa: E402


def _rules(tmp_path: Path, text: str):
    (tmp_path / ".dockerignore").write_text(text)
    return image_size.ignore_rules(tmp_path / ".dockerignore")


def test_dockerignore_patterns_match_as_in_docker(tmp_path):
    rules = _rules(tmp_path, "# comment\n**/__pycache__\n*.egg-info\nmodels/big\n/build\nlogs/*.txt\n!logs/keep.txt\n")
    assert image_size.ignored("service/runtime/__pycache__/a.pyc", rules)
    assert image_size.ignored("__pycache__/a.pyc", rules)
    assert image_size.ignored("zooserve.egg-info/PKG-INFO", rules)
    assert not image_size.ignored("service/x.egg-info/PKG-INFO", rules)  # `*` does not cross a `/`
    assert image_size.ignored("models/big/3/model.onnx", rules)  # a directory takes what is under it
    assert not image_size.ignored("models/big-int8/3/model.onnx", rules)
    assert image_size.ignored("build/lib/x.py", rules)
    assert image_size.ignored("logs/a.txt", rules) and not image_size.ignored("logs/keep.txt", rules)


def test_the_serve_build_stage_is_found_with_its_install_line():
    stages = image_size.stages(ROOT / "Dockerfile")
    assert {"serve-build", "serve", "serve-gpu", "train"} <= set(stages)
    runs = [rest for word, rest in stages["serve-build"] if word == "RUN"]
    assert any("pip install --no-compile -c /tmp/constraints.txt ." in r for r in runs)
    assert image_size.env_of(stages["serve-build"])["PIP_NO_CACHE_DIR"] == "1"


def test_the_image_carries_the_default_repository_and_not_models_extra():
    rows, total = image_size.model_rows(image_size.stages(ROOT / "Dockerfile")["serve"],
                                        image_size.ignore_rules(ROOT / ".dockerignore"))
    copied = {folder for folder, _, kept in rows if kept}
    assert "models/tweets-transformer-int8/3" in copied and "models/fashion-resnet/1" in copied
    assert all(kept for _, _, kept in rows) and not any(f.startswith("models-extra/") for f, _, _ in rows)
    assert image_size.context_files("models-extra", image_size.ignore_rules(ROOT / ".dockerignore")) == []
    assert total == sum(size for _, size, kept in rows if kept)

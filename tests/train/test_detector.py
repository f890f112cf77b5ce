"""The detector's dataset step (training itself is too slow for a unit test)."""

from __future__ import annotations

from train.detector import build_dataset


def test_build_dataset_writes_disjoint_labelled_splits(tmp_path) -> None:
    work_dir = tmp_path / "data"
    (work_dir / "train" / "images").mkdir(parents=True)
    (work_dir / "train" / "images" / "stale.jpg").write_bytes(b"")  # from an earlier, bigger run
    data_yaml = build_dataset(work_dir, n_train=3, n_val=2, width=128, height=72, seed=0)
    for split, count in (("train", 3), ("val", 2)):
        assert len(list((work_dir / split / "images").glob("*.jpg"))) == count
        assert len(list((work_dir / split / "labels").glob("*.txt"))) == count
    assert (work_dir / "train" / "images" / "000000.jpg").read_bytes() != (work_dir / "val" / "images" / "000000.jpg").read_bytes()
    text = data_yaml.read_text()
    assert f"train: {work_dir / 'train' / 'images'}" in text and f"val: {work_dir / 'val' / 'images'}" in text

"""`lstm-ae reconstruct` on image files and folders, with a small real Keras model file."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image

from lstm_ae import cli
from lstm_ae.serving.reconstruct import figure_names


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("model") / "model.keras"
    keras.utils.set_random_seed(0)
    keras.Sequential([keras.Input((32, 96)), keras.layers.Dense(96, activation="sigmoid")]).save(path)
    return path


def save(path: Path, pixels: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return path


def test_a_folder_gives_side_by_side_pngs_and_errors_worst_first(
    model_file: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    rng = np.random.default_rng(0)
    folder = tmp_path / "images"
    save(folder / "noise.png", rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
    save(folder / "grey.jpg", np.full((48, 64, 3), 128, dtype=np.uint8))  # 64 wide, 48 high: resized
    save(folder / "white.PNG", np.full((32, 32, 3), 255, dtype=np.uint8))
    (folder / "notes.txt").write_text("not an image")
    out = tmp_path / "out"
    with caplog.at_level(logging.INFO):
        assert (
            cli.main(["reconstruct", str(folder), "--model", str(model_file), "--out", str(out), "-q"]) == 0
        )
    assert "grey.jpg: 64x48, resized to 32x32" in caplog.text
    rows = list(csv.DictReader((out / "errors.csv").open()))
    assert [row["rank"] for row in rows] == ["1", "2", "3"]
    errors = [float(row["mse"]) for row in rows]
    assert errors == sorted(errors, reverse=True)
    assert {Path(row["file"]).name for row in rows} == {"noise.png", "grey.jpg", "white.PNG"}
    assert {row["original_size"] for row in rows} == {"32x32", "64x48"}
    for row in rows:
        with Image.open(out / row["figure"]) as picture:
            assert picture.size == (32 * 4 * 2 + 2 * 4, 32 * 4) and picture.mode == "RGB"
    # The left half of each figure is the input, enlarged.
    with Image.open(out / "white.png") as picture:
        assert np.all(np.asarray(picture)[:, :128] == 255)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: d.mkdir(), "no PNG or JPEG images in"),
        (
            lambda d: (d.mkdir(), (d / "broken.png").write_bytes(b"not a png")),
            "broken.png: not a readable PNG or JPEG",
        ),
    ],
    ids=["empty-folder", "broken-file"],
)
def test_bad_inputs_fail_in_one_line(make, message: str, model_file: Path, tmp_path: Path, capsys) -> None:
    folder = tmp_path / "images"
    make(folder)
    assert (
        cli.main(["reconstruct", str(folder), "--model", str(model_file), "--out", str(tmp_path / "out")])
        == 1
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and message in err[-1]
    assert not (tmp_path / "out" / "errors.csv").exists()


def test_a_missing_model_names_the_train_stage(tmp_path: Path, capsys) -> None:
    image = save(tmp_path / "a.png", np.zeros((32, 32, 3), dtype=np.uint8))
    assert cli.main(["reconstruct", str(image), "--model", str(tmp_path / "none.keras")]) == 1
    assert "run `dvc repro train`" in capsys.readouterr().err


def test_figure_names_stay_unique() -> None:
    files = [Path("a/cat.png"), Path("b/cat.jpg"), Path("dog.png")]
    assert figure_names(files) == ["cat-0.png", "cat-1.png", "dog.png"]

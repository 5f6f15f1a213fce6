"""`lstm-ae reconstruct` on image files and folders, with small real Keras model files: one of
the autoencoder's fixed 32x32 size, and an untrained restorer, which takes any size and returns
its input exactly. Each image gives a side-by-side figure and its reconstruction alone in
restored/, both PNG."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lstm_ae import cli
from lstm_ae.serving import reconstruct
from lstm_ae.serving.reconstruct import batches, figure_names
from lstm_ae.tracking import registry, store
from tests.helpers.tiny_models import save_fixed_size_model, save_restorer


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_fixed_size_model(tmp_path_factory.mktemp("model") / "model.keras")


@pytest.fixture(scope="module")
def restorer_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_restorer(tmp_path_factory.mktemp("restorer") / "model.keras")


def save(path: Path, pixels: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return path


def read(path: Path) -> np.ndarray:
    with Image.open(path) as picture:
        assert picture.format == "PNG" and picture.mode == "RGB"
        return np.asarray(picture)


def no_temporary_files(out: Path) -> bool:
    """Every write went through atomic_path, whose temporary names start with a dot."""
    return not [path for path in out.rglob(".*")]


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
        assert cli.main(["reconstruct", str(folder), "--model", str(model_file), "--out", str(out)]) == 0
    assert "grey.jpg: 64x48, resized to 32x32 (the autoencoder's input size" in caplog.text
    rows = list(csv.DictReader((out / "errors.csv").open()))
    assert [row["rank"] for row in rows] == ["1", "2", "3"]
    errors = [float(row["mse"]) for row in rows]
    assert errors == sorted(errors, reverse=True)
    assert {Path(row["file"]).name for row in rows} == {"noise.png", "grey.jpg", "white.PNG"}
    assert {row["original_size"] for row in rows} == {"32x32", "64x48"}
    assert {row["model_size"] for row in rows} == {"32x32"}
    for row in rows:
        with Image.open(out / row["figure"]) as picture:
            assert picture.size == (32 * 4 * 2 + 2 * 4, 32 * 4) and picture.mode == "RGB"
    # The left half of each figure is the input, enlarged.
    with Image.open(out / "white.png") as picture:
        assert np.all(np.asarray(picture)[:, :128] == 255)
    # Each reconstruction alone, at the size the autoencoder made it, named like its figure.
    assert sorted(p.name for p in (out / "restored").iterdir()) == ["grey.png", "noise.png", "white.png"]
    for row in rows:
        assert read(out / "restored" / row["figure"]).shape == (32, 32, 3)
    assert no_temporary_files(out)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: d.mkdir(), "no PNG or JPEG images in"),
        (
            lambda d: (d.mkdir(), (d / "broken.png").write_bytes(b"not a png")),
            "broken.png: not a readable PNG or JPEG",
        ),
        (
            lambda d: (
                save(d / "a-good.png", np.zeros((32, 32, 3), dtype=np.uint8)),
                (d / "b-broken.png").write_bytes(b"not a png"),
            ),
            "b-broken.png: not a readable PNG or JPEG",
        ),
    ],
    ids=["empty-folder", "broken-file", "broken-after-good"],
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
    assert not (tmp_path / "out").exists()  # every file is read before anything is written


def test_a_missing_model_names_the_train_stage(tmp_path: Path, capsys) -> None:
    image = save(tmp_path / "a.png", np.zeros((32, 32, 3), dtype=np.uint8))
    assert cli.main(["reconstruct", str(image), "--model", str(tmp_path / "none.keras")]) == 1
    assert "run `dvc repro train`" in capsys.readouterr().err


def test_figure_names_stay_unique() -> None:
    files = [Path("a/cat.png"), Path("b/cat.jpg"), Path("dog.png")]
    assert figure_names(files) == ["cat-0.png", "cat-1.png", "dog.png"]


def halves(figure: Path, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """The original and the reconstruction of a side-by-side figure, back at their own size."""
    with Image.open(figure) as picture:
        pixels = np.asarray(picture)
    scale = pixels.shape[0] // height
    assert pixels.shape == (height * scale, (2 * width + 2) * scale, 3)
    left, right = pixels[:, : width * scale], pixels[:, (width + 2) * scale :]
    return left[::scale, ::scale], right[::scale, ::scale]


def test_a_restorer_restores_a_photo_at_its_own_size(
    restorer_file: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    photo = np.random.default_rng(1).integers(0, 256, (48, 64, 3), dtype=np.uint8)  # 64 wide, 48 high
    image = save(tmp_path / "photo.png", photo)
    out = tmp_path / "out"
    with caplog.at_level(logging.INFO):
        assert (
            cli.main(["reconstruct", str(image), "--model", str(restorer_file), "--out", str(out), "-q"]) == 0
        )
    assert "resized" not in caplog.text
    [row] = csv.DictReader((out / "errors.csv").open())
    assert (row["original_size"], row["model_size"], float(row["mse"])) == ("64x48", "64x48", 0.0)
    original, restored = halves(out / "photo.png", 64, 48)
    np.testing.assert_array_equal(original, photo)
    np.testing.assert_array_equal(restored, photo)  # untrained: the input, at the input's size
    np.testing.assert_array_equal(read(out / "restored" / "photo.png"), photo)


def test_a_restorer_keeps_each_size_of_a_mixed_folder(restorer_file: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    sizes = {"a-wide": (48, 64), "b-small": (5, 3), "c-square": (32, 32), "d-wide": (48, 64)}
    photos = {name: rng.integers(0, 256, (*hw, 3), dtype=np.uint8) for name, hw in sizes.items()}
    for name, photo in photos.items():
        save(tmp_path / "images" / f"{name}.png", photo)
    rows = reconstruct.run([tmp_path / "images"], str(restorer_file), tmp_path / "out", progress=False)
    assert {Path(row["file"]).stem: row["model_size"] for row in rows} == {
        name: f"{w}x{h}" for name, (h, w) in sizes.items()
    }
    for name, (height, width) in sizes.items():
        _, restored = halves(tmp_path / "out" / f"{name}.png", width, height)
        np.testing.assert_array_equal(restored, photos[name])
        np.testing.assert_array_equal(read(tmp_path / "out" / "restored" / f"{name}.png"), photos[name])


def test_a_photo_larger_than_a_tile_is_restored_whole(restorer_file: Path, tmp_path: Path) -> None:
    """400x450 is more than one 384-pixel tile each way: the stitched tiles cover every pixel
    (the untrained restorer returns its input, so any pixel missed or misplaced would show)."""
    photo = np.random.default_rng(4).integers(0, 256, (400, 450, 3), dtype=np.uint8)
    image = save(tmp_path / "big.jpg", photo)
    [row] = reconstruct.run([image], str(restorer_file), tmp_path / "out", progress=False)
    assert (row["model_size"], row["figure"], float(row["mse"])) == ("450x400", "big.png", 0.0)
    loaded = np.asarray(Image.open(image).convert("RGB"))  # JPEG changed the pixels a little
    np.testing.assert_array_equal(read(tmp_path / "out" / "restored" / "big.png"), loaded)
    assert read(tmp_path / "out" / "big.png").shape == (400, 2 * 450 + 2, 3)  # not enlarged
    assert no_temporary_files(tmp_path / "out")


def test_batches_hold_one_size_and_bounded_pixels_in_the_files_order() -> None:
    sizes = [(4, 6), (2, 2), (4, 6), (1, 1), (4, 6), (2, 2)]
    assert batches(sizes, max_pixels=48) == [[0, 2], [4], [1, 5], [3]]
    assert batches([(100, 100)] * 2, max_pixels=10) == [[0], [1]]  # one image at least


def test_a_served_restorer_reconstructs_at_its_own_size(
    restorer_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An MLflow model URI (a saved model folder here, as models:/ would download) keeps the size too:
    the command asks the served model's Keras model which size it takes."""
    monkeypatch.setattr(store, "use_project_store", lambda: None)  # no store needed for a folder
    registry.save_reconstruction_model(restorer_file, tmp_path / "served")
    photo = np.random.default_rng(3).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    image = save(tmp_path / "photo.png", photo)
    [row] = reconstruct.run([image], (tmp_path / "served").as_uri(), tmp_path / "out", progress=False)
    assert row["model_size"] == "64x48"
    np.testing.assert_array_equal(halves(tmp_path / "out" / "photo.png", 64, 48)[1], photo)

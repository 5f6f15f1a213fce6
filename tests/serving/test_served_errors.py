"""`mlflow models serve` of our model answers every bad request with HTTP 400 and the project's
one-line reason, nothing else: no stack trace, no path of the server. A request over the pixel
limit is refused from its shape, and the server goes on answering.

One server for the module (starting it imports TensorFlow: tens of seconds), serving the
autoencoder's stand-in, whose fixed 32x32 size gives every kind of bad request.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from lstm_ae.tracking import registry
from tests.helpers.servers import model_server, post_json
from tests.helpers.tiny_models import save_fixed_size_model

GOOD = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3)).tolist()


def refusal(message: str) -> dict:
    """The whole body of a 400 answer: MLflow's error fields around the project's message."""
    return {
        "error_code": "BAD_REQUEST",
        "message": message,
        "sqlstate": "KAM00",
        "error_class": "INVALID_PARAMETER_VALUE",
    }


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The /invocations URL of a served model folder, as `mlflow models serve -m models/served`."""
    root = tmp_path_factory.mktemp("served")
    registry.save_reconstruction_model(save_fixed_size_model(root / "model.keras"), root / "served")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    path = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"  # MLflow runs uvicorn from PATH
    env.update(PATH=path, TF_CPP_MIN_LOG_LEVEL="2", MLFLOW_DISABLE_TELEMETRY="true")
    with model_server(str(root / "served"), root, env, root / "server.log") as base:
        yield f"{base}/invocations"


def image(height: int = 32, width: int = 32, value: object = 0, channels: int = 3) -> list:
    return [[[value] * channels] * width] * height


WRONG_SIZE = (
    "expected images of shape (N, 32, 32, 3), the autoencoder's size, got (1, 28, 28, 3); "
    "resize them to 32x32, or use a restorer (model.family restorer), which takes any size"
)
BAD_REQUESTS = {
    "wrong-size": (
        {"inputs": [image(28, 28)]},
        WRONG_SIZE,
    ),
    "wrong-size-as-instances": (
        {"instances": [image(28, 28)]},
        WRONG_SIZE,
    ),
    "four-channels": (
        {"inputs": [image(channels=4)]},
        "expected images of shape (N, 32, 32, 3), got (1, 32, 32, 4)",
    ),
    "grey-no-channels": (
        {"inputs": [[[0] * 32] * 32]},
        "expected images of shape (N, 32, 32, 3), got (1, 32, 32)",
    ),
    "integers-over-255": (
        {"inputs": [image(value=300)]},
        "integer pixels must be 0-255, got 300..300",
    ),
    "floats-over-1": (
        {"inputs": [image(value=2.5)]},
        (
            "float pixels must be finite and in [0, 1], got 2.5..2.5; "
            "divide 0-255 values by 255 or send them as integers"
        ),
    ),
    "nan": (
        {"inputs": [image(value=float("nan"))]},
        "float pixels must be finite and in [0, 1], got 3,072 NaN or infinite value(s)",
    ),
    "strings": (
        {"inputs": [image(value="a")]},
        "pixels must be integers 0-255 or floats in [0, 1], got dtype <U1",
    ),
    "nulls": (
        {"inputs": [image(value=None)]},
        "pixels must be integers 0-255 or floats in [0, 1], got dtype object",
    ),
    "a-string": (
        {"inputs": "cat.png"},
        "expected images of shape (N, 32, 32, 3), got ()",
    ),
    "empty-batch": (
        {"inputs": []},
        "expected images of shape (N, 32, 32, 3), got (0,)",
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize(("body", "message"), BAD_REQUESTS.values(), ids=BAD_REQUESTS.keys())
def test_a_bad_request_gets_400_and_the_reason_alone(server: str, body: dict, message: str) -> None:
    assert post_json(server, body) == (400, refusal(message))


@pytest.mark.slow
def test_images_of_several_sizes_are_refused_by_mlflow_before_the_model(server: str) -> None:
    """MLflow makes one array of the request before the model sees it, and refuses lists of unequal
    lengths itself: its own one-line reason, still 400 and without a trace."""
    status, answer = post_json(server, {"inputs": [image(32, 32), image(28, 28)]})
    assert status == 400 and set(answer) == {"error_code", "message", "sqlstate", "error_class"}
    assert answer["message"].startswith("Invalid input. setting an array element with a sequence.")
    assert "\n" not in answer["message"]


@pytest.mark.slow
def test_a_request_over_the_pixel_limit_is_refused_and_the_server_goes_on(server: str) -> None:
    """1,025 images of 32x32 (1,049,600 pixels; 1,024 is the limit, 12 MB of JSON): refused from the
    array's shape, and the next requests, in either format, are answered as before."""
    status, answer = post_json(server, {"inputs": [image()] * 1025})
    assert (status, answer) == (
        400,
        refusal(
            "a request may hold at most 1,048,576 pixels (e.g. one 1024x1024 image or 1,024 of 32x32), "
            "got 1,049,600 in shape (1025, 32, 32, 3); send fewer or smaller images per request"
        ),
    )
    for body in ({"inputs": GOOD}, {"instances": GOOD}):
        status, answer = post_json(server, body)
        assert status == 200, answer
        recon = np.asarray(answer["predictions"]["reconstruction"])
        assert recon.shape == (2, 32, 32, 3) and 0 <= recon.min() <= recon.max() <= 1
        assert len(answer["predictions"]["mse"]) == 2

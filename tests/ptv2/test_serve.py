"""``ptv2 serve`` as a real process on 127.0.0.1: concurrent requests of different tasks come
back equal to offline predictions, are merged into fewer batches than requests (the /health
counters), and bad requests get a 4xx with a message."""
import json
import os
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.ptv2.test_multitask_inference import artifacts, data  # noqa: F401  (fixtures)

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(artifacts, tmp_path_factory):  # noqa: F811
    port = _free_port()
    log = tmp_path_factory.mktemp("serve") / "server.log"
    cmd = [sys.executable, "-m", "ptv2_ds.cli.main", "serve",
           *[f"--artifact={a}" for a in artifacts.values()], "--host", "127.0.0.1",
           "--port", str(port), "--max-batch", "16", "--max-wait-ms", "400",
           "--max-items", "8", "--max-chars", "2000", "--device", "cpu"]
    env = {**os.environ, "DS_ACCELERATOR": "cpu", "HF_HUB_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false"}
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            if proc.poll() is not None:
                pytest.fail(f"ptv2 serve exited with {proc.returncode}:\n{log.read_text()}")
            try:
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"ptv2 serve did not come up:\n{log.read_text()}")
            time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


REQUESTS = [
    [{"task": "sst2", "sentence": "the movie was great fun"}],
    [{"task": "conll04", "tokens": ["John", "Smith", "lives", "in", "Boston", "."]},
     {"task": "sst2", "sentence": "the plot was bad and boring"}],
    [{"task": "squad_v2", "id": "q1", "question": "Who ruled Normandy?",
      "context": "The Normans ruled Normandy in the tenth century ."}],
    [{"task": "conll04", "tokens": ["Paris"]}],
    [{"task": "sst2", "sentence": "a story of love"},
     {"task": "squad_v2", "question": "When?", "context": "It was in 1066 that it fell ."},
     {"task": "conll04", "tokens": ["The", "actors", "were", "good"]}],
    [{"task": "sst2", "sentence": "not what it is"}],
    [{"task": "conll04", "tokens": ["Maybe", "yes", "no"]}],
    [{"task": "sst2", "sentence": "boring film"}, {"task": "sst2", "sentence": "great"}],
]


def _offline(artifacts, bodies):  # noqa: F811
    """What the predictor computes in-process for the same requests' records (a record's
    default QA id is its position in its request)."""
    from ptv2_ds.serving import MultiTaskPredictor

    predictor = MultiTaskPredictor(list(artifacts.values()))
    items = [predictor.parse(r, f"item {i}", i) for body in bodies for i, r in enumerate(body)]
    return [predictor.render(name, p, ex)
            for (name, ex), p in zip(items, predictor.predict(items, batch_size=4))]


def _same(got: dict, want: dict) -> None:
    assert set(got) == set(want) and got["task"] == want["task"]
    for key, value in want.items():
        if key in ("scores", "null_score_diff") and value is not None:
            assert got[key] == pytest.approx(value, abs=1e-4)
        else:
            assert got[key] == value, key


def test_concurrent_mixed_requests_are_batched_and_equal_offline(server, artifacts):  # noqa
    tasks = httpx.get(server + "/tasks").json()
    by_name = {t["task"]: t for t in tasks}
    assert set(by_name) == {"sst2", "conll04", "squad_v2"}
    assert by_name["sst2"]["labels"] == ["0", "1"] and by_name["squad_v2"]["labels"] == []
    assert by_name["conll04"]["labels"][0] == "O" and "tokens" in by_name["conll04"]["fields"]
    before = httpx.get(server + "/health").json()

    def post(body):
        return httpx.post(server + "/predict", json=body, timeout=120)

    with ThreadPoolExecutor(len(REQUESTS)) as pool:
        responses = list(pool.map(post, REQUESTS))
    assert [r.status_code for r in responses] == [200] * len(REQUESTS)
    got = [row for r in responses for row in r.json()]
    want = _offline(artifacts, REQUESTS)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        _same(g, w)
    after = httpx.get(server + "/health").json()
    requests = after["requests"] - before["requests"]
    batches = after["batches"] - before["batches"]
    assert requests == len(REQUESTS)
    assert after["examples"] - before["examples"] == len(got)
    assert 1 <= batches < requests            # concurrent requests were merged
    assert after["mixed_forward_passes"] > before["mixed_forward_passes"]


@pytest.mark.parametrize("body,status,message", [
    ([{"task": "mnli", "sentence": "x"}], 422, "item 0: unknown task 'mnli'"),
    ([{"task": "sst2", "sentence": "ok"}, {"sentence": "x"}], 422, "item 1: missing field 'task'"),
    ([{"task": "sst2", "text": "x"}], 422, "missing field 'sentence' for task sst2"),
    ([{"task": "conll04", "tokens": []}], 422, "field 'tokens'"),
    ([{"task": "squad_v2", "question": "Who?", "context": 3}], 422, "field 'context'"),
    ({"task": "sst2", "sentence": "not a list"}, 422, "list"),
    ([{"task": "sst2", "sentence": "x"}] * 9, 413, "--max-items 8"),
    ([{"task": "sst2", "sentence": "x" * 2001}], 413, "--max-chars 2000"),
    (["just a string"], 422, "dict"),
])
def test_bad_requests_get_a_4xx_with_a_message(server, body, status, message):
    r = httpx.post(server + "/predict", json=body, timeout=60)
    assert r.status_code == status, r.text
    assert message in json.dumps(r.json())
    # and the server keeps answering
    ok = httpx.post(server + "/predict", json=[{"task": "sst2", "sentence": "fine"}], timeout=60)
    assert ok.status_code == 200 and ok.json()[0]["label"] in ("0", "1")


def test_malformed_json_and_empty_lists(server):
    r = httpx.post(server + "/predict", content=b"[{", timeout=30,
                   headers={"content-type": "application/json"})
    assert r.status_code == 422 and "JSON" in r.text
    assert httpx.post(server + "/predict", json=[], timeout=30).json() == []
    assert httpx.get(server + "/openapi.json").json()["paths"]["/predict"]["post"]

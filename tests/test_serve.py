"""serve: the HTTP API of a real server on 127.0.0.1, run in this process with the shipped
model (every bad request, the answers equal to `predict --json`'s, many clients at once),
and once through the command line (start-up, the warning off loopback, SIGTERM)."""

import contextlib
import http.client
import io
import json
import math
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import types
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mnist_digits import classifier, model_files, serve
from mnist_digits.pictures import NOT_AN_IMAGE
from conftest import HEALTH, SCRIPT, SHIPPED, missing, our_stderr_lines, run_main, running_server



@pytest.fixture(scope="module")
def model(shipped_classifier):
    return shipped_classifier  # what serve runs: model.tflite on LiteRT


@pytest.fixture(scope="module")
def server(model, shipped_gate):
    with running_server(model, shipped_gate) as server:
        yield server


def request(server, method, path, body=None, headers=None, timeout=10):
    """(status, headers, body) of one request on a fresh connection."""
    connection = http.client.HTTPConnection("127.0.0.1", server.server_port, timeout=timeout)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.headers, response.read()
    finally:
        connection.close()


def raw_request(server, data, timeout=10):
    """(status, JSON body) of bytes sent as they are, read until the server closes."""
    with socket.create_connection(("127.0.0.1", server.server_port), timeout=timeout) as sock:
        sock.sendall(data)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


def post(server, body, content_type="image/png"):
    status, _, answer = request(server, "POST", "/predict", body, {"Content-Type": content_type})
    return status, json.loads(answer)


def assert_still_serving(server):
    status, _, body = request(server, "GET", "/healthz")
    assert (status, json.loads(body)) == (200, HEALTH)


def png(array):
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "PNG")
    return buffer.getvalue()


def pixels_json(array):
    return json.dumps({"pixels": array.tolist()}).encode()


@pytest.fixture(scope="module")
def digits(test_digits):
    """The first 100 real test digits (uint8, light on dark) and their labels."""
    return test_digits


@pytest.fixture(scope="module")
def pictures(tmp_path_factory, digits):
    """Image files as people send them: enlarged, dark on light, PNG and JPEG, one with two
    digits side by side."""
    x, _ = digits
    folder = tmp_path_factory.mktemp("pictures")
    big = lambda digit, size=200: Image.fromarray(255 - digit).resize((size, size), Image.BICUBIC)
    big(x[0]).save(folder / "seven.png")
    big(x[1]).convert("RGB").save(folder / "two.jpg", quality=90)
    big(x[2], 90).save(folder / "one.bmp")
    big(x[3], 120).save(folder / "zero.gif")
    Image.fromarray(255 - np.hstack([x[4], x[5]])).resize((280, 140)).save(folder / "pair.png")
    return [folder / name for name in ["seven.png", "two.jpg", "one.bmp", "zero.gif", "pair.png"]]


# --- The endpoints -------------------------------------------------------------------------

def test_page_and_health(server):
    status, headers, page = request(server, "GET", "/")
    assert status == 200 and headers["Content-Type"] == "text/html; charset=utf-8"
    page = page.decode()
    for element in ["canvas", "clear", "digit", "bars", "status"]:
        assert f'id="{element}"' in page
    assert "bar-${d}" in page and "Draw a digit" in page and "touch-action: none" in page
    assert 'name="viewport"' in page
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page), "fetches from another host"
    assert request(server, "GET", "/?from=bookmark")[2].decode() == page

    status, headers, body = request(server, "HEAD", "/")
    assert (status, body, int(headers["Content-Length"])) == (200, b"", len(page.encode()))
    assert_still_serving(server)


def test_predict_answers_as_predict_json_does(server, pictures, capsys):
    status, out, err = run_main(capsys, "predict", "--json", "--model-dir", SHIPPED, *pictures)
    assert status == 0, err
    expected = {}
    for line in out:
        answer = json.loads(line)
        expected[answer.pop("file")] = answer
    for path in pictures:
        kind = {".jpg": "jpeg", ".bmp": "bmp", ".gif": "gif"}.get(path.suffix, "png")
        assert post(server, path.read_bytes(), f"image/{kind}") == (200, expected[str(path)])
    pair = expected[str(pictures[-1])]  # the picture with two digits
    assert (pair["number"], pair["digits"], len(pair["digit_probabilities"])) == ("41", [4, 1], 2)
    # What serves the request does not depend on the Content-Type an image comes with.
    assert post(server, pictures[0].read_bytes(), "application/octet-stream")[1] == \
        expected[str(pictures[0])]


def test_json_pixels_answer_as_the_same_png(server, digits):
    x, y = digits
    status, answer = post(server, pixels_json(x[0]), "application/json")
    assert status == 200 and answer["digit"] == y[0]
    assert set(answer) == {"number", "digit", "not_a_digit", "closest_digit", "probability",
                           "probabilities"}
    assert answer["not_a_digit"] is False and answer["closest_digit"] == answer["digit"]
    assert answer["number"] == str(y[0])
    assert len(answer["probabilities"]) == 10
    assert answer["probability"] == max(answer["probabilities"])
    assert post(server, png(x[0])) == (200, answer)
    # JSON is recognised by its first character when the Content-Type does not say so.
    assert post(server, b"\n  " + pixels_json(x[0]), "text/plain") == (200, answer)
    assert post(server, pixels_json(x[0]), "Application/JSON; charset=utf-8") == (200, answer)


def test_a_picture_with_no_digit_is_answered_not_a_digit(server, capsys):
    x = SHIPPED.parent / "samples" / "x.png"
    status, answer = post(server, x.read_bytes())
    assert status == 200 and set(answer) == {"number", "digit", "not_a_digit", "closest_digit",
                                             "probability", "probabilities"}
    assert (answer["number"], answer["digit"], answer["not_a_digit"]) == (None, None, True)
    assert answer["probabilities"][answer["closest_digit"]] == answer["probability"]
    _, out, _ = run_main(capsys, "predict", "--json", "--model-dir", SHIPPED, x)
    assert json.loads(out[0]) == {"file": str(x), **answer}


# --- Bad requests: a 4xx with a JSON error, and the server goes on -----------------------

def predict_error(capsys, tmp_path, data):
    """The words `predict` prints for a file holding these bytes (after "FILE: ")."""
    path = tmp_path / "picture.png"
    path.write_bytes(data)
    status, _, err = run_main(capsys, "predict", "--model-dir", SHIPPED, path)
    assert status == 1 and len(err) == 1
    return err[0].removeprefix(f"error: {path}: ")


BLANK = "no digit found (the image is blank)"


@pytest.mark.parametrize("data, words", [
    (b"\x89PNG\r\n\x1a\n garbage", NOT_AN_IMAGE), (bytes(range(256)) * 10, NOT_AN_IMAGE),
    (png(np.zeros((280, 280), np.uint8)), BLANK), (png(np.full((50, 80), 255, np.uint8)), BLANK),
], ids=["broken-png", "garbage", "blank-black", "blank-white"])
def test_unreadable_and_blank_images_as_predict_says(server, capsys, tmp_path, data, words):
    assert predict_error(capsys, tmp_path, data) == words
    assert post(server, data) == (400, {"error": words})
    assert_still_serving(server)


def test_an_empty_body_is_named(server):
    """As `curl --data-binary @missing.png` sends when the file is missing."""
    assert post(server, b"") == (400, {"error": "the body is empty: send an image file's bytes "
                                                "(e.g. curl --data-binary @digit.png) or JSON "
                                                "pixels"})
    assert_still_serving(server)


ROW = [0] * 28
BAD_JSON = {
    "not-json": (b'{"pixels": [[0, 0', "not JSON"),
    "not-utf8": (b"{\xff\xfe}", "not JSON"),
    "deep": (b'{"pixels": ' + b"[" * 100_000, "not JSON"),
    "no-pixels": (json.dumps({"pixel": [ROW] * 28}), "28 rows of 28"),
    "a-list": (json.dumps([[ROW] * 28]), "28 rows of 28"),
    "27-rows": (json.dumps({"pixels": [ROW] * 27}), "28 rows of 28"),
    "ragged": (json.dumps({"pixels": [ROW] * 27 + [ROW[:27]]}), "28 rows of 28"),
    "flat": (json.dumps({"pixels": ROW * 28}), "28 rows of 28"),
    "256": (json.dumps({"pixels": [ROW] * 27 + [ROW[:27] + [256]]}), "from 0 to 255"),
    "negative": (json.dumps({"pixels": [[-1] + ROW[1:]] + [ROW] * 27}), "from 0 to 255"),
    "nan": (json.dumps({"pixels": [[float("nan")] + ROW[1:]] + [ROW] * 27}), "from 0 to 255"),
    "huge": (json.dumps({"pixels": [[10 ** 400] + ROW[1:]] + [ROW] * 27}), "from 0 to 255"),
    "strings": (json.dumps({"pixels": [["0"] * 28] * 28}), "from 0 to 255"),
    "booleans": (json.dumps({"pixels": [[True] * 28] * 28}), "from 0 to 255"),
    "blank": (json.dumps({"pixels": [ROW] * 28}), "no digit found (the image is blank)"),
}


@pytest.mark.parametrize("name", BAD_JSON)
def test_bad_json(server, name):
    body, words = BAD_JSON[name]
    body = body.encode() if isinstance(body, str) else body
    status, answer = post(server, body, "application/json")
    assert status == 400 and words in answer["error"], answer
    if "rows" in words:
        assert answer["error"] == 'expected JSON {"pixels": 28 rows of 28 numbers from 0 to 255}'
    assert_still_serving(server)


@pytest.mark.parametrize("method, path, status, allow", [
    ("GET", "/nothing-here", 404, None),
    ("POST", "/nothing-here", 404, None),
    ("GET", "/../README.md", 404, None),
    ("GET", "/%2e%2e/README.md", 404, None),
    ("GET", "/mnist_digit_recognition.py", 404, None),
    ("GET", f"/{model_files.DEFAULT_MODEL_DIR}/metadata.json", 404, None),
    ("GET", "//etc/passwd", 404, None),
    ("GET", "/predict", 405, "POST"),
    ("PUT", "/predict", 405, "POST"),
    ("DELETE", "/predict", 405, "POST"),
    ("PATCH", "/predict", 405, "POST"),
    ("POST", "/", 405, "GET, HEAD"),
    ("DELETE", "/healthz", 405, "GET, HEAD"),
])
def test_unknown_paths_and_wrong_methods(server, method, path, status, allow):
    got, headers, body = request(server, method, path, b"x" * 100)
    assert got == status and headers["Allow"] == allow
    assert headers["Content-Type"] == "application/json"
    route = path.replace("//", "/")  # http.server reads //etc/passwd as /etc/passwd
    expected = f"no such page: {route}" if status == 404 else f"{method} is not allowed on {path}"
    assert json.loads(body) == {"error": expected}
    assert_still_serving(server)


def test_a_body_over_1_mb_is_refused_before_it_is_read(server):
    # The answer comes as soon as the headers are in, before any of the body is sent.
    with socket.create_connection(("127.0.0.1", server.server_port), timeout=10) as sock:
        sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
                     b"Content-Length: 2000000\r\n\r\n")
        start, head = time.monotonic(), b""
        while b"\r\n\r\n" not in head:
            head += sock.recv(65536)
        assert time.monotonic() - start < 3 and head.split()[1] == b"413"
    # The server then reads the rest and drops it: a client that sends all of its body before
    # it reads (http.client, requests) gets the answer too, not a reset connection.
    status, _, body = request(server, "POST", "/predict", bytes(5_000_000),
                              {"Content-Type": "image/png"})
    assert status == 413 and "1,000,000 bytes" in json.loads(body)["error"]
    assert_still_serving(server)


NO_LENGTH = "a POST needs a Content-Length"


@pytest.mark.parametrize("data, status, error", [
    (b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n\r\n", 411, NO_LENGTH),
    (b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 12abc\r\n\r\n", 411, NO_LENGTH),
    (b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: \xb2\r\n\r\n", 411, NO_LENGTH),
    (b"POST /predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 411,
     NO_LENGTH),
    (b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
     b"Content-Length: 4\r\n\r\n--b\n", 400,
     "send the image file's bytes as the body, not a form (e.g. curl --data-binary @digit.png)"),
    (b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 101 + b"\r\n", 431, "Too many headers"),
    (b"BREW /predict HTTP/1.1\r\nHost: x\r\n\r\n", 405, "BREW is not allowed on /predict"),
    (b"BREW /nowhere HTTP/1.1\r\nHost: x\r\n\r\n", 404, "no such page: /nowhere"),
], ids=["no-length", "bad-length", "latin1-digit-length", "chunked", "form",
        "too-many-headers", "unknown-method", "unknown-method-and-path"])
def test_malformed_requests(server, data, status, error):
    assert raw_request(server, data) == (status, {"error": error})
    assert_still_serving(server)


def test_port_in_use_and_out_of_range(server, model, capsys):
    answer = classifier.picture_answerer(model)
    with pytest.raises(ValueError, match="cannot listen on 127.0.0.1"):
        serve.make_server(answer, "127.0.0.1", server.server_port, HEALTH)
    with pytest.raises(ValueError, match="from 0 to 65535"):
        serve.make_server(answer, "127.0.0.1", 70000, HEALTH)
    status, _, err = run_main(capsys, "serve", "--port", "70000", "--model-dir", SHIPPED)
    assert status == 2 and len(err) == 1 and "--port" in err[0] and "from 0 to 65535" in err[0]


def test_loopback():
    assert serve.is_loopback("127.0.0.1") and serve.is_loopback("localhost") and serve.is_loopback("::1")
    assert not serve.is_loopback("0.0.0.0") and not serve.is_loopback("")


# --- Many clients at once ------------------------------------------------------------------

def test_many_clients_at_once(server, digits):
    x, _ = digits
    bodies = [(png(digit), "image/png") for digit in x] + \
             [(pixels_json(digit), "application/json") for digit in x]
    expected = [post(server, *body) for body in bodies]  # one at a time
    assert all(status == 200 for status, _ in expected)
    assert expected[:100] == expected[100:]  # a PNG and its pixels as JSON: the same answer
    assert np.mean([answer["digit"] for _, answer in expected[:100]] == digits[1]) >= 0.97

    def send(i):
        start = time.monotonic()
        answer = post(server, *bodies[i % len(bodies)])
        return i, answer, time.monotonic() - start

    start = time.monotonic()
    with ThreadPoolExecutor(16) as pool:
        # Every 7th index walks PNGs and JSON in an order unlike the threads' own.
        results = list(pool.map(send, [(7 * i) % 500 for i in range(500)]))
    seconds = time.monotonic() - start
    assert sorted(i for i, _, _ in results) == list(range(500))  # none lost
    wrong = [i for i, answer, _ in results if answer != expected[i % len(bodies)]]
    assert not wrong, f"{len(wrong)} wrong answers, e.g. request {wrong[0]}"
    assert seconds < 60

    latencies = np.array([latency for _, _, latency in results]) * 1000
    figures = {"requests": 500, "clients": 16, "seconds": round(seconds, 2),
               "requests_per_second": round(500 / seconds, 1),
               "p50_ms": round(float(np.percentile(latencies, 50)), 1),
               "p99_ms": round(float(np.percentile(latencies, 99)), 1),
               "cpus": os.cpu_count(), "date": time.strftime("%Y-%m-%d")}
    print(f"\nserve load: {json.dumps(figures)}")
    if os.environ.get("MDR_LOAD_FIGURES"):
        with open(os.environ["MDR_LOAD_FIGURES"], "a") as file:
            file.write(json.dumps(figures) + "\n")
    assert_still_serving(server)


def test_a_silent_connection_keeps_no_one_waiting(server):
    """A browser opens connections ahead of need and may leave one silent; a client may stop
    halfway through its request. Neither holds up anyone else's answer."""
    with socket.create_connection(("127.0.0.1", server.server_port)) as silent, \
            socket.create_connection(("127.0.0.1", server.server_port)) as halfway:
        halfway.sendall(b"POST /predict HTTP/1.1\r\nContent-Length: 1000\r\n\r\n{")
        start = time.monotonic()
        assert_still_serving(server)
        assert post(server, pixels_json(np.zeros((28, 28), np.uint8)))[0] == 400  # blank
        assert time.monotonic() - start < 5
        silent.setblocking(False)
        with pytest.raises(BlockingIOError):  # still open, waiting for a request
            silent.recv(1, socket.MSG_PEEK)
        halfway.shutdown(socket.SHUT_WR)  # the body ends short: refused, as any bad body
        assert halfway.recv(100).startswith(b"HTTP/1.0 400 ")


def connection_threads():
    return [thread for thread in threading.enumerate() if thread.name.startswith("connection-")]


def test_connection_threads_are_reused_and_end_when_idle(monkeypatch):
    """A thread left idle by one connection takes the next (starting a thread costs about as
    much CPU as a network reading a picture); after a burst, the idle threads end."""
    monkeypatch.setattr(serve, "IDLE_THREAD_SECONDS", 0.5)
    before = set(connection_threads())
    server = serve.make_server(lambda grey: {"ink": float(grey.sum())}, "127.0.0.1", 0, HEALTH)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        for _ in range(20):  # one after another (the next may come before a thread is idle)
            assert_still_serving(server)
        assert server.connection_threads < 5  # not 20
        started = server.connection_threads
        burst = [socket.create_connection(("127.0.0.1", server.server_port)) for _ in range(8)]
        deadline = time.monotonic() + 10
        while server.connection_threads < 8 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert 8 <= server.connection_threads <= started + 8  # a silent connection holds one
        for connection in burst:
            connection.close()
        deadline = time.monotonic() + 10
        while set(connection_threads()) - before and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not set(connection_threads()) - before, "idle connection threads did not end"
        assert_still_serving(server)  # a new thread for the next connection
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


# --- A process per core ---------------------------------------------------------------------

SERVE_IN_TWO_PROCESSES = """
import os, signal
from mnist_digits import serve
signal.signal(signal.SIGTERM, signal.default_int_handler)  # as the script does
server = serve.make_server(lambda grey: {"pid": os.getpid()}, "127.0.0.1", 0, {})
print(server.server_port, flush=True)
serve.serve_forever(server, processes=2)
print("stopped", flush=True)
"""


def process_state(pid):
    """(state, parent) of a running process, from Linux's /proc; None once it has ended (a
    zombie, state Z, has ended: only its exit status is left for its parent to read)."""
    with contextlib.suppress(OSError):
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        if fields[0] != "Z":
            return fields[0], int(fields[1])
    return None


def children_of(pid):
    """The running processes whose parent is `pid`."""
    return [int(path.name) for path in Path("/proc").glob("[0-9]*")
            if (process_state(path.name) or (None, None))[1] == pid]


@contextlib.contextmanager
def two_process_server():
    """serve.serve_forever(processes=2) in a new process (a fork of pytest would copy its
    threads); yields the process and its port. Its stdout and stderr are left to read."""
    process = subprocess.Popen([sys.executable, "-c", SERVE_IN_TWO_PROCESSES], text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=SCRIPT.parent)
    try:
        port = int(process.stdout.readline())
        answering_pids(port, requests=1)  # serving, so forked
        yield process, port
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate()


def answering_pids(port, requests=200):
    blank = json.dumps({"pixels": [[0] * 28] * 28})

    def pid(_):
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            connection.request("POST", "/predict", blank, {"Content-Type": "application/json"})
            return json.loads(connection.getresponse().read())["pid"]
        finally:
            connection.close()
    with ThreadPoolExecutor(8) as pool:
        return set(pool.map(pid, range(requests)))


def port_is_closed(port):
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) != 0


def ends_within(seconds, pid):
    deadline = time.monotonic() + seconds
    while process_state(pid) is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    return process_state(pid) is None


linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="several processes: Linux only")


@linux_only
def test_two_processes_answer_and_stop_together():
    with two_process_server() as (process, port):
        children = children_of(process.pid)
        assert len(children) == 1
        assert answering_pids(port) == {process.pid, children[0]}  # both take connections
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
        assert process.stdout.read() == "stopped\n"  # once: the child ends without a word
        assert process.stderr.read() == ""
        assert process_state(children[0]) is None and port_is_closed(port)


@linux_only
def test_a_killed_servers_other_process_stops_on_its_own():
    with two_process_server() as (process, port):
        child, = children_of(process.pid)
        process.kill()  # SIGKILL: no chance to stop the child itself
        process.wait()
        assert ends_within(5, child)
        assert port_is_closed(port)  # free for a new server


@linux_only
def test_a_serving_process_that_dies_is_reported_and_the_rest_serve_on():
    with two_process_server() as (process, port):
        child, = children_of(process.pid)
        os.kill(child, signal.SIGKILL)  # as the kernel does when memory runs out
        assert ends_within(5, child)
        assert answering_pids(port, requests=20) == {process.pid}
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
        assert process.stderr.read() == (f"warning: serving process {child} ended (signal "
                                          "SIGKILL); the others go on serving\n")


def test_several_processes_are_forked_only_before_any_thread(model):
    server = serve.make_server(classifier.picture_answerer(model), "127.0.0.1", 0, HEALTH)
    waiting = threading.Event()
    thread = threading.Thread(target=waiting.wait)
    thread.start()
    try:
        with pytest.raises(RuntimeError, match="before any thread"):
            serve.serve_forever(server, processes=2)
    finally:
        waiting.set()
        thread.join()
        server.server_close()


def test_serving_processes_are_the_usable_cores_where_forking_is_safe(monkeypatch):
    monkeypatch.delitem(sys.modules, "tensorflow", raising=False)
    monkeypatch.setattr(sys, "platform", "linux")
    if hasattr(os, "sched_getaffinity"):
        assert serve.serving_processes() == min(len(os.sched_getaffinity(0)), cgroup_cores())
    monkeypatch.setitem(sys.modules, "tensorflow", types.ModuleType("tensorflow"))
    assert serve.serving_processes() == 1  # TensorFlow's threads would not survive a fork
    monkeypatch.delitem(sys.modules, "tensorflow")
    monkeypatch.setattr(sys, "platform", "darwin")
    assert serve.serving_processes() == 1


def cgroup_cores():
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        return math.ceil(int(quota) / int(period))
    except (OSError, ValueError):
        return math.inf


# --- The command line (the one test that starts TensorFlow in a new process) --------------

def test_serve_command_line_warns_off_loopback_and_stops_on_sigterm():
    if not (SHIPPED / "model.keras").is_file():
        missing(f"the shipped model is missing ({SHIPPED})")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    process = subprocess.Popen(
        [sys.executable, str(SCRIPT), "serve", "--host", "0.0.0.0", "--port", "0",
         "--model-dir", str(SHIPPED)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env=env)
    out, err = queue.Queue(), []
    readers = [threading.Thread(target=lambda: [out.put(line) for line in process.stdout]),
               threading.Thread(target=lambda: err.extend(process.stderr))]
    for reader in readers:
        reader.start()
    try:
        first = out.get(timeout=180)  # TensorFlow's start-up
        match = re.fullmatch(r"Serving (.+) on http://0\.0\.0\.0:(\d+)/ \(Ctrl-C stops it\)\n",
                             first)
        assert match and Path(match[1]) == SHIPPED, first
        # 0.0.0.0 takes loopback connections as well.
        connection = http.client.HTTPConnection("127.0.0.1", int(match[2]), timeout=10)
        connection.request("GET", "/healthz")
        response = connection.getresponse()
        health = json.loads(response.read())
        connection.close()
        metadata = json.loads((SHIPPED / "metadata.json").read_text())
        assert response.status == 200
        assert health == {"status": "ok", "model": str(SHIPPED), "arch": metadata["model"]["arch"],
                          "test_accuracy": metadata["test_accuracy"], "says_not_a_digit": True}
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        for reader in readers:
            reader.join(10)
    stderr = "".join(err)
    assert process.returncode == 0, stderr
    assert list(out.queue) == ["Server stopped.\n"]
    # Quiet by default: the warning, and no line for the request.
    assert our_stderr_lines(stderr) == ["warning: serving on 0.0.0.0, beyond this machine, "
                                        "without authentication: anyone who can reach it can "
                                        "use it"], stderr


def test_requests_are_logged_only_when_asked_and_refusals_with_their_reason(model, capsys):
    for log_requests, lines in ((False, 2), (True, 3)):  # without: the refused ones only
        server = serve.make_server(classifier.picture_answerer(model), "127.0.0.1", 0, HEALTH,
                                   log_requests=log_requests)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        capsys.readouterr()
        try:
            assert request(server, "GET", "/healthz")[0] == 200
            assert request(server, "GET", "/nowhere")[0] == 404
            assert post(server, b"{nope", "application/json")[0] == 400
        finally:
            server.shutdown()
            server.server_close()
            thread.join(10)
        logged = capsys.readouterr().err.splitlines()
        assert len(logged) == lines and all("HTTP/1.1" in line for line in logged), logged
        assert logged[-2].endswith('"GET /nowhere HTTP/1.1" 404 - (no such page: /nowhere)')
        assert logged[-1].endswith(f'"POST /predict HTTP/1.1" 400 - (the body is not JSON: '
                                   f'expected {serve.JSON_REQUEST})')
        assert log_requests == logged[0].endswith('"GET /healthz HTTP/1.1" 200 -')

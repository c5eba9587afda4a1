"""The HTTP server of `mnist_digit_recognition.py serve`: GET / the drawing page
(serve_page.html), POST /predict an image file's bytes or JSON pixels, GET /healthz. Python's
http.server, with pictures to decode what is posted; the script passes in the function that
answers a picture. `serve_forever` runs it, in several processes if asked."""

import concurrent.futures
import contextlib
import functools
import http.server
import ipaddress
import json
import math
import os
import queue
import signal
import socket
import sys
import threading
import traceback
from pathlib import Path

import numpy as np

from .pictures import decode_picture

MAX_REQUEST_BYTES = 1_000_000
# A refused body is still read, in pieces and thrown away, up to this much: a connection closed
# with unread data is reset, and a client that sends all before it reads (Python's http.client)
# would lose the answer.
DISCARDED_BYTES = 50_000_000
PAGE = Path(__file__).parent / "serve_page.html"
IDLE_THREAD_SECONDS = 30  # a connection thread that waits this long for a connection ends


JSON_REQUEST = '{"pixels": 28 rows of 28 numbers from 0 to 255}'


def pixels_from_json(body):
    """The 28x28 grey image of a JSON request {"pixels": [[...28 numbers 0-255...] x 28]}."""
    try:
        request = json.loads(body)
    except (ValueError, RecursionError):  # a UnicodeDecodeError is a ValueError
        raise ValueError(f"the body is not JSON: expected {JSON_REQUEST}") from None
    rows = request.get("pixels") if isinstance(request, dict) else None
    if not (isinstance(rows, list) and len(rows) == 28
            and all(isinstance(row, list) and len(row) == 28 for row in rows)):
        raise ValueError(f"expected JSON {JSON_REQUEST}")
    # type(), not isinstance(): true and false are not pixel values
    if not all(type(value) in (int, float) and 0 <= value <= 255 for row in rows for value in row):
        raise ValueError(f"the pixels must be numbers from 0 to 255: expected JSON {JSON_REQUEST}")
    return np.array(rows, np.float32) / 255


def make_server(answer, host, port, health, log_requests=False):
    """A threading HTTP server (Server) on host:port. `answer(grey)` turns a grey picture into
    the JSON answer (raising ValueError for one without a digit); GET /healthz answers
    `health`. Errors are logged to stderr; each request too with `log_requests`."""
    if not 0 <= port <= 65535:
        raise ValueError(f"--port must be from 0 to 65535 (0: any free port), not {port}")
    try:
        return Server((host, port), answer, health, log_requests)
    except OSError as error:
        raise ValueError(f"cannot listen on {host}:{port} ({error.strerror}): choose another "
                         "--port or --host") from None


class Server(http.server.ThreadingHTTPServer):
    """A thread per connection (Handler), a thread an earlier connection left idle where there
    is one; the pictures read one at a time on a thread of their own: the threads of one
    process reading several at once only take turns with Python's interpreter lock, and cost
    about twice the CPU time (benchmarks/README.md). A large picture also needs a few hundred
    MB for a moment: one at a time, no more."""

    request_queue_size = 64  # the default 5 drops connections when many clients arrive

    def __init__(self, address, answer, health, log_requests):
        self.answer, self.health, self.log_requests = answer, health, log_requests
        self.page = PAGE.read_bytes()
        # The threads start with the first connection (serve_forever forks before any does).
        self.reader = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="picture-reader")
        self.connections, self.idle, self.connection_threads = queue.SimpleQueue(), \
            threading.Semaphore(0), 0
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        super().__init__(address, Handler)  # binds: a port in use fails here, closing the server

    def process_request(self, request, client_address):
        """Handle a connection on an idle connection thread, or on a new one where none is
        idle: starting and ending a thread costs about 0.3 ms of CPU, as much as a network
        reading a picture (benchmarks/README.md)."""
        if not self.idle.acquire(blocking=False):
            threading.Thread(target=self.handle_connections, daemon=True,
                             name=f"connection-{self.connection_threads}").start()
            self.connection_threads += 1
        self.connections.put((request, client_address))

    def handle_connections(self):
        """A connection thread's life: handle connections as they come (ThreadingMixIn's
        process_request_thread closes each), until server_close, or until it has waited
        IDLE_THREAD_SECONDS for one (so a burst of connections leaves no crowd of threads)."""
        while True:
            try:
                connection = self.connections.get(timeout=IDLE_THREAD_SECONDS)
            except queue.Empty:
                if self.idle.acquire(blocking=False):  # no connection is on its way to it
                    return
                continue
            if connection is None:
                return
            self.process_request_thread(*connection)
            self.idle.release()

    def read_and_answer(self, body, content_type):
        """The answer to a POST /predict body: an image file's bytes, or JSON pixels."""
        content_type = content_type.lower()
        if content_type.startswith("multipart/"):
            raise ValueError("send the image file's bytes as the body, not a form "
                             "(e.g. curl --data-binary @digit.png)")
        is_json = content_type.startswith("application/json") or body.lstrip().startswith(b"{")
        read = pixels_from_json if is_json else decode_picture
        return self.reader.submit(lambda: self.answer(read(body))).result()

    def handle_error(self, request, client_address):
        if not isinstance(sys.exc_info()[1], ConnectionError):  # else: the client left
            super().handle_error(request, client_address)

    def server_close(self):
        super().server_close()
        for _ in range(self.connection_threads):  # each ends after the connections before it
            self.connections.put(None)
        self.reader.shutdown()


class Handler(http.server.BaseHTTPRequestHandler):
    """GET / the drawing page, POST /predict, GET /healthz (and HEAD of the GETs); anything
    else refused with a JSON error."""

    methods = {"/": ("GET", "HEAD"), "/healthz": ("GET", "HEAD"), "/predict": ("POST",)}
    refusal = None  # why the request being answered is refused, for its log line
    wbufsize = -1  # an answer's head and body sent together (reply flushes), not apart
    timeout = 30  # seconds a client may leave its connection silent, so none holds a thread
                  # for ever (each read has its own 30 s)

    def reply(self, status, body, content_type="application/json"):
        body = body if isinstance(body, bytes) else (json.dumps(body) + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        if status == 405:
            self.send_header("Allow", ", ".join(self.methods[self.route]))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self.wfile.flush()  # before any body left unread is read (discard_body)

    def log_request(self, code="-", size="-"):
        """http.server's line, with the reason of a refusal: '"POST /predict HTTP/1.1" 400 -
        (the body is empty: ...)'. Refusals and failures always, the rest with log_requests."""
        refusal, self.refusal = self.refusal, None
        if self.server.log_requests or isinstance(code, int) and code >= 400:
            reason = f" ({refusal})" if refusal else ""
            self.log_message('"%s" %s %s%s', self.requestline, getattr(code, "value", code), size,
                             reason)

    def refuse(self, status, message):
        self.refusal = message
        self.reply(status, {"error": message})

    def send_error(self, code, message=None, explain=None):
        """http.server's own refusals (a malformed request), in JSON."""
        if code == http.HTTPStatus.NOT_IMPLEMENTED:  # a method it has no do_ for: as any
            return self.answer()                     # other the path does not take
        self.close_connection = True
        self.refuse(code, message or http.HTTPStatus(code).phrase)

    @property
    def route(self):
        return self.path.partition("?")[0]

    def discard_body(self):
        """Read the body after the answer (DISCARDED_BYTES), then close the connection."""
        self.close_connection = True
        left = min(self.content_length() or 0, DISCARDED_BYTES)
        with contextlib.suppress(OSError):  # the client left, or went silent
            while left > 0 and (piece := self.rfile.read(min(left, 1 << 16))):
                left -= len(piece)

    def content_length(self):
        length = self.headers.get("Content-Length", "")
        return int(length) if length.isascii() and length.isdigit() else None

    def answer(self):
        if self.route not in self.methods or self.command not in self.methods[self.route]:
            if self.route not in self.methods:
                self.refuse(404, f"no such page: {self.route}")
            else:
                self.refuse(405, f"{self.command} is not allowed on {self.route}")
            return self.discard_body()
        if self.route == "/":
            self.reply(200, self.server.page, "text/html; charset=utf-8")
        elif self.route == "/healthz":
            self.reply(200, self.server.health)
        else:
            self.predict()

    def predict(self):
        length = self.content_length()
        if length is None:
            return self.refuse(411, "a POST needs a Content-Length")
        if length == 0:
            return self.refuse(400, "the body is empty: send an image file's bytes (e.g. "
                                    "curl --data-binary @digit.png) or JSON pixels")
        if length > MAX_REQUEST_BYTES:
            self.refuse(413, f"the body is over {MAX_REQUEST_BYTES:,} bytes: send a "
                             "smaller picture (a digit needs no more than 1,000 pixels a "
                             "side), or read a large photo with predict")
            return self.discard_body()
        body = self.rfile.read(length)
        try:
            answer = self.server.read_and_answer(body, self.headers.get("Content-Type", ""))
        except ValueError as error:
            return self.refuse(400, str(error))
        except Exception as error:  # a bug of ours: the client still gets an answer
            self.log_error("POST /predict failed: %r", error)
            return self.refuse(500, "the server failed on this request")
        self.reply(200, answer)

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = answer


STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}


def serve_forever(server, processes=1):
    """Serve until Ctrl-C or SIGTERM (KeyboardInterrupt), then close the server. With more than
    one process, the others are forked from this one and take connections from the same
    listening socket: a process reads one picture at a time, so on a free core another process
    answers about as many requests more (benchmarks/README.md). They stop with this one, and on
    their own within half a second if it is killed. Call it before the server runs any thread."""
    if processes > 1 and threading.active_count() > 1:
        raise RuntimeError("serve_forever forks: call it before any thread starts (a copy of "
                           "the picture reader's thread would never run in the new processes)")
    children = []
    try:
        if processes > 1:  # a process that finds another took the connection goes on waiting
            server.socket.setblocking(False)
        for _ in range(processes - 1):
            children.append(fork_server(server))
        server.service_actions = functools.partial(report_ended, children)  # twice a second
        server.serve_forever()
    except KeyboardInterrupt:  # Ctrl-C reaches every process of the terminal's
        pass
    finally:
        stop(children)
        server.server_close()


def fork_server(server):
    """A new process serving from the same socket; its process id. A signal that stops the
    server waits until the new process can stop on its own."""
    parent = os.getpid()
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        child = os.fork()
    finally:
        if os.getpid() == parent:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    if child == 0:
        serve_as_child(server, parent)
    return child


def serve_as_child(server, parent):
    """A forked process's life: serve until it is stopped or its parent is gone, then exit,
    never returning into its parent's code."""
    def exit_if_orphaned():
        if os.getppid() != parent:
            os._exit(0)

    status = 0
    try:
        server.service_actions = exit_if_orphaned
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    except BaseException:
        traceback.print_exc()
        status = 1
    finally:
        os._exit(status)


def report_ended(children):
    """Say so when a serving process ended before being told to (the kernel killed it for
    memory, say): the others go on serving."""
    for child in list(children):
        with contextlib.suppress(ChildProcessError):
            ended, status = os.waitpid(child, os.WNOHANG)
            if ended:
                children.remove(child)
                code = os.waitstatus_to_exitcode(status)
                how = f"signal {signal.Signals(-code).name}" if code < 0 else f"exit status {code}"
                print(f"warning: serving process {child} ended ({how}); the others go on serving",
                      file=sys.stderr, flush=True)


def stop(children):
    for child in children:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signal.SIGTERM)  # the script turns it into KeyboardInterrupt
    for child in children:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(child, 0)


def is_loopback(host):
    try:
        return all(ipaddress.ip_address(info[4][0]).is_loopback
                   for info in socket.getaddrinfo(host, None))
    except (OSError, ValueError):
        return False


def serving_processes():
    """A process per core the server may use, where it can fork safely: on Linux, with no
    TensorFlow loaded (its threads would not survive a fork; LiteRT runs none)."""
    if not sys.platform.startswith("linux") or "tensorflow" in sys.modules:
        return 1
    cores = len(os.sched_getaffinity(0))
    with contextlib.suppress(OSError, ValueError):  # a container's CPU limit (cgroup v2)
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        cores = min(cores, max(1, math.ceil(int(quota) / int(period))))  # "max": no limit
    return cores

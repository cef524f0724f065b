"""The worker protocol: frames, the version handshake, file mode."""

from __future__ import annotations

import io
import os
import pickle
import subprocess
import sys
import threading

import pytest
from pymw_testing import find_other_python, require, wait_until

from pymw_core import InterfaceError, wire
from pymw_core.connection import WorkerConnection
from pymw_core.payload import Packer, request_file
from pymw_core.worker import Runtime, run_file


def test_frames_round_trip_including_large_ones():
    stream = io.BytesIO()
    big = os.urandom(3 * wire.WRITE_SLICE + 5)
    wire.write_message(stream, ("a", 1))
    wire.write_message(stream, ("big", big))
    stream.seek(0)
    assert wire.read_message(stream) == ("a", 1)
    assert wire.read_message(stream) == ("big", big)
    assert wire.read_message(stream) is None


def test_big_blobs_travel_beside_the_pickle_once_and_come_back_as_bytes():
    stream = io.BytesIO()
    code, args = os.urandom(wire.OUT_OF_BAND), os.urandom(wire.OUT_OF_BAND + 7)
    message = ("task", 7, ("f", 3, code), args, {"deps": b"small"})
    wire.write_message(stream, message)
    frame = stream.getvalue()
    assert len(frame) < len(code) + len(args) + 300  # each blob is in the frame once
    stream.seek(0)
    back = wire.read_message(stream)
    assert back == message and type(back[3]) is bytes and type(back[2][2]) is bytes
    # encode() keeps every blob inside the pickle (one object to store in a file)
    assert wire.read_message(io.BytesIO(wire.encode(message))) == message


def test_big_bytes_in_a_value_stay_out_of_its_pickle_and_are_not_copied():
    # Seen failing before wire.dumps existed (AttributeError), and with the blob a plain
    # pickle (the big bytes copied into it: the identity assert fails).
    big = os.urandom(wire.OUT_OF_BAND)
    value = (1, big, ("nested", big[:10], big), "text")
    blob = wire.dumps(value)
    assert type(blob) is tuple and blob[1] is big and blob[2] is big
    assert len(blob[0]) < 200  # the pickle itself holds no big bytes
    assert wire.blob_size(blob) == len(blob[0]) + 2 * len(big)
    back = wire.loads(blob)
    assert back == value and back[1] is big  # handed back, not copied
    # The same key material whichever way the value travelled (journal.task_key).
    assert wire.joined(blob) == pickle.dumps(value, wire.PROTOCOL)
    small = wire.dumps((1, b"x" * 10))
    assert type(small) is bytes and wire.loads(small) == (1, b"x" * 10)


def test_a_split_blob_crosses_the_wire_with_its_bytes_beside_the_frame():
    big = os.urandom(wire.OUT_OF_BAND + 3)
    blob = wire.dumps((big,))
    stream = io.BytesIO()
    wire.write_message(stream, ("done", 4, True, blob, "", "", 0.0))
    assert len(stream.getvalue()) < len(big) + 300  # the big bytes are in the frame once
    stream.seek(0)
    back = wire.read_message(stream)
    assert type(back[3][1]) is bytes and wire.loads(back[3]) == (big,)


def test_a_task_with_big_bytes_arguments_runs_and_returns_them():
    big = os.urandom(3 * wire.OUT_OF_BAND)
    payload = Packer().pack(_echo_both, (big, b"small"))
    assert type(payload.args) is tuple and payload.args[1] is big  # no copy at submit
    runtime = Runtime(chdir=False, own_process=False)
    try:
        reply = runtime.run(payload.message(1))
    finally:
        runtime.close()
    assert reply[2] is True, reply
    assert type(reply[3]) is tuple  # the result's big bytes travel beside its pickle
    assert wire.loads(reply[3]) == (b"small", big)


def _echo_both(a: bytes, b: bytes) -> tuple:
    return b, a


class _Recorder:
    """A stream that is not a file (as paramiko's channel files are not): notes each write."""

    def __init__(self) -> None:
        self.sizes: list[int] = []
        self.data = bytearray()

    def write(self, data: bytes) -> int:
        self.sizes.append(len(data))
        self.data += data
        return len(data)

    def flush(self) -> None:
        pass


def test_big_blobs_go_to_a_file_in_one_write_and_to_other_streams_in_slices():
    # Seen failing with every stream sliced (the file got 4 writes of the blob).
    big = os.urandom(3 * wire.WRITE_SLICE + 5)
    sliced = _Recorder()
    wire.write_message(sliced, ("done", 1, True, big))
    assert max(sliced.sizes) <= wire.WRITE_SLICE and len(sliced.sizes) >= 4
    read, write = os.pipe()
    with os.fdopen(read, "rb") as reader, os.fdopen(write, "wb") as writer:
        raw_writes: list[int] = []
        real = writer.raw.write

        def counted(data: bytes) -> int:
            raw_writes.append(len(data))
            return real(data)

        writer.raw.write = counted  # type: ignore[method-assign]
        thread = threading.Thread(target=wire.write_message, args=(writer, ("done", 1, True, big)))
        thread.start()
        back = wire.read_message(reader)
        thread.join(10)
    assert back == ("done", 1, True, big)
    assert raw_writes.count(len(big)) == 1  # the blob left in one write (one wake-up)
    assert wire.read_message(io.BytesIO(bytes(sliced.data))) == ("done", 1, True, big)


def test_a_frame_cut_inside_its_out_of_band_blobs_is_an_error():
    stream = io.BytesIO()
    wire.write_message(stream, ("done", 1, True, os.urandom(wire.OUT_OF_BAND)))
    with pytest.raises(EOFError):
        wire.read_message(io.BytesIO(stream.getvalue()[:-10]))


def test_a_truncated_frame_is_an_error():
    data = wire.encode(("x", b"0123456789"))
    with pytest.raises(EOFError, match="inside a frame"):
        wire.read_message(io.BytesIO(data[:-3]))


def test_a_real_worker_of_another_python_minor_version_is_refused_naming_both(tmp_path):
    """The runtime zip on a real interpreter of another minor version: its hello is refused."""
    from pymw_core import bundle

    other = find_other_python()
    require(other is not None, "no Python of another minor version here (pyenv install 3.12)")
    name, data = bundle.runtime_zip()
    (tmp_path / name).write_bytes(data)
    proc = subprocess.Popen([other, "-I", str(tmp_path / name)], cwd=tmp_path,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        conn = WorkerConnection(proc.stdout, proc.stdin, name="other").start()
        with pytest.raises(InterfaceError) as info:
            conn.wait_ready(30)
        theirs = subprocess.run([other, "-c", "import sys; print('%d.%d.%d' % sys.version_info[:3])"],
                                capture_output=True, text=True, check=True).stdout.strip()
        text = str(info.value)
        assert theirs in text and "{}.{}.{}".format(*sys.version_info[:3]) in text, text
        proc.stdin.close()  # end of its input: the refused worker leaves, tidying up
        assert proc.wait(30) == 0
    finally:
        proc.kill()
        proc.wait()


def test_the_master_refuses_a_hello_of_another_minor_version():
    """The master's side of the check, on the frame such a worker sends (runs everywhere;
    the test above and tests/ssh run real interpreters of another version)."""
    r_fd, w_fd = os.pipe()
    reader = os.fdopen(r_fd, "rb")
    writer = os.fdopen(w_fd, "wb")
    conn = WorkerConnection(reader, io.BytesIO(), name="fake").start()
    wire.write_message(writer, ("hello", {"python": (3, 7, 1), "executable": "/opt/py37"}))
    with pytest.raises(InterfaceError) as info:
        conn.wait_ready(5)
    text = str(info.value)
    assert "3.7.1" in text and "{}.{}".format(*sys.version_info[:2]) in text
    writer.close()


def test_nothing_reaches_a_worker_before_its_hello_is_checked():
    """Frames sent before the hello are held, then leave (a worker of this minor version)
    or never do (another): a code object of one minor version can crash another's
    interpreter. Seen failing before the hold: the "bye" reached the worker at once."""
    for python, accepted in (((3, 7, 1), False), (tuple(sys.version_info[:3]), True)):
        r_fd, w_fd = os.pipe()
        reader, writer = os.fdopen(r_fd, "rb"), os.fdopen(w_fd, "wb")
        to_worker = io.BytesIO()
        conn = WorkerConnection(reader, to_worker, name="fake").start()
        conn.close()  # a "bye" frame, sent before the worker said anything
        assert to_worker.getvalue() == b""
        wire.write_message(writer, ("hello", {"python": python, "executable": "/opt/py"}))
        if accepted:
            assert conn.wait_ready(5)["python"] == python
            assert wire.read_message(io.BytesIO(to_worker.getvalue())) == ("bye",)
        else:
            with pytest.raises(InterfaceError, match="the minor versions must match"):
                conn.wait_ready(5)
            assert to_worker.getvalue() == b""
        writer.close()


def test_a_worker_that_dies_before_hello_is_reported():
    proc = subprocess.Popen([sys.executable, "-c", "import sys; sys.exit(3)"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    conn = WorkerConnection(proc.stdout, proc.stdin, name="dies").start()
    with pytest.raises(InterfaceError, match="failed to start"):
        conn.wait_ready(10)
    proc.wait()


def test_file_mode_runs_one_task(tmp_path):
    packer = Packer()
    payload = packer.pack(divmod, (17, 5))
    (tmp_path / "in").write_bytes(request_file(payload, 9))
    cwd = os.getcwd()
    try:
        os.chdir(tmp_path)
        run_file(str(tmp_path / "in"), str(tmp_path / "out"))
    finally:
        os.chdir(cwd)
    with open(tmp_path / "out", "rb") as fh:
        reply = wire.read_message(fh)
    assert reply[0] == "done" and reply[1] == 9 and reply[2] is True
    import pickle

    assert pickle.loads(reply[3]) == (3, 2)  # divmod(17, 5), computed by the worker


def test_file_mode_refuses_another_python(tmp_path):
    payload = Packer().pack(divmod, (1, 1))
    data = wire.encode(("need", (2, 7))) + wire.encode(payload.message(1))
    (tmp_path / "in").write_bytes(data)
    run_file(str(tmp_path / "in"), str(tmp_path / "out"))
    import pickle

    with open(tmp_path / "out", "rb") as fh:
        reply = wire.read_message(fh)
    error, _ = pickle.loads(reply[3])
    assert reply[2] is False and "2.7" in str(error) and "minor versions must match" in str(error)


class OneProcess:
    """An interface of one real worker process, all tasks pipelined on one connection."""

    def __init__(self):
        self.closed = threading.Event()
        self.proc = subprocess.Popen([sys.executable, "-m", "pymw_core.worker"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.conn = WorkerConnection(self.proc.stdout, self.proc.stdin, name="pipe",
                                     on_closed=lambda c, r: self.closed.set()).start()

    def execute_task(self, task, worker):
        self.conn.send(task)

    def cleanup(self):
        self.conn.close()


def test_connection_pipelines_over_a_real_worker_process():
    from pymw_core import Master

    interface = OneProcess()
    hello = interface.conn.wait_ready(10)
    # The process started is the worker's guardian; the tasks run in its child.
    assert hello["guardian"] == interface.proc.pid != hello["pid"]
    with Master(interface) as m:
        tasks = [m.submit_task(divmod, (i, 3)) for i in range(50)]
        assert [m.get_result(t)[1] for t in tasks] == [divmod(i, 3) for i in range(50)]
    assert interface.closed.wait(10)  # "bye" made the worker exit and close its stream
    assert interface.proc.wait(10) == 0


def test_the_runtime_zip_runs_tasks_on_a_python_with_nothing_installed(tmp_path):
    """What ssh hosts and batch nodes run: the zip alone, on a bare interpreter (-I -S:
    no site-packages, so pymw_core and cloudpickle can only come from the zip)."""
    from pymw_core import Master, bundle

    name, data = bundle.runtime_zip()
    assert bundle.runtime_zip.__wrapped__() == (name, data)  # same code, same bytes, same name
    assert name == f"pymw-runtime-{__import__('hashlib').sha256(data).hexdigest()[:16]}.zip"
    path = tmp_path / name
    path.write_bytes(data)
    base = getattr(sys, "_base_executable", None) or sys.executable

    class ZipWorker(OneProcess):
        def __init__(self):
            self.closed = threading.Event()
            self.proc = subprocess.Popen([base, "-I", "-S", str(path)], cwd=tmp_path,
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE)
            self.conn = WorkerConnection(self.proc.stdout, self.proc.stdin, name="zip",
                                         on_closed=lambda c, r: self.closed.set()).start()

    interface = ZipWorker()
    hello = interface.conn.wait_ready(30)
    assert hello["guardian"] == interface.proc.pid != hello["pid"]
    with Master(interface) as m:
        where = m.get_result(m.submit_task(_module_files))[1]
        assert all(f.startswith(str(path) + os.sep) for f in where), where
        assert m.get_result(m.submit_task(divmod, (7, 2)))[1] == (3, 1)
    assert interface.closed.wait(10) and interface.proc.wait(10) == 0


def _module_files():
    import sys

    return [sys.modules[n].__file__ for n in ("cloudpickle", "pymw_core.worker")]


class _CountingFile(io.FileIO):
    """A pipe's write end that counts the write system calls made on it."""

    writes = 0

    def write(self, data):
        self.writes += 1
        return super().write(data)


def test_the_frames_of_one_matching_round_leave_in_one_write():
    # Against the code before batched_writes: 10 writes, one per frame (seen failing so).
    from pymw_core import Master

    class Gated(OneProcess):
        blocking_execute = False  # execute_task only queues: the scheduler calls it inline

        def __init__(self):
            super().__init__()
            self.raw = _CountingFile(os.dup(self.proc.stdin.fileno()), "wb")
            self.conn._writer = io.BufferedWriter(self.raw)
            self.open = threading.Event()

        def get_available_workers(self):
            return ["w"] * 10 if self.open.is_set() else []

    interface = Gated()
    interface.conn.wait_ready(10)
    with Master(interface) as m:
        tasks = [m.submit_task(divmod, (i, 3)) for i in range(10)]  # queued: no worker yet
        before = interface.raw.writes
        interface.open.set()  # the scheduler's next poll matches all ten in one round
        wait_until(lambda: m.get_status()["finished"] >= 10, 30, "the ten tasks finishing")
        assert [m.get_result(t)[1] for t in tasks] == [divmod(i, 3) for i in range(10)]
        assert interface.raw.writes - before == 1
    assert interface.closed.wait(10) and interface.proc.wait(10) == 0


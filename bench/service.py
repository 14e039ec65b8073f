"""The service binary for the Python benchmarks: started on a free loopback port with a fresh
DATA_DIR and test-friendly defaults, and its JSON endpoints posted to."""
import json
import os
import socket
import subprocess
import time
import urllib.request


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(binary, data_dir, settings):
    """Starts `binary` with DATA_DIR=data_dir and `settings` (a dict of variables) on a free port;
    returns (process, base URL) once /health answers (at most 30 s)."""
    port = free_port()
    env = {"PATH": os.environ.get("PATH", ""), "API_HOST": "127.0.0.1", "API_PORT": str(port),
           "DATA_DIR": data_dir, "RETRAIN_INTERVAL_SECONDS": "0", "LOG_LEVEL": "warn", **settings}
    process = subprocess.Popen([binary], env=env, stdout=subprocess.DEVNULL)
    base = "http://127.0.0.1:%d" % port
    for _ in range(300):
        try:
            urllib.request.urlopen(base + "/health", timeout=1)
            return process, base
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit("the service did not answer /health within 30 s")


def post(url, body, timeout=600):
    """POSTs `body` as JSON and returns the decoded answer."""
    request = urllib.request.Request(url, data=json.dumps(body).encode(),
                                     headers={"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.load(response)

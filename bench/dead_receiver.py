#!/usr/bin/env python3
"""An alert receiver that accepts connections and never answers: the worst case for delivery.

    python3 bench/dead_receiver.py PORT
"""
import socket
import sys
import threading

held = []


def hold(conn):
    held.append(conn)  # keep it open; read and discard whatever arrives
    try:
        while conn.recv(65536):
            pass
    except OSError:
        pass


server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("127.0.0.1", int(sys.argv[1])))
server.listen(1024)
while True:
    conn, _ = server.accept()
    threading.Thread(target=hold, args=(conn,), daemon=True).start()

"""The viser server: a session per browser tab, and a clean stop (Ctrl-C or `stop()`)."""
from __future__ import annotations

import threading
import time

import viser

from lerf.viewer.backend import Backend
from lerf.viewer.session import Session, ViewerOptions


class Viewer:
    def __init__(self, backend: Backend, opts: ViewerOptions):
        self.backend, self.opts = backend, opts
        self.server = viser.ViserServer(host=opts.host, port=opts.port, label="lerf", verbose=False)
        self.sessions: dict[int, Session] = {}
        self._lock = threading.Lock()
        self.server.on_client_connect(self._connect)
        self.server.on_client_disconnect(self._disconnect)

    @property
    def url(self) -> str:
        """Where to point the browser (the port actually bound)."""
        host = self.server.get_host()
        return f"http://{'localhost' if host in ('127.0.0.1', 'localhost') else host}:{self.server.get_port()}"

    @property
    def port(self) -> int:
        return self.server.get_port()

    def _connect(self, client) -> None:
        session = Session(client, self.backend, self.opts)
        with self._lock:
            self.sessions[client.client_id] = session

    def _disconnect(self, client) -> None:
        with self._lock:
            session = self.sessions.pop(client.client_id, None)
        if session is not None:
            session.close()

    def stop(self) -> None:
        """Stop every tab's render thread, then the server (its port is free afterwards)."""
        with self._lock:
            sessions, self.sessions = list(self.sessions.values()), {}
        for session in sessions:
            session.close()
        self.server.stop()

    def serve_forever(self) -> None:
        """Print the URL and block until Ctrl-C, then shut down cleanly (however early it comes)."""
        try:
            print(f"lerf viewer: {self.url}  (Ctrl-C to stop)", flush=True)
            while True:
                time.sleep(0.5)
        except KeyboardInterrupt:
            print("\nstopping the viewer…", flush=True)
        finally:
            self.stop()

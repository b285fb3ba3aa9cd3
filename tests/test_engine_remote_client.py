"""The remote backend's answers to a server that refuses it (no llama.cpp needed): a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import http.server
import socketserver
import threading

import pytest

from tower_cat.engine_remote import OpenAICompletionsBackend, RemoteEngineError, RemoteOptions


class _Refusing(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(401)
        self.send_header("content-type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"error": {"message": "invalid api key"}}')

    def log_message(self, *args):
        pass


def test_a_refused_model_list_is_a_remote_engine_error_in_the_servers_words():
    srv = socketserver.TCPServer(("127.0.0.1", 0), _Refusing)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        with pytest.raises(RemoteEngineError, match=r"/v1/models refused the request \(HTTP 401\): invalid api key"):
            OpenAICompletionsBackend(RemoteOptions(endpoint=f"http://127.0.0.1:{srv.server_address[1]}",
                                                   retries=0), tokenizer=None)
    finally:
        srv.shutdown()
        srv.server_close()

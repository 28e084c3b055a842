"""A minimal OpenAI-compatible server over a real local HF causal LM (greedy), for the teacher tests.

python openai_server.py --model-dir DIR [--port 0] [--delay-s S]; prints "PORT <n>" once listening on
127.0.0.1. Serves POST /v1/chat/completions and /v1/completions, GET /v1/models. --delay-s adds a
pause per request (a slow, big teacher) so a test can kill a client mid-run.
"""
import argparse
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from mindcore.mind.synthesize import hf_generate_fn


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model-dir", required=True)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--delay-s", type=float, default=0.0)
    args = ap.parse_args()
    gens, lock = {}, threading.Lock()

    def generate(prompt, max_tokens):
        with lock:                                   # one model, one request at a time
            if max_tokens not in gens:
                gens[max_tokens] = hf_generate_fn(args.model_dir, max_new_tokens=max_tokens, batch_size=1)
            return gens[max_tokens]([prompt])[0]

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def _send(self, code, obj):
            raw = json.dumps(obj).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def do_GET(self):
            if self.path.rstrip("/") == "/v1/models":
                return self._send(200, {"object": "list", "data": [{"id": "local", "object": "model"}]})
            self._send(404, {"error": "not found"})

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
            chat = self.path.rstrip("/") == "/v1/chat/completions"
            if not chat and self.path.rstrip("/") != "/v1/completions":
                return self._send(404, {"error": "not found"})
            prompt = body["messages"][-1]["content"] if chat else body["prompt"]
            time.sleep(args.delay_s)
            text = generate(prompt, int(body.get("max_tokens", 16)))
            choice = {"index": 0, "finish_reason": "length"}
            choice.update({"message": {"role": "assistant", "content": text}} if chat else {"text": text})
            self._send(200, {"object": "chat.completion" if chat else "text_completion", "choices": [choice]})

    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    print(f"PORT {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()

"""Our application on uvicorn (uvloop, httptools, websockets), for the
bench's `--p-server uvicorn`: the same application, settings and garbage
collection tuning as the shipped worker (booktime.serve), another server.

    python -m bench.uvicorn_server --port 8101

Bench only: no access log (uvicorn's would show query strings, tokens
included) and no lifespan (nothing closes the shared connections at exit).
"""

import argparse

import uvicorn

from booktime.asgi import application
from booktime.serve import tune_garbage_collection


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    tune_garbage_collection()  # the application and Django are loaded by now
    uvicorn.run(
        application,
        host="127.0.0.1",
        port=args.port,
        loop="uvloop",
        http="httptools",
        ws="websockets",
        lifespan="off",
        access_log=False,
        log_level="warning",
    )


if __name__ == "__main__":
    main()

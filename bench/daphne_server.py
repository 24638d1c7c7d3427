"""Our application on daphne, for the bench's `--p-server daphne`: the same
application, settings and garbage collection tuning as the shipped worker
(booktime.serve), another server, to tell the application's cost from the
server's.

    python -m bench.daphne_server --port 8101

Bench only: no access log (daphne's would show query strings, tokens
included) and no shutdown hook beyond runserver's (main.infra.per_loop).
"""

import argparse

from daphne.server import Server

from booktime.asgi import application
from booktime.serve import tune_garbage_collection


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    tune_garbage_collection()  # the application and Django are loaded by now
    Server(application, endpoints=[f"tcp:port={args.port}:interface=127.0.0.1"], verbosity=0).run()


if __name__ == "__main__":
    main()

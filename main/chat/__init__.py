"""The customer-service chat: its protocol (protocol.py), limits (limits.py),
rules and reads (service.py), message storage (store.py) and the socket's
consumer (consumer.py). docs/protocol.md describes the wire."""

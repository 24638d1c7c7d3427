"""Conversations: an order's messages and what they make of it (waiting,
answered, resolved), who holds it, who has read what, and the queue of
waiting customers. Shared by the chat socket, the agents' inbox and the
mobile API; the one place that writes messages (store.py)."""

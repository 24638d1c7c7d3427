"""The employees' live view of who is present in which chat: the event
stream at /customer-service/notify/ (consumer.py) and what it sends
(payloads.py)."""

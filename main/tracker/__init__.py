"""The shipment tracker: the courier's status for a customer's order,
proxied without blocking (consumer.py), through one shared HTTP client per
process (courier.py); standin.py stands in for the courier offline."""

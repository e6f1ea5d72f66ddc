"""kubehop: live-migrate containerized microservices between Kubernetes clusters."""

__version__ = "0.1.0"

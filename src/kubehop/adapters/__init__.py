"""One module per outside system kubehop talks to (Kubernetes, DNS, its database)."""

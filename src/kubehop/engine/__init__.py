"""The migration executor: joins the pure domain to the adapters."""

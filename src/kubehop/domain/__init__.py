"""Pure domain model of kubehop: no I/O imports live here."""

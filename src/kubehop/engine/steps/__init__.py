"""The migration's steps, one module per family; :mod:`.registry` names them all."""

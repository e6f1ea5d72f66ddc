"""Moving a stateful service's data: one small interface (:mod:`.interface`), the engines that
implement it (:mod:`.files`, rsync over TLS, the only one so far), the registry the steps pick
one from by name (:mod:`.registry`), and what the data steps do to the workload's own pods
(:mod:`.workload`: the application's freeze/thaw hooks, the no-hook stop, the image pre-pull).
"""

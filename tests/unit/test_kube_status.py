"""How a crash-looping container's last exit is told in kubehop's errors."""

from kubehop.adapters.kube import _last_exit


def test_a_crash_names_its_reason_exit_code_and_log_tail() -> None:
    status = {"lastState": {"terminated": {"reason": "Error", "exitCode": 1,
                                           "message": "Traceback ...\nsqlite3.DatabaseError:\n"
                                                      " file is not a database\n"}}}
    assert _last_exit(status) == (" (Error, exit 1: Traceback ... sqlite3.DatabaseError: "
                                  "file is not a database)")


def test_an_oom_kill_without_a_message_and_a_first_start() -> None:
    assert _last_exit({"lastState": {"terminated": {"reason": "OOMKilled", "exitCode": 137}}}
                      ) == " (OOMKilled, exit 137)"
    assert _last_exit({"lastState": {}}) == ""


def test_a_long_log_keeps_its_end() -> None:
    status = {"lastState": {"terminated": {"exitCode": 2, "message": "x" * 1000 + " the end"}}}
    assert _last_exit(status).endswith("x the end)") and len(_last_exit(status)) < 330

"""PostgreSQL for the in-cluster controller's store: Debian's postgresql-15 on a claim.

The first start initialises the cluster in the claim (owner ``kubehop``, password from the
mounted Secret, scram-sha-256 for every network client); later starts find it and only run
the server. It drops root before touching the data, as postgres insists.
"""

import os
import pwd
import subprocess
import sys
from pathlib import Path

BIN = Path("/usr/lib/postgresql/15/bin")
DATA = Path(os.environ.get("PGDATA", "/var/lib/postgresql/data/pgdata"))
PASSWORD_FILE = os.environ.get("POSTGRES_PASSWORD_FILE", "/etc/kubehop-db/password")


def main() -> None:
    user = pwd.getpwnam("postgres")
    DATA.mkdir(parents=True, exist_ok=True)
    os.chown(DATA, user.pw_uid, user.pw_gid)
    DATA.chmod(0o700)
    os.setgroups([])
    os.setgid(user.pw_gid)
    os.setuid(user.pw_uid)
    os.environ["HOME"] = "/tmp"
    if not (DATA / "PG_VERSION").exists():
        done = subprocess.run([
            str(BIN / "initdb"), "-D", str(DATA), "-U", "kubehop", f"--pwfile={PASSWORD_FILE}",
            "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8"], check=False)
        if done.returncode != 0:
            sys.exit(f"initdb failed (exit {done.returncode})")
        with (DATA / "pg_hba.conf").open("a") as hba:
            hba.write("host all all 0.0.0.0/0 scram-sha-256\n")
    server = [str(BIN / "postgres"), "-D", str(DATA), "-c", "listen_addresses=*",
              "-c", "unix_socket_directories=/tmp"]
    os.execv(BIN / "postgres", server)  # noqa: S606 (this process becomes the server)


if __name__ == "__main__":
    main()

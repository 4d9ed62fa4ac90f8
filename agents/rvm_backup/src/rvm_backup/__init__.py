"""rvm-backup: the device-side driver of the restic backups of an RVM (installed as /usr/local/sbin/rvm-backup).

rvm-edge keeps its data in SQLite under /var/lib/rvm-edge. Copying a live SQLite file (and its -wal) with
a file-level tool can capture a torn database, so `run` first makes a consistent copy of every database
with SQLite's online backup API, checks it, and backs up that copy (the live files are excluded) together
with the configuration, then applies the retention policy, verifies a rotating 1/N of the repository's data
and leaves Prometheus metrics for node-exporter's textfile collector.

Who calls it:
  * systemd: rvm-backup.service (Type=oneshot, ExecStart=/usr/local/sbin/rvm-backup run), started by
    rvm-backup.timer. Every step logs one JSON line on stdout, so the journal holds a machine-readable
    record of each run; the exit status is 0 (all steps passed) or 1 (a step failed; metrics still written).
  * Ansible: `rvm-backup check-config --config %s` validates the templated config before it is installed
    (exit 2 lists every problem), `rvm-backup restore --snapshot latest --target DIR` restores and checks
    the databases, `rvm-backup snapshots` and `rvm-backup status` print JSON for playbooks and operators.

Modules, one job each: `config` (the validated config), `journal` (every line printed, secrets scrubbed),
`files` (atomic writes, private directories), `state` (state.json, the run lock, what a run learnt),
`sqlite_copy` (the one online-backup copy and the check of a restored copy), `restic` (the restic driver),
`metrics` (the node-exporter textfile), `run` (the backup run's steps), `restore` and `report` (the other
commands), `cli` (argument parsing and exit statuses).

The password is only ever passed to restic as RESTIC_PASSWORD_FILE; it never appears in argv, the
environment or any output. Standard library only; runs on Python 3.10 and later. The device gets it as one
file, a zipapp (agents/zipapp.py), because it runs as root and must work when an rvm-edge release is broken.
"""

__version__ = "1.0.0"

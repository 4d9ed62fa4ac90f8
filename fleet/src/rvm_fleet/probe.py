"""Read-only device probe for `rvm-fleet status` without Prometheus (stdlib only; runs on the device).

ansible's script module runs this file with the device's python3; it prints one JSON object.
"""

import glob
import json
import os
import time
import urllib.request

ROOT = "/opt/rvm-edge"
BASE = "http://127.0.0.1:8080"
TEXTFILES = "/var/lib/prometheus/node-exporter/*.prom"


def _get(path):
    try:
        with urllib.request.urlopen(BASE + path, timeout=1.5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError:
        return None, ""


def _metric(text, name):
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return None


def main():
    out = {
        "version": os.path.basename(os.path.realpath(ROOT + "/current"))
        if os.path.exists(ROOT + "/current")
        else ""
    }
    code, _ = _get("/readyz")
    out["ready"] = code == 200
    _, metrics = _get("/metrics")
    out["outbox_depth"] = _metric(metrics, "rvm_edge_outbox_depth")
    out["deposits_total"] = _metric(metrics, "rvm_edge_deposits_recorded_total")
    temps = []
    for zone in glob.glob("/sys/class/thermal/thermal_zone*/temp"):
        try:
            with open(zone) as f:
                temps.append(int(f.read().strip()) / 1000)
        except (OSError, ValueError):
            pass
    out["temperature_c"] = max(temps) if temps else None
    backup = None
    for path in glob.glob(TEXTFILES):
        with open(path) as f:
            value = _metric(f.read(), "rvm_backup_last_success_timestamp_seconds")
        backup = value if value is not None else backup
    out["backup_age_s"] = time.time() - backup if backup else None
    print(json.dumps(out))


main()

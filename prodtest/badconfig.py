"""Device fault: a bad config pushed. An operator's wrong value reaches deploy.yml; the device must
refuse it before anything changes and keep serving with the config it has.

The value (``source.kind: webcam``) passes the role's argument spec (``rvm_edge_source`` is a free
dict) and only the release's own ``rvm-edge check-config`` knows it is wrong, so the refusal comes
from the template's ``validate:`` on the device: the deepest line of defence. The push and its
figures' raw data: prodtest.push.
"""

from __future__ import annotations

from prodtest.figures import Figure, Results
from prodtest.lab import Lab
from prodtest.progress import say
from prodtest.push import POLL_S, push

STAGE = "Device faults"
BAD_SOURCE = {"kind": "webcam", "device": "0"}
EXPECTED = "source.kind"  # check-config names the key it refuses
RELEASE_CONFIG = "/releases/"  # ... and the release's config file, not Ansible's temporary copy


def run_bad_config(lab: Lab, device: str, results: Results) -> dict[str, object]:
    say(f"device faults: a bad config (source.kind webcam) pushed to {device} with deploy.yml")
    pushed = push(lab, device, {"rvm_edge_source": BAD_SOURCE})
    said = " ".join(pushed.refusal.split())
    refused = pushed.returncode != 0 and "Render the config" in pushed.failed_task and EXPECTED in said
    names_file = refused and RELEASE_CONFIG in said and "ansible-tmp" not in said
    down = pushed.longest_not_ready_s
    say(
        f"device faults: bad config {'refused' if refused else 'NOT refused'} after {pushed.play_s:.0f} s; "
        f"longest not ready {down:.2f} s over {len(pushed.samples)} polls; lock {pushed.lock}"
    )
    results.add(
        Figure(
            "dev.badconfig.refused", "bad config: refused by the release's check-config, naming source.kind", float(refused), "yes=1", 1, ">=",
            stage=STAGE,
        ),
        Figure(
            "dev.badconfig.names_file", "bad config: the refusal names the release's config file (not a temporary copy)",
            float(names_file), "yes=1", 1, ">=", stage=STAGE,
        ),
        Figure(
            "dev.badconfig.not_ready_s", "bad config: longest stretch not ready while it was pushed", down, "s",
            30.0, stage=STAGE, note=f"our budget 0 s; {len(pushed.samples)} polls every {POLL_S} s",
        ),
        Figure(
            "dev.badconfig.unchanged", "bad config: same service process, config and release afterwards",
            float(pushed.unchanged), "yes=1", 1, ">=", stage=STAGE,
            note=f"release {pushed.after['release'].rsplit('/', 1)[-1]}",
        ),
        Figure(
            "dev.badconfig.lock_free", "bad config: the update lock given back", float(pushed.lock == "free"),
            "yes=1", 1, ">=", stage=STAGE,
        ),
    )  # fmt: skip
    return {**pushed.raw(), "refused_naming_the_key": refused, "naming_the_release_config": names_file}

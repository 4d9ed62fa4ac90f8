"""Build rvm-edge release bundles (issue 5, item 1): the app wheel, an offline wheelhouse for one
target platform, the model files and MANIFEST.json, written in the format library/rvm_release reads.

One module per job: ``target`` (what a device runs), ``lockfile`` (the pins for that device),
``wheelhouse`` (downloading and proving the wheels install offline), ``models`` (model files checked
against their manifests), ``appwheel`` (the app's own wheel), ``build`` (putting it together).
"""


class BuildError(Exception):
    """The bundle cannot be built; the message names the input at fault and what to do."""

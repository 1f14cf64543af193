"""The Jupyter kernel the chapters run in: IPython with the book's pinned numerics.

``python -m msa_lib kernel`` installs it as ``msa-book`` (``make setup`` does this);
every chapter names it in its metadata, so papermill, nbval and Jupyter start it.
Importing ``msa_lib`` pins the environment (see ``msa_lib.numerics``) before the
kernel, and so torch, is loaded; ``MSA_NUMERICS=native`` leaves the machine's defaults.
"""
import sys

import msa_lib  # noqa: F401  (pins the numerics environment)

if __name__ == "__main__":
    if sys.path and sys.path[0] == "":     # as ipykernel_launcher: the kernel's cwd must not shadow imports
        del sys.path[0]
    from ipykernel import kernelapp

    kernelapp.launch_new_instance()

"""airpack: carry large language models into air-gapped networks as one signed, verifiable bundle.

The library API is :mod:`airpack.api`, one function per command (``docs/library.md``): ``load_spec`` →
``lock`` → ``build`` → ``sign`` on the connected side, ``verify``, ``split`` and ``join`` on either side, then
:func:`airpack.install.install` on the far side with what ``verify`` returned. The command line
(:mod:`airpack.cli`) is a thin shell over it.

Nothing is imported here: ``import airpack`` stays cheap, and the far side imports only what it uses.
"""

__version__ = "0.1.0"

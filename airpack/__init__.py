"""airpack: carry large language models into air-gapped networks as one signed, verifiable bundle.

The library API mirrors the command line: ``load_spec`` → ``lock`` → ``build`` → ``sign`` → ``verify``.
"""

__version__ = "0.1.0"

"""The application: the ``onecard`` command line, the runtime built from ``terminal.toml``,
the demo. The composition root - the one package that knows the concrete drivers, the
simulator and the back office, and hands them to the :mod:`terminal` library."""

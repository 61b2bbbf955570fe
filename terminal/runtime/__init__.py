"""The terminal runtime: ``onecard run --profile gate|validator|counter`` (docs/runtime.md).

* :mod:`terminal.runtime.config` - ``terminal.toml``, typed and checked
* :mod:`terminal.runtime.transaction` - the steps for one credential
* :mod:`terminal.runtime.profiles` - gate, validator, counter
* :mod:`terminal.runtime.loop` - the event loop and the composition root
* :mod:`terminal.runtime.statuspage` - ``/health`` and ``/metrics``
"""
